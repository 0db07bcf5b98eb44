package profiles

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

// Commands is the command policy of an agent: an ordered list of rules,
// the first of which that matches a request decides it, then a default.
//
// A rule names a program by absolute path. The daemon compares the
// canonical path of the program a request would run (PATH looked up,
// symlinks and ".." resolved) with the canonical path of the rule's
// program, so /bin/rm, /usr/bin/../bin/rm and a symlink to /usr/bin/rm
// are all /usr/bin/rm. A copy of a binary is another program, which is
// why the default is deny: an allow-list cannot be walked around by
// copying a program, a deny-list can.
type Commands struct {
	// Default is what happens to a request no rule matches: allow or deny.
	// Empty means deny.
	Default Action `yaml:"default"`
	// Rules are tried in order; the first that matches wins.
	Rules []Rule `yaml:"rules"`
}

// Action is what a rule or a default does.
type Action string

const (
	ActionAllow Action = "allow"
	ActionDeny  Action = "deny"
)

// Rule matches one program, optionally only with certain arguments.
//
// Arguments are matched with shell-style globs, one per argument: '*'
// matches any string (including '/', unlike path.Match), '?' any one
// character, '[abc]', '[a-z]' and '[!abc]' (or '[^abc]') a class, and '\'
// escapes the next character.
type Rule struct {
	// ID names the rule in decisions and audit records: [a-z0-9][a-z0-9_-]*,
	// unique within the profile.
	ID string `yaml:"id"`
	// Allow or Deny, exactly one, is the absolute, clean program path.
	Allow string `yaml:"allow"`
	Deny  string `yaml:"deny"`
	// Args, when present, is one glob per argument (argv[1:]); a last
	// element "**" matches any remaining arguments, zero or more. Absent
	// means any arguments; an empty list means no arguments at all.
	Args []string `yaml:"args"`
	// AnyArg, when present, matches when any one argument matches any of
	// these globs. With Args as well, both must match.
	AnyArg []string `yaml:"anyArg"`
	// Approval is none (the default) or required: an admin must approve
	// each exec. Allow rules only.
	Approval ApprovalMode `yaml:"approval"`
	// Schedule, when set, is when the rule allows; outside it a matching
	// request is denied. Allow rules only.
	Schedule *Schedule `yaml:"schedule"`
	// RateLimit bounds the execs this rule allows, per agent. Allow rules
	// only.
	RateLimit *RateLimit `yaml:"rateLimit"`
}

// Program is the rule's program path, whichever of Allow and Deny is set.
func (r *Rule) Program() string {
	if r.Allow != "" {
		return r.Allow
	}
	return r.Deny
}

// Allows reports whether this is an allow rule.
func (r *Rule) Allows() bool { return r.Allow != "" }

// ApprovalMode says whether an exec waits for an admin's approval.
type ApprovalMode string

const (
	ApprovalNone     ApprovalMode = "none"
	ApprovalRequired ApprovalMode = "required"
)

// Require lists what every exec request of the agent must carry.
type Require struct {
	// Justification refuses a request whose justification is empty.
	Justification bool `yaml:"justification"`
}

// RateLimit is at most Execs execs in any window of length Per.
type RateLimit struct {
	Execs int      `yaml:"execs"`
	Per   Duration `yaml:"per"`
}

func (r RateLimit) String() string { return fmt.Sprintf("%d per %s", r.Execs, r.Per) }

// Approval configures approval-required execs.
type Approval struct {
	// Timeout is how long an exec waits for a decision before it is
	// denied; default DefaultApprovalTimeout.
	Timeout Duration `yaml:"timeout"`
}

// DefaultApprovalTimeout applies where a profile leaves approval.timeout
// unset.
const DefaultApprovalTimeout = 5 * time.Minute

