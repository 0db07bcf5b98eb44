// Package profiles parses and validates agent profiles: one YAML file per
// agent, decoded strictly (an unknown field is an error with file:line),
// validated once by an ordered list of small checks, and immutable after.
package profiles

import "time"

// Profile is one agent: who may act as it, the identity its commands run as,
// and the boundary they run in. Treat a loaded Profile as read-only; the
// daemon shares it between concurrent execs.
type Profile struct {
	// Name is the agent's identity: principal_id in every audit record.
	Name string `yaml:"name"`
	// Description is free text for admins.
	Description string `yaml:"description"`
	// Peers lists the connecting processes that act as this agent.
	Peers Peers `yaml:"peers"`
	// RunAs is the agent's own unprivileged identity.
	RunAs RunAs `yaml:"runAs"`
	// Filesystem lists the paths the agent may read, write and execute.
	Filesystem Filesystem `yaml:"filesystem"`
	// Network is "none" (a private network namespace with loopback only) or
	// "host".
	Network Network `yaml:"network"`
	// Limits bound each exec's resources.
	Limits Limits `yaml:"limits"`
	// Env controls the command's environment.
	Env Env `yaml:"env"`
	// Seccomp adjusts the default syscall policy.
	Seccomp Seccomp `yaml:"seccomp"`

	// Commands says which programs, with which arguments, the agent may
	// run. nil (no `commands` key at all) keeps the behaviour of profiles
	// written before it existed: every program that filesystem.exec grants
	// may run, as if the default were allow. Once present, the default is
	// deny. See commands.go.
	Commands *Commands `yaml:"commands"`
	// Require lists what every exec request must carry.
	Require Require `yaml:"require"`
	// RateLimit bounds how many execs the agent may start per window; nil
	// means no limit.
	RateLimit *RateLimit `yaml:"rateLimit"`
	// Concurrency is the most execs of this agent that may run at once; 0
	// (absent) means only the daemon's maxConcurrentExecs applies.
	Concurrency int `yaml:"concurrency"`
	// Schedule is when the agent may run anything at all; nil means always.
	Schedule *Schedule `yaml:"schedule"`
	// Approval configures execs that a rule marks approval: required.
	Approval Approval `yaml:"approval"`

	// File is the profile's source file; Digest is "sha256:<hex>" of its
	// bytes. Both are set by the loader, not read from YAML.
	File   string `yaml:"-"`
	Digest string `yaml:"-"`
	// PeerUIDs is Peers.UIDs plus the resolved Peers.Users, set by the
	// loader.
	PeerUIDs []uint32 `yaml:"-"`
}

// Peers selects callers by the uid the kernel reports for them.
type Peers struct {
	UIDs  []uint32 `yaml:"uids"`
	Users []string `yaml:"users"`
}

// RunAs is the uid and gid an agent's commands run as. Never 0.
type RunAs struct {
	UID uint32 `yaml:"uid"`
	GID uint32 `yaml:"gid"`
}

// Filesystem holds absolute paths. read grants reading, write grants reading
// and writing (create, delete, rename, truncate), exec grants reading and
// executing. Protected paths of the daemon config always win over these.
type Filesystem struct {
	Read  []string `yaml:"read"`
	Write []string `yaml:"write"`
	Exec  []string `yaml:"exec"`
	// Workdir is the default working directory; empty means the first write
	// path, else "/".
	Workdir string `yaml:"workdir"`
}

// Network is the network mode of an agent's sandbox.
type Network string

const (
	NetworkNone Network = "none"
	NetworkHost Network = "host"
)

// Limits bound an exec. Zero values mean the defaults below.
type Limits struct {
	Timeout   Duration `yaml:"timeout"`
	Memory    Bytes    `yaml:"memory"`
	PIDs      int64    `yaml:"pids"`
	CPU       float64  `yaml:"cpu"`
	Output    Bytes    `yaml:"output"`
	OpenFiles uint64   `yaml:"openFiles"`
	// Tmp is the size of the exec's private /tmp.
	Tmp Bytes `yaml:"tmp"`
}

// Defaults applied by the loader where a profile leaves a limit unset.
const (
	DefaultTimeout   = 60 * time.Second
	DefaultMemory    = 512 << 20
	DefaultPIDs      = 256
	DefaultOutput    = 16 << 20
	DefaultOpenFiles = 1024
	DefaultTmp       = 64 << 20
)

// Env says which variables a command gets: Set always, plus the names in Pass
// when the caller supplies them.
type Env struct {
	Pass []string          `yaml:"pass"`
	Set  map[string]string `yaml:"set"`
}

// Seccomp adjusts the default syscall policy of the sandbox.
type Seccomp struct {
	// Deny lists extra syscalls to refuse with EPERM.
	Deny []string `yaml:"deny"`
	// Allow lists syscalls of the default deny list that this profile needs,
	// each with a reason; profile lint flags every one.
	Allow []SeccompOverride `yaml:"allow"`
}

// SeccompOverride is a named exception to the default seccomp policy.
type SeccompOverride struct {
	Syscall string `yaml:"syscall"`
	Reason  string `yaml:"reason"`
}

// Duration is a time.Duration written as "60s", "5m".
type Duration time.Duration

// Bytes is a size written as a number of bytes or with a binary suffix:
// "64Ki", "256Mi", "1Gi".
type Bytes int64
