// Package policy decides whether an agent may run a command, under the
// `commands`, `require` and `schedule` parts of its profile, and keeps the
// state that such decisions need across execs: rate-limit windows,
// concurrency counts and pending approvals. It is pure Go and needs no
// privileges; the daemon calls it after a request is validated and before
// the exec is audited and launched.
package policy

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/deputyhq/deputy/profiles"
)

// Names that Decision.Rule takes when no rule id decided.
const (
	// RuleDefault: no rule matched and commands.default decided, or the
	// profile has no commands block at all.
	RuleDefault = "default"
	// RuleSchedule: the agent-level schedule excludes now.
	RuleSchedule = "schedule"
	// RuleRequire: a require: item is missing.
	RuleRequire = "require"
)

// Decision is the outcome of Evaluate.
type Decision struct {
	// Allow: the exec may go on (after approval, if NeedsApproval).
	Allow bool
	// Rule is the id of the deciding rule, or RuleDefault, RuleSchedule or
	// RuleRequire.
	Rule string
	// Reason is one sentence for the caller and the audit log; a denial
	// names the rule.
	Reason string
	// NeedsApproval: the allowing rule says approval: required.
	NeedsApproval bool
	// MissingJustification: the profile requires a justification and the
	// request has none. This is a malformed request (INVALID_ARGUMENT),
	// not a denial (PERMISSION_DENIED); Allow is false.
	MissingJustification bool
	// AllowedHint, on a denial, lists what the profile does allow, so
	// that an agent can correct itself instead of guessing.
	AllowedHint string
	// RateLimit is the allowing rule's rate limit, nil if none. The
	// caller charges it, with the agent's, through Limiter.Admit.
	RateLimit *profiles.RateLimit
}

// Evaluate decides whether the agent of p may run program (the canonical
// absolute path from ResolveProgram) with args (argv[1:]) at now. Checks
// run in this order: the justification requirement, the agent's schedule,
// then the rules, first match wins, then commands.default. A profile
// without a commands block allows every program, as before commands
// existed; filesystem.exec still bounds what can actually run.
//
// Rule programs are compared by canonical path too (symlinks and ".."
// resolved on this host when the path exists), so that a rule for /bin/rm
// matches /usr/bin/rm where /bin is a link to usr/bin.
func Evaluate(p *profiles.Profile, program string, args []string, justification string, now time.Time) Decision {
	return evaluate(p, program, args, justification, now, hostCanonical)
}

// hostCanonical resolves a rule's program path on this host; a path that
// does not exist (or cannot be resolved) is compared as written.
func hostCanonical(path string) string {
	if c, err := filepath.EvalSymlinks(path); err == nil {
		return c
	}
	return path
}

func evaluate(p *profiles.Profile, program string, args []string, justification string, now time.Time,
	canonical func(string) string) Decision {
	if p.Require.Justification && strings.TrimSpace(justification) == "" {
		return Decision{Rule: RuleRequire, MissingJustification: true,
			Reason: fmt.Sprintf("profile %s requires a justification for every exec", p.Name)}
	}
	if s := p.Schedule; s != nil && !s.Contains(now) {
		return Decision{Rule: RuleSchedule, AllowedHint: hint(p),
			Reason: fmt.Sprintf("agent %s may run commands only %s; next opening %s",
				p.Name, s, s.Next(now).Format(time.RFC3339))}
	}
	c := p.Commands
	if c == nil {
		return Decision{Allow: true, Rule: RuleDefault,
			Reason: fmt.Sprintf("profile %s has no commands block: any program filesystem.exec grants may run", p.Name)}
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		if !matches(r, program, args, canonical) {
			continue
		}
		if !r.Allows() {
			return Decision{Rule: r.ID, AllowedHint: hint(p),
				Reason: fmt.Sprintf("denied by rule %s of profile %s (%s)", r.ID, p.Name, describe(r))}
		}
		// A rule outside its window does not fall through to later rules:
		// the admin said when this command may run, and a broader rule
		// below should not quietly override that.
		if s := r.Schedule; s != nil && !s.Contains(now) {
			return Decision{Rule: r.ID, AllowedHint: hint(p),
				Reason: fmt.Sprintf("rule %s of profile %s allows this only %s; next opening %s",
					r.ID, p.Name, s, s.Next(now).Format(time.RFC3339))}
		}
		return Decision{Allow: true, Rule: r.ID, NeedsApproval: r.Approval == profiles.ApprovalRequired,
			RateLimit: r.RateLimit, Reason: fmt.Sprintf("allowed by rule %s of profile %s", r.ID, p.Name)}
	}
	if c.Default == profiles.ActionAllow {
		return Decision{Allow: true, Rule: RuleDefault,
			Reason: fmt.Sprintf("no rule of profile %s matches; commands.default is allow", p.Name)}
	}
	return Decision{Rule: RuleDefault, AllowedHint: hint(p),
		Reason: fmt.Sprintf("no rule of profile %s allows %s with these arguments (default deny)", p.Name, program)}
}