// Schedule is a weekly window: on each of Days, from From to To in
// Timezone. From after To is an overnight window that wraps past midnight
// (22:00 to 06:00); Days then name the day a window opens, so a friday
// 22:00-06:00 window ends saturday 06:00. Without from and to a window is
// the whole day.
type Schedule struct {
	// Days are mon, tue, wed, thu, fri, sat, sun (or full names); empty
	// means every day.
	Days []Weekday `yaml:"days"`
	// From and To are "HH:MM"; To may be "24:00".
	From Clock `yaml:"from"`
	To   Clock `yaml:"to"`
	// Timezone is an IANA zone name ("Europe/Paris"); empty means UTC.
	Timezone string `yaml:"timezone"`

	loc *time.Location // set by validation
}

// Location is the schedule's time zone.
func (s Schedule) Location() *time.Location {
	if s.loc != nil {
		return s.loc
	}
	// A hand-built Schedule (tests, callers outside Parse): load without
	// caching, since a loaded profile is shared and must not be written.
	if loc, err := time.LoadLocation(s.Timezone); err == nil {
		return loc
	}
	return time.UTC
}

func (s Schedule) onDay(d time.Weekday) bool {
	if len(s.Days) == 0 {
		return true
	}
	for _, w := range s.Days {
		if time.Weekday(w) == d {
			return true
		}
	}
	return false
}

// window returns the window that opens on day y-m-d (normalized, so d may
// be out of range) in loc.
func (s Schedule) window(y int, m time.Month, d int, loc *time.Location) (start, end time.Time) {
	start = time.Date(y, m, d, int(s.From)/60, int(s.From)%60, 0, 0, loc)
	endDay := d
	if s.To <= s.From {
		endDay++
	}
	// Hour 24 normalizes to 00:00 of the next day.
	end = time.Date(y, m, endDay, int(s.To)/60, int(s.To)%60, 0, 0, loc)
	return start, end
}

// Contains reports whether t is inside one of the schedule's windows.
func (s Schedule) Contains(t time.Time) bool {
	loc := s.Location()
	y, m, d := t.In(loc).Date()
	// Today's window, or yesterday's if it runs overnight into today.
	for _, back := range []int{0, -1} {
		start, end := s.window(y, m, d+back, loc)
		if s.onDay(start.Weekday()) && !t.Before(start) && t.Before(end) {
			return true
		}
	}
	return false
}

// Next returns the first time after t at which a window opens, in the
// schedule's zone; the zero Time if none does within eight days, which a
// validated schedule rules out.
func (s Schedule) Next(t time.Time) time.Time {
	loc := s.Location()
	y, m, d := t.In(loc).Date()
	for k := 0; k <= 8; k++ {
		start, _ := s.window(y, m, d+k, loc)
		if s.onDay(start.Weekday()) && start.After(t) {
			return start
		}
	}
	return time.Time{}
}

// String writes the schedule as "mon,tue 08:00-18:00 Europe/Paris".
func (s Schedule) String() string {
	days := "every day"
	if len(s.Days) > 0 {
		names := make([]string, len(s.Days))
		for i, d := range s.Days {
			names[i] = d.String()
		}
		days = strings.Join(names, ",")
	}
	return fmt.Sprintf("%s %s-%s %s", days, s.From, s.To, s.Location())
}

// Weekday is a day of the week written as its name.
type Weekday time.Weekday

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// UnmarshalYAML accepts mon..sun or monday..sunday, lowercase.
func (w *Weekday) UnmarshalYAML(n ast.Node) error {
	text, isString, ok := scalar(n)
	if !ok {
		return nil
	}
	d, known := weekdays[text]
	if !known && len(text) > 3 {
		// A full name: the abbreviation plus the rest of that day's name.
		if d, known = weekdays[text[:3]]; known && strings.ToLower(d.String()) != text {
			known = false
		}
	}
	if !isString || !known {
		return &nodeError{n.GetToken(), fmt.Sprintf("%q is not a day: want mon, tue, wed, thu, fri, sat or sun", n.GetToken().Value)}
	}
	*w = Weekday(d)
	return nil
}

func (w Weekday) String() string { return strings.ToLower(time.Weekday(w).String()[:3]) }

// Clock is a time of day in minutes since midnight, written "HH:MM".
type Clock int

var clockRE = lazyRE(`^([0-9]{2}):([0-9]{2})$`)

