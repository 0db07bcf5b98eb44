package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/deputyhq/deputy/daemon/policy"
	"github.com/deputyhq/deputy/profiles"
	"github.com/deputyhq/deputy/sandbox"
)

// verdict is the policy decision on one request: what Exec does and what
// Explain reports, computed by the same code.
type verdict struct {
	policy.Decision
	// Program is argv[0] resolved to an absolute path, "" when the profile
	// has no command rules and resolution is left to the sandbox.
	Program string
	// Err is the status Exec returns when it refuses, nil when it runs.
	Err error
}

// decide evaluates the profile's policy for a validated request.
func (s *Server) decide(ls *loadedSet, p *profiles.Profile, r *execRequest, now time.Time) verdict {
	var hidden []string
	if p.Commands != nil { // only judged programs are checked against them
		hidden = ls.hiddenFor(p, s.cfg)
	}
	program, err := resolveProgram(p, r, hidden)
	if err != nil {
		return verdict{Decision: policy.Decision{Rule: "program", Reason: err.Error()}, Err: err}
	}
	d := policy.Evaluate(p, program, r.Argv[1:], r.Justification, now)
	if p.Commands == nil && d.Allow && d.Rule == policy.RuleDefault {
		d.Rule = "profile:" + p.Name // no command rules: the profile's grants decide
	}
	v := verdict{Decision: d, Program: program}
	switch {
	case d.MissingJustification:
		v.Err = status.Error(codes.InvalidArgument, d.Reason)
	case !d.Allow:
		msg := d.Reason
		if d.AllowedHint != "" {
			msg += "; " + d.AllowedHint
		}
		v.Err = status.Error(codes.PermissionDenied, msg)
	}
	return v
}

// resolveProgram finds the program a profile's command rules judge: the
// absolute path argv[0] names, symlinks and ".." resolved, on the host. The
// sandbox sees the same tree except its private /tmp and /dev/shm and the
// hidden paths, so a program there cannot be judged and is refused.
func resolveProgram(p *profiles.Profile, r *execRequest, hidden []string) (string, error) {
	argv0 := r.Argv[0]
	if strings.Contains(argv0, "/") && !filepath.IsAbs(argv0) {
		argv0 = filepath.Join(r.Cwd, argv0)
	}
	// The PATH the command will get: the caller's (if env.pass allows it),
	// else the profile's, else the default (see buildEnv).
	pathEnv := "/usr/local/bin:/usr/bin:/bin"
	if v, ok := p.Env.Set["PATH"]; ok {
		pathEnv = v
	}
	if v, ok := r.Env["PATH"]; ok {
		pathEnv = v
	}
	prog, err := policy.ResolveProgram(argv0, pathEnv, "/")
	switch {
	case errors.Is(err, policy.ErrNotFound) && strings.Contains(argv0, "/") && exists(argv0):
		return "", status.Errorf(codes.PermissionDenied, "%s: not an executable file", r.Argv[0])
	case errors.Is(err, policy.ErrNotFound):
		return "", status.Errorf(codes.NotFound, "%s: command not found (PATH %s)", r.Argv[0], pathEnv)
	case err != nil:
		return "", status.Errorf(codes.InvalidArgument, "resolve %s: %v", r.Argv[0], err)
	case p.Commands == nil:
		// Without command rules only existence is checked here (so Explain
		// and Exec agree on "not found"); the helper looks the program up
		// inside the sandbox.
		return "", nil
	}
	for _, dir := range append([]string{"/tmp", "/dev/shm"}, hidden...) {
		if sandbox.Within(prog, dir) {
			return "", status.Errorf(codes.PermissionDenied, "program %s is under %s, which the sandbox replaces or hides: command rules cannot judge it", prog, dir)
		}
	}
	return prog, nil
}

// rateLimits lists the windows an allowed exec is charged to.
func rateLimits(p *profiles.Profile, d policy.Decision) []policy.Limit {
	var out []policy.Limit
	if rl := p.RateLimit; rl != nil {
		out = append(out, policy.Limit{Key: policy.AgentKey(p.Name), Execs: rl.Execs, Per: rl.Per.Std()})
	}
	if rl := d.RateLimit; rl != nil {
		out = append(out, policy.Limit{Key: policy.RuleKey(p.Name, d.Rule), Execs: rl.Execs, Per: rl.Per.Std()})
	}
	return out
}

// agentStats is the inventory's memory of what each agent did since the
// daemon started: the last exec, execs and denials in the last 24 hours,
// and how many run now.
type agentStats struct {
	mu     sync.Mutex
	agents map[string]*agentStat
}

type agentStat struct {
	lastExec time.Time
	execs    []time.Time
	denials  []time.Time
	running  int
}

const statWindow = 24 * time.Hour

func (a *agentStats) get(name string) *agentStat {
	if a.agents == nil {
		a.agents = map[string]*agentStat{}
	}
	st, ok := a.agents[name]
	if !ok {
		st = &agentStat{}
		a.agents[name] = st
	}
	return st
}

func prune(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > statWindow {
		i++
	}
	return ts[i:]
}

// started records an exec that is about to run; the returned func marks it
// finished.
func (a *agentStats) started(name string, now time.Time) func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.get(name)
	st.lastExec = now
	st.execs = append(prune(st.execs, now), now)
	st.running++
	return func() {
		a.mu.Lock()
		st.running--
		a.mu.Unlock()
	}
}

func (a *agentStats) denied(name string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.get(name)
	st.denials = append(prune(st.denials, now), now)
}

// snapshot returns a copy of one agent's counters at now.
func (a *agentStats) snapshot(name string, now time.Time) (last time.Time, execs, denials, running int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.get(name)
	st.execs, st.denials = prune(st.execs, now), prune(st.denials, now)
	return st.lastExec, len(st.execs), len(st.denials), st.running
}

func retryMessage(agent string, wait time.Duration) string {
	return fmt.Sprintf("rate limit of agent %s reached: next exec allowed in %s (at %s)", agent,
		wait.Round(time.Second), time.Now().Add(wait).UTC().Format(time.RFC3339))
}

// codeName spells a status code as the proto enum does: PERMISSION_DENIED.
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
