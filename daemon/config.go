package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/deputyhq/deputy/daemon/defaults"
	"github.com/deputyhq/deputy/profiles"
)

// Config is deputyd's configuration file. Decoded strictly (an unknown field
// is an error with file:line) and validated once; read-only afterwards.
type Config struct {
	// Socket is the Unix socket the API listens on. Its directory is
	// created root-owned, mode 0755, and must not be writable by others.
	Socket string `yaml:"socket"`
	// Profiles is the directory of agent profiles (*.yaml).
	Profiles string `yaml:"profiles"`
	// State is a directory the daemon owns (mode 0700): the audit log and
	// bookkeeping. Hidden from every sandbox.
	State string `yaml:"state"`
	// ProtectedPaths are read-only in every sandbox, whatever a profile
	// grants. /var/log by default; the state directory and the config file
	// are always added.
	ProtectedPaths []string `yaml:"protectedPaths"`
	// Auditors may read the audit log through the API; root always may.
	Auditors Principals `yaml:"auditors"`
	// Approvers may approve or deny execs that a rule marks
	// approval: required; root always may. Nobody approves their own
	// agent's execs.
	Approvers Principals `yaml:"approvers"`
	// AllowWeakerEnforcement lets the daemon run commands on a host that
	// lacks a layer (for example an old Landlock ABI) with what the host
	// offers. Off by default: a missing layer is a refusal, never a silent
	// downgrade.
	AllowWeakerEnforcement bool `yaml:"allowWeakerEnforcement"`
	// MaxConcurrentExecs bounds running execs across all agents; beyond it
	// an exec gets RESOURCE_EXHAUSTED.
	MaxConcurrentExecs int `yaml:"maxConcurrentExecs"`
	// CgroupRoot is the name of the daemon's cgroup subtree.
	CgroupRoot string `yaml:"cgroupRoot"`
	// AuditSyscalls records every syscall of every exec through eBPF
	// (default true). false exists to measure the audit's overhead; it is
	// not for production.
	AuditSyscalls *bool `yaml:"auditSyscalls"`

	// File is where the config came from ("" for defaults only).
	File string `yaml:"-"`
}

// Principals selects local users by uid or group.
type Principals struct {
	UIDs   []uint32 `yaml:"uids"`
	Groups []string `yaml:"groups"`
}

// Defaults for a config that leaves a field unset.
const (
	DefaultSocket     = defaults.Socket
	DefaultProfiles   = defaults.Profiles
	DefaultState      = defaults.State
	DefaultCgroupRoot = "deputy"
	DefaultMaxExecs   = 256
)

// DefaultProtectedPaths are protected when the config names none.
var DefaultProtectedPaths = []string{"/var/log"}

// LoadConfig reads path (if non-empty) and applies defaults and overrides.
func LoadConfig(path string, override Config) (*Config, error) {
	c := &Config{}
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		data, err := os.ReadFile(abs)
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if err := profiles.DecodeStrict(abs, data, c); err != nil {
			return nil, err
		}
		c.File = abs
	}
	if override.Socket != "" {
		c.Socket = override.Socket
	}
	if override.Profiles != "" {
		c.Profiles = override.Profiles
	}
	if override.State != "" {
		c.State = override.State
	}
	c.applyDefaults()
	if err := c.validate(); err != nil {
		if c.File != "" {
			return nil, fmt.Errorf("%s: %w", c.File, err)
		}
		return nil, err
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	if c.Profiles == "" {
		c.Profiles = DefaultProfiles
	}
	if c.State == "" {
		c.State = DefaultState
	}
	if c.ProtectedPaths == nil {
		c.ProtectedPaths = slices.Clone(DefaultProtectedPaths)
	}
	if c.MaxConcurrentExecs == 0 {
		c.MaxConcurrentExecs = DefaultMaxExecs
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = DefaultCgroupRoot
	}
}

func (c *Config) validate() error {
	for name, p := range map[string]string{"socket": c.Socket, "profiles": c.Profiles, "state": c.State} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("%s %q must be a clean absolute path", name, p)
		}
	}
	for _, p := range c.ProtectedPaths {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("protectedPaths entry %q must be a clean absolute path", p)
		}
		if p == "/" {
			return fmt.Errorf("protectedPaths entry / would make the whole host read-only for agents; name the trees to protect")
		}
	}
	if c.MaxConcurrentExecs < 1 {
		return fmt.Errorf("maxConcurrentExecs %d must be at least 1", c.MaxConcurrentExecs)
	}
	if filepath.Base(c.CgroupRoot) != c.CgroupRoot || c.CgroupRoot == "." || c.CgroupRoot == ".." {
		return fmt.Errorf("cgroupRoot %q must be a single path element", c.CgroupRoot)
	}
	return nil
}

// Protected returns every path that must stay read-only in sandboxes: the
// configured ones plus the daemon's own state and config.
func (c *Config) Protected() []string {
	out := slices.Clone(c.ProtectedPaths)
	out = append(out, c.State)
	if c.File != "" {
		out = append(out, c.File)
	}
	out = append(out, c.Profiles)
	slices.Sort(out)
	return slices.Compact(out)
}

func (c *Config) syscallAudit() bool { return c.AuditSyscalls == nil || *c.AuditSyscalls }