// matches reports whether rule r matches the request.
func matches(r *profiles.Rule, program string, args []string, canonical func(string) string) bool {
	if program != r.Program() && program != canonical(r.Program()) {
		return false
	}
	if r.Args != nil && !matchArgs(r.Args, args) {
		return false
	}
	if r.AnyArg != nil && !matchAnyArg(r.AnyArg, args) {
		return false
	}
	return true
}

// matchArgs matches one glob per argument; a last "**" takes the rest.
func matchArgs(globs, args []string) bool {
	for i, g := range globs {
		if g == "**" && i == len(globs)-1 {
			return true
		}
		if i >= len(args) || !profiles.MatchGlob(g, args[i]) {
			return false
		}
	}
	return len(args) == len(globs)
}

func matchAnyArg(globs, args []string) bool {
	for _, a := range args {
		for _, g := range globs {
			if profiles.MatchGlob(g, a) {
				return true
			}
		}
	}
	return false
}

// describe writes what a rule matches: "/usr/bin/rm with any argument
// matching -[rR]* or --r*", "/usr/bin/find /var/log/app ...".
func describe(r *profiles.Rule) string {
	var b strings.Builder
	b.WriteString(r.Program())
	switch {
	case r.Args == nil:
		if r.AnyArg == nil {
			b.WriteString(" ...")
		}
	case len(r.Args) == 0:
		b.WriteString(" (no arguments)")
	default:
		for _, a := range r.Args {
			b.WriteByte(' ')
			if a == "**" {
				b.WriteString("...")
			} else {
				b.WriteString(quote(a))
			}
		}
	}
	if r.AnyArg != nil {
		b.WriteString(" with any argument matching ")
		b.WriteString(strings.Join(r.AnyArg, " or "))
	}
	return b.String()
}

// quote single-quotes an argument that a shell would split or expand, so
// that a hint can be pasted back.
func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"$`;&|<>(){}") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// maxHintRules bounds the hint: it goes into every denial message.
const maxHintRules = 10

// hint lists the allow rules of p, in order: "allowed: /usr/sbin/logrotate
// --state ..., /usr/bin/find /var/log/app ...".
func hint(p *profiles.Profile) string {
	if p.Commands == nil {
		return ""
	}
	var parts []string
	n := 0
	for i := range p.Commands.Rules {
		r := &p.Commands.Rules[i]
		if !r.Allows() {
			continue
		}
		if n++; n > maxHintRules {
			continue
		}
		s := describe(r)
		var notes []string
		if r.Approval == profiles.ApprovalRequired {
			notes = append(notes, "needs approval")
		}
		if r.Schedule != nil {
			notes = append(notes, r.Schedule.String())
		}
		if len(notes) > 0 {
			s += " (" + strings.Join(notes, ", ") + ")"
		}
		parts = append(parts, s)
	}
	if n > maxHintRules {
		parts = append(parts, fmt.Sprintf("and %d more", n-maxHintRules))
	}
	switch {
	case p.Commands.Default == profiles.ActionAllow:
		parts = append(parts, "any other program no rule denies")
	case len(parts) == 0:
		return "allowed: nothing (no allow rules, default deny)"
	}
	return "allowed: " + strings.Join(parts, ", ")
}
