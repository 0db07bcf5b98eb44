// Package sandbox starts one command under an agent's identity and
// confinement. The daemon builds a Spec (pure data, validated here), launches
// the init helper with namespaces and cgroup placement already in force at
// clone time, and the helper applies the rest on one locked OS thread right
// before execve (init_linux.go).
package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Spec is everything the init helper needs. It crosses the process boundary
// over an inherited pipe in the tag-length-value form of initspec_linux.go,
// so it holds only plain data.
type Spec struct {
	// ExecID names the exec in errors and the hostname.
	ExecID string
	// Argv is the command; Argv[0] is an absolute path or a name looked up in
	// the sandbox's PATH (from Env) after confinement is in force.
	Argv []string
	// Program, when set, is the absolute path to execute (the file the
	// daemon's command rules judged); Argv[0] is then only what the program
	// sees as its name.
	Program string
	// Env is the complete environment, KEY=VALUE.
	Env []string
	// Cwd is an absolute directory inside the sandbox.
	Cwd string
	// UID and GID the command runs as; never 0.
	UID uint32
	GID uint32

	// Loopback brings up "lo" in the exec's own network namespace
	// (network: none), so programs that talk to themselves over 127.0.0.1
	// work while nothing else is reachable.
	Loopback bool
	// Mounts shape the private mount namespace.
	Mounts Mounts
	// Landlock is the filesystem allowlist.
	Landlock Landlock
	// Rlimits applied before dropping privileges.
	Rlimits Rlimits
	// Seccomp is a compiled classic-BPF program (see sandbox/seccomp),
	// installed last before execve. Empty means no filter, which Validate
	// only allows when AllowNoSeccomp is set (tests of earlier layers).
	Seccomp        []byte
	AllowNoSeccomp bool
}

// Mounts describes the mount namespace the helper builds.
type Mounts struct {
	// ReadOnly paths are bind-mounted onto themselves read-only, nosuid and
	// nodev, recursively: the protected paths. They win over any grant.
	ReadOnly []string
	// Hidden paths are covered (an empty read-only tmpfs over a directory,
	// /dev/null over a file) so the agent cannot reach them at all.
	Hidden []string
	// TmpBytes sizes the private tmpfs on /tmp and /dev/shm.
	TmpBytes int64
	// Proc mounts a fresh /proc for the exec's pid namespace.
	Proc bool
}

// Landlock lists the paths an agent may reach and how. Paths that do not
// exist on the host are skipped (a rule needs an inode), the base set of
// paths ordinary programs need is added by the helper (see BasePaths).
type Landlock struct {
	Read  []string
	Write []string
	Exec  []string
	// BestEffort lets the helper enforce what the kernel's Landlock ABI
	// offers instead of refusing; only set when the daemon config opts into
	// weaker enforcement.
	BestEffort bool
	// Disabled turns Landlock off entirely; only for the audit-overhead
	// benchmarks' baselines, never from a profile.
	Disabled bool
}

// Rlimits are resource limits of the command's processes.
type Rlimits struct {
	// NoFile caps open file descriptors.
	NoFile uint64
	// Core is always 0 in practice: a core dump could leak another
	// process's memory into the agent's files.
	Core uint64
}

// Validate checks the Spec before anything is launched, so that a bad
// request is refused with a precise message instead of a half-set-up
// sandbox.
func (s *Spec) Validate() error {
	checks := []struct {
		name string
		fn   func() error
	}{
		{"argv", s.validateArgv},
		{"identity", s.validateIdentity},
		{"cwd", s.validateCwd},
		{"env", s.validateEnv},
		{"paths", s.validatePaths},
		{"seccomp", s.validateSeccomp},
	}
	for _, c := range checks {
		if err := c.fn(); err != nil {
			return fmt.Errorf("invalid sandbox spec (%s): %w", c.name, err)
		}
	}
	return nil
}

func (s *Spec) validateArgv() error {
	if len(s.Argv) == 0 || s.Argv[0] == "" {
		return errors.New("empty command")
	}
	for i, a := range s.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("argv[%d] contains a NUL byte", i)
		}
	}
	if s.Program != "" {
		if err := checkAbs(s.Program); err != nil {
			return fmt.Errorf("program: %w", err)
		}
	}
	return nil
}

func (s *Spec) validateIdentity() error {
	if s.UID == 0 || s.GID == 0 {
		return fmt.Errorf("refusing to run as uid %d gid %d: agents never run as root", s.UID, s.GID)
	}
	return nil
}

func (s *Spec) validateCwd() error {
	if err := checkAbs(s.Cwd); err != nil {
		return fmt.Errorf("cwd: %w", err)
	}
	if s.Cwd == "/proc" || strings.HasPrefix(s.Cwd, "/proc/") {
		return fmt.Errorf("cwd %s: a working directory under /proc is not allowed", s.Cwd)
	}
	return nil
}

func (s *Spec) validateEnv() error {
	for _, kv := range s.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("env entry %q is not KEY=VALUE", kv)
		}
		if strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("env %s contains a NUL byte", k)
		}
	}
	return nil
}

func (s *Spec) validatePaths() error {
	lists := map[string][]string{
		"mounts.read_only": s.Mounts.ReadOnly, "mounts.hidden": s.Mounts.Hidden,
		"landlock.read": s.Landlock.Read, "landlock.write": s.Landlock.Write, "landlock.exec": s.Landlock.Exec,
	}
	for name, paths := range lists {
		for _, p := range paths {
			if err := checkAbs(p); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

func (s *Spec) validateSeccomp() error {
	if len(s.Seccomp) == 0 && !s.AllowNoSeccomp {
		return errors.New("no seccomp filter: refusing to run unfiltered")
	}
	if len(s.Seccomp)%8 != 0 {
		return fmt.Errorf("seccomp program of %d bytes is not a whole number of instructions", len(s.Seccomp))
	}
	return nil
}

// checkAbs accepts only clean absolute paths, so that a prefix comparison
// of two paths means what it says.
func checkAbs(p string) error {
	if p == "" || !filepath.IsAbs(p) {
		return fmt.Errorf("path %q is not absolute", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Errorf("path %q is not clean (want %q)", p, filepath.Clean(p))
	}
	return nil
}

// Within reports whether path p is dir or below it. Both must be clean
// absolute paths.
func Within(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// CwdAllowed checks a working directory against the paths an agent may
// reach: under one of grants or the exec's private /tmp, never under /proc.
// The daemon checks the requested path; the helper checks it again after
// chdir, resolved, so a symlink cannot lead elsewhere.
func CwdAllowed(cwd string, grants ...[]string) error {
	if err := checkAbs(cwd); err != nil {
		return err
	}
	if Within(cwd, "/proc") {
		return fmt.Errorf("cwd %s: a working directory under /proc is not allowed", cwd)
	}
	for _, dir := range cwdRoots(grants...) {
		if Within(cwd, dir) {
			return nil
		}
	}
	return fmt.Errorf("cwd %s is outside the profile's filesystem paths", cwd)
}

// cwdRoots are the directories a working directory may be under: the
// grants and the exec's private /tmp. The helper checks the resolved cwd
// against the same list (see encodeSpec).
func cwdRoots(grants ...[]string) []string {
	var roots []string
	for _, list := range grants {
		roots = append(roots, list...)
	}
	return append(roots, "/tmp")
}