// UnmarshalYAML accepts "00:00" to "24:00". The token's text is used
// whatever its YAML type, since YAML 1.1 would read 08:00 as a number.
func (c *Clock) UnmarshalYAML(n ast.Node) error {
	if _, _, ok := scalar(n); !ok {
		return nil
	}
	text := n.GetToken().Value
	m := clockRE().FindStringSubmatch(text)
	bad := m == nil
	var h, min int
	if !bad {
		h, _ = strconv.Atoi(m[1])
		min, _ = strconv.Atoi(m[2])
		bad = h > 24 || min > 59 || (h == 24 && min != 0)
	}
	if bad {
		return &nodeError{n.GetToken(), fmt.Sprintf("%q is not a time of day: want HH:MM from 00:00 to 24:00", text)}
	}
	*c = Clock(h*60 + min)
	return nil
}

func (c Clock) String() string { return fmt.Sprintf("%02d:%02d", int(c)/60, int(c)%60) }

// ruleIDRE is the syntax of a rule id.
var ruleIDRE = lazyRE(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// checkCommands validates the command policy and applies its defaults.
func checkCommands(pp *parsed) ErrorList {
	c := pp.p.Commands
	if c == nil {
		if pp.idx.has("commands") {
			return ErrorList{pp.errorf("commands", "commands is empty: write rules, or default: deny to refuse every exec")}
		}
		return nil
	}
	var errs ErrorList
	switch c.Default {
	case "":
		c.Default = ActionDeny
	case ActionAllow, ActionDeny:
	default:
		errs = append(errs, pp.errorf("commands.default", "commands.default %q: want allow or deny", c.Default))
	}
	ids := map[string]string{}
	for i := range c.Rules {
		r := &c.Rules[i]
		path := fmt.Sprintf("commands.rules[%d]", i)
		at := func(field string) string { return path + "." + field }
		switch {
		case r.ID == "":
			errs = append(errs, pp.errorf(at("id"), "%s: id is required", path))
		case !ruleIDRE().MatchString(r.ID):
			errs = append(errs, pp.errorf(at("id"), "%s: id %q: want a lowercase letter or digit then up to 62 lowercase letters, digits, '-' or '_'", path, r.ID))
		case ids[r.ID] != "":
			errs = append(errs, pp.errorf(at("id"), "%s: id %q is also the id of %s", path, r.ID, ids[r.ID]))
		default:
			ids[r.ID] = path
		}
		name := path
		if r.ID != "" {
			name = fmt.Sprintf("rule %s", r.ID)
		}
		switch {
		case r.Allow != "" && r.Deny != "":
			errs = append(errs, pp.errorf(at("deny"), "%s: want exactly one of allow and deny, not both", name))
		case r.Allow == "" && r.Deny == "":
			errs = append(errs, pp.errorf(path, "%s: want allow or deny with a program path", name))
		default:
			key := "allow"
			if r.Deny != "" {
				key = "deny"
			}
			if e := checkPath(r.Program()); e != "" {
				errs = append(errs, pp.errorf(at(key), "%s: %s: %s", name, key, e))
			}
		}
		for j, g := range r.Args {
			field := fmt.Sprintf("%s.args[%d]", path, j)
			if g == "**" {
				if j != len(r.Args)-1 {
					errs = append(errs, pp.errorf(field, "%s: args: \"**\" matches all remaining arguments and must come last", name))
				}
				continue
			}
			if err := CheckGlob(g); err != nil {
				errs = append(errs, pp.errorf(field, "%s: args: %v", name, err))
			}
		}
		if r.AnyArg != nil && len(r.AnyArg) == 0 {
			errs = append(errs, pp.errorf(at("anyArg"), "%s: anyArg is empty: the rule would never match", name))
		}
		for j, g := range r.AnyArg {
			if err := CheckGlob(g); err != nil {
				errs = append(errs, pp.errorf(fmt.Sprintf("%s.anyArg[%d]", path, j), "%s: anyArg: %v", name, err))
			}
		}
		switch r.Approval {
		case "":
			r.Approval = ApprovalNone
		case ApprovalNone, ApprovalRequired:
		default:
			errs = append(errs, pp.errorf(at("approval"), "%s: approval %q: want none or required", name, r.Approval))
		}
		// Approval, schedules and rate limits qualify what a rule allows;
		// on a deny rule they would read as "deny only sometimes", which
		// is a policy nobody should have to reason about.
		if r.Deny != "" {
			for _, f := range []struct {
				key string
				set bool
			}{{"approval", r.Approval == ApprovalRequired}, {"schedule", pp.idx.has(at("schedule"))}, {"rateLimit", pp.idx.has(at("rateLimit"))}} {
				if f.set {
					errs = append(errs, pp.errorf(at(f.key), "%s: %s applies to allow rules only", name, f.key))
				}
			}
		}
		errs = append(errs, checkSchedule(pp, at("schedule"), r.Schedule)...)
		errs = append(errs, checkRateLimit(pp, at("rateLimit"), r.RateLimit)...)
	}
	return errs
}

func checkAgentSchedule(pp *parsed) ErrorList { return checkSchedule(pp, "schedule", pp.p.Schedule) }

func checkAgentRateLimit(pp *parsed) ErrorList {
	return checkRateLimit(pp, "rateLimit", pp.p.RateLimit)
}

// checkConcurrency refuses an explicit 0 for the same reason checkLimits
// does: "concurrency: 0" most likely means "none", not "unlimited".
func checkConcurrency(pp *parsed) ErrorList {
	switch n := pp.p.Concurrency; {
	case n < 0:
		return ErrorList{pp.errorf("concurrency", "concurrency %d: want at least 1", n)}
	case n == 0 && pp.idx.has("concurrency"):
		return ErrorList{pp.errorf("concurrency", "concurrency: 0 is not allowed; leave it out for no per-agent limit")}
	}
	return nil
}

func checkApproval(pp *parsed) ErrorList {
	if pp.p.Approval.Timeout == 0 {
		pp.p.Approval.Timeout = Duration(DefaultApprovalTimeout)
	}
	return nil
}

func checkSchedule(pp *parsed, path string, s *Schedule) ErrorList {
	if s == nil {
		if pp.idx.has(path) {
			return ErrorList{pp.errorf(path, "%s is empty: want days, or from and to", path)}
		}
		return nil
	}
	var errs ErrorList
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		errs = append(errs, pp.errorf(path+".timezone", "%s.timezone %q: %v", path, s.Timezone, err))
		loc = time.UTC
	}
	s.loc = loc
	seen := map[Weekday]bool{}
	for i, d := range s.Days {
		if seen[d] {
			errs = append(errs, pp.errorf(fmt.Sprintf("%s.days[%d]", path, i), "%s.days: %s is listed twice", path, d))
		}
		seen[d] = true
	}
	hasFrom, hasTo := pp.idx.has(path+".from"), pp.idx.has(path+".to")
	switch {
	case !hasFrom && !hasTo:
		if len(s.Days) == 0 {
			errs = append(errs, pp.errorf(path, "%s: want days, or from and to", path))
		}
		s.From, s.To = 0, 24*60
	case hasFrom != hasTo:
		errs = append(errs, pp.errorf(path, "%s: want both from and to, or neither for whole days", path))
	case s.From == 24*60:
		errs = append(errs, pp.errorf(path+".from", "%s.from: 24:00 is not a start time; write 00:00", path))
	case s.From == s.To:
		errs = append(errs, pp.errorf(path+".to", "%s: from and to are both %s: the window is empty", path, s.From))
	}
	return errs
}

func checkRateLimit(pp *parsed, path string, r *RateLimit) ErrorList {
	if r == nil {
		if pp.idx.has(path) {
			return ErrorList{pp.errorf(path, "%s is empty: want execs and per", path)}
		}
		return nil
	}
	var errs ErrorList
	if r.Execs < 1 {
		errs = append(errs, pp.errorf(path+".execs", "%s.execs: want at least 1", path))
	}
	if r.Per <= 0 {
		errs = append(errs, pp.errorf(path+".per", "%s.per is required: a duration such as \"1h\"", path))
	}
	return errs
}
