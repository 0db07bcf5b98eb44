package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"

	"github.com/deputyhq/deputy/profiles"
	"github.com/deputyhq/deputy/sandbox"
	"github.com/deputyhq/deputy/sandbox/landlock"
)

// Bounds on what one request may carry. Generous for real commands, small
// enough that a hostile client cannot make the daemon allocate much.
const (
	maxArgs          = 4096
	maxArgvBytes     = 256 << 10
	maxEnv           = 256
	maxJustification = 4096
	maxCorrelationID = 128
)

// execRequest is the validated, internal form of an ExecStart: the proto
// message is converted once, here, at the boundary.
type execRequest struct {
	Argv []string
	// Program is argv[0] resolved by the policy (empty without command
	// rules): the helper executes exactly this file.
	Program       string
	Env           map[string]string
	Cwd           string
	Timeout       time.Duration
	CorrelationID string
	Justification string
}

// invalidError is a request the caller must fix: INVALID_ARGUMENT.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// newRequest converts and validates a start message against the agent's
// profile.
func newRequest(p *profiles.Profile, m *deputyv1.ExecStart) (*execRequest, error) {
	r := &execRequest{
		Argv:          m.GetArgv(),
		Cwd:           m.GetCwd(),
		CorrelationID: m.GetCorrelationId(),
		Justification: m.GetJustification(),
		Env:           map[string]string{},
	}
	if len(r.Argv) == 0 || r.Argv[0] == "" {
		return nil, invalidf("empty command: argv[0] is required")
	}
	if len(r.Argv) > maxArgs {
		return nil, invalidf("%d arguments exceed the limit of %d", len(r.Argv), maxArgs)
	}
	total := 0
	for i, a := range r.Argv {
		total += len(a) + 1
		if strings.IndexByte(a, 0) >= 0 {
			return nil, invalidf("argv[%d] contains a NUL byte", i)
		}
	}
	if total > maxArgvBytes {
		return nil, invalidf("arguments total %d bytes, over the limit of %d", total, maxArgvBytes)
	}
	if len(m.GetEnv()) > maxEnv {
		return nil, invalidf("%d environment variables exceed the limit of %d", len(m.GetEnv()), maxEnv)
	}
	for k, v := range m.GetEnv() {
		if !slices.Contains(p.Env.Pass, k) {
			allowed := "none"
			if len(p.Env.Pass) > 0 {
				allowed = strings.Join(p.Env.Pass, ", ")
			}
			return nil, invalidf("environment variable %s is not in profile %s's env.pass (allowed: %s)", k, p.Name, allowed)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, invalidf("environment variable %s contains a NUL byte", k)
		}
		r.Env[k] = v
	}
	if len(r.Justification) > maxJustification || !utf8.ValidString(r.Justification) {
		return nil, invalidf("justification must be valid UTF-8 of at most %d bytes", maxJustification)
	}
	if r.CorrelationID == "" {
		r.CorrelationID = "c-" + newID()
	} else if err := checkCorrelationID(r.CorrelationID); err != nil {
		return nil, err
	}

	limit := time.Duration(p.Limits.Timeout)
	r.Timeout = limit
	if d := m.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, invalidf("timeout: %v", err)
		}
		t := d.AsDuration()
		switch {
		case t <= 0:
			return nil, invalidf("timeout %s must be positive", t)
		case t > limit:
			return nil, invalidf("timeout %s exceeds profile %s's limit of %s", t, p.Name, limit)
		}
		r.Timeout = t
	}

	if r.Cwd == "" {
		r.Cwd = defaultCwd(p)
	}
	if err := checkCwd(p, r.Cwd); err != nil {
		return nil, err
	}
	return r, nil
}

func checkCorrelationID(id string) error {
	if len(id) > maxCorrelationID {
		return invalidf("correlation id longer than %d bytes", maxCorrelationID)
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return invalidf("correlation id %q: only printable ASCII without spaces is allowed", id)
		}
	}
	return nil
}

// defaultCwd is the profile's workdir, else its first write path, else the
// exec's private /tmp.
func defaultCwd(p *profiles.Profile) string {
	if p.Filesystem.Workdir != "" {
		return p.Filesystem.Workdir
	}
	if len(p.Filesystem.Write) > 0 {
		return p.Filesystem.Write[0]
	}
	return "/tmp"
}

// checkCwd accepts a working directory only inside what the agent may
// reach. The helper checks the resolved directory again after chdir, as the
// agent, so permissions and symlinks cannot lead elsewhere.
func checkCwd(p *profiles.Profile, cwd string) error {
	if !filepath.IsAbs(cwd) || filepath.Clean(cwd) != cwd {
		return invalidf("cwd %q must be a clean absolute path", cwd)
	}
	if err := sandbox.CwdAllowed(cwd, p.Filesystem.Read, p.Filesystem.Write, p.Filesystem.Exec); err != nil {
		return invalidf("%v (profile %s)", err, p.Name)
	}
	return nil
}

// buildEnv assembles the command's whole environment: the profile's set,
// the caller's allowed names, then Deputy's own variables, which nobody
// can override.
func buildEnv(p *profiles.Profile, r *execRequest, execID string) []string {
	env := map[string]string{}
	for k, v := range p.Env.Set {
		env[k] = v
	}
	for k, v := range r.Env {
		env[k] = v
	}
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
	}
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = defaultCwd(p)
	}
	env["DEPUTY_AGENT"] = p.Name
	env["DEPUTY_EXEC_ID"] = execID
	env["DEPUTY_CORRELATION_ID"] = r.CorrelationID
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// buildSpec turns an authorized request into the sandbox's Spec.
func (s *Server) buildSpec(ls *loadedSet, p *profiles.Profile, r *execRequest, execID string) *sandbox.Spec {
	return &sandbox.Spec{
		ExecID:   execID,
		Argv:     r.Argv,
		Env:      buildEnv(p, r, execID),
		Cwd:      r.Cwd,
		UID:      p.RunAs.UID,
		GID:      p.RunAs.GID,
		Loopback: p.Network != profiles.NetworkHost,
		Mounts: sandbox.Mounts{
			ReadOnly: s.cfg.Protected(),
			Hidden:   ls.hiddenFor(p, s.cfg),
			TmpBytes: int64(p.Limits.Tmp),
			Proc:     true,
		},
		Landlock: sandbox.Landlock{
			Read:       p.Filesystem.Read,
			Write:      p.Filesystem.Write,
			Exec:       p.Filesystem.Exec,
			BestEffort: s.cfg.AllowWeakerEnforcement,
		},
		Rlimits: sandbox.Rlimits{NoFile: p.Limits.OpenFiles, Core: 0},
		Seccomp: ls.filters[p.Name].Bytes(),
	}
}

// hiddenFor lists what the agent must never reach: the daemon's socket
// directory and state, the system log socket, and other agents' writable
// trees (unless this agent's own grants include them).
func (ls *loadedSet) hiddenFor(p *profiles.Profile, cfg *Config) []string {
	hidden := []string{filepath.Dir(cfg.Socket), cfg.State, "/dev/log"}
	for _, other := range ls.set.All() {
		if other.Name == p.Name {
			continue
		}
		for _, w := range other.Filesystem.Write {
			if !grantedTo(p, w) {
				hidden = append(hidden, w)
			}
		}
	}
	slices.Sort(hidden)
	return slices.Compact(hidden)
}

// grantedTo reports whether hiding path would hide one of p's own grants
// (a grant equal to it or inside it). Another agent's directory inside a
// broader grant of p (B's /home/b under A's read: /home) is still hidden:
// agents' work directories are private to them.
func grantedTo(p *profiles.Profile, path string) bool {
	for _, list := range [][]string{p.Filesystem.Read, p.Filesystem.Write, p.Filesystem.Exec, landlock.Base.Write} {
		for _, g := range list {
			if sandbox.Within(g, path) {
				return true
			}
		}
	}
	return false
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
