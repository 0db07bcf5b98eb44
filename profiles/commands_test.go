package profiles

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	// The schedule tests must not depend on the test host's zoneinfo.
	_ "time/tzdata"
)

const commandsProfile = base + `commands:
  rules:
    - id: rotate
      allow: /usr/sbin/logrotate
      args: ["--state", "/var/tmp/x/state", "**"]
    - id: no-rm-r
      deny: /usr/bin/rm
      anyArg: ["-[!-]*[rR]*"]
    - id: none
      allow: /usr/bin/true
      args: []
    - id: restart
      allow: /usr/bin/systemctl
      approval: required
      schedule: {days: [mon, friday], from: "22:00", to: 06:00, timezone: Europe/Paris}
      rateLimit: {execs: 5, per: 1h}
require: {justification: true}
rateLimit: {execs: 30, per: 1h}
concurrency: 4
schedule: {days: [sat]}
approval: {timeout: 10m}
`

func TestParseCommands(t *testing.T) {
	stubUsers(t, testUsers)
	p, err := Parse("a.yaml", []byte(commandsProfile))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Commands
	if c == nil || c.Default != ActionDeny || len(c.Rules) != 4 {
		t.Fatalf("commands %+v", c)
	}
	r := c.Rules
	if r[0].ID != "rotate" || !r[0].Allows() || r[0].Program() != "/usr/sbin/logrotate" || r[0].Approval != ApprovalNone || r[0].AnyArg != nil {
		t.Errorf("rule 0: %+v", r[0])
	}
	if r[1].Allows() || r[1].Program() != "/usr/bin/rm" || r[1].Args != nil {
		t.Errorf("rule 1: %+v", r[1])
	}
	// args: [] is "no arguments", distinct from absent ("any").
	if r[2].Args == nil || len(r[2].Args) != 0 {
		t.Errorf("rule 2 args %#v, want empty non-nil", r[2].Args)
	}
	s := r[3].Schedule
	if r[3].Approval != ApprovalRequired || s == nil || r[3].RateLimit == nil || *r[3].RateLimit != (RateLimit{5, Duration(time.Hour)}) {
		t.Fatalf("rule 3: %+v", r[3])
	}
	if !reflect.DeepEqual(s.Days, []Weekday{Weekday(time.Monday), Weekday(time.Friday)}) || s.From != 22*60 || s.To != 6*60 {
		t.Errorf("schedule %+v", s)
	}
	if got := s.String(); got != "mon,fri 22:00-06:00 Europe/Paris" {
		t.Errorf("String() = %q", got)
	}
	if !p.Require.Justification || p.Concurrency != 4 || p.Approval.Timeout.Std() != 10*time.Minute || p.RateLimit.Execs != 30 {
		t.Errorf("profile %+v", p)
	}
	// Days without from and to are whole days.
	if ps := p.Schedule; ps.From != 0 || ps.To != 24*60 || ps.String() != "sat 00:00-24:00 UTC" {
		t.Errorf("agent schedule %v", ps)
	}
}

func TestParseCommandsErrors(t *testing.T) {
	stubUsers(t, testUsers)
	rule := func(lines ...string) string {
		return base + "commands:\n  rules:\n    - " + strings.Join(lines, "\n      ") + "\n" // rule starts on line 6
	}
	tests := []struct {
		name, yaml string
		line       int
		msg        string
	}{
		{"commands null", base + "commands:\n", 4, "commands is empty"},
		{"bad default", base + "commands:\n  default: maybe\n", 5, `commands.default "maybe": want allow or deny`},
		{"unknown rule field", rule("id: a", "allow: /bin/x", "argz: [a]"), 8, `unknown field "argz" in commands.rules[0]`},
		{"id missing", rule("allow: /bin/x"), 6, "commands.rules[0]: id is required"},
		{"id bad", rule("id: Rotate", "allow: /bin/x"), 6, `id "Rotate": want a lowercase letter or digit`},
		{"id duplicate", rule("id: a", "allow: /bin/x") + "    - id: a\n      deny: /bin/y\n", 8, `commands.rules[1]: id "a" is also the id of commands.rules[0]`},
		{"no program", rule("id: a", "args: [x]"), 6, "rule a: want allow or deny with a program path"},
		{"both programs", rule("id: a", "allow: /bin/x", "deny: /bin/y"), 8, "rule a: want exactly one of allow and deny, not both"},
		{"relative program", rule("id: a", "allow: rm"), 7, `rule a: allow: "rm" is not absolute`},
		{"unclean program", rule("id: a", "deny: /usr/bin/../bin/rm"), 7, `rule a: deny: "/usr/bin/../bin/rm" contains ".."`},
		{"bad glob", rule("id: a", "allow: /bin/x", "args:", "  - ok", "  - '[a-'"), 10, `rule a: args: "[a-": unterminated '[': not a valid glob`},
		{"reversed range", rule("id: a", "allow: /bin/x", "anyArg: ['[z-a]']"), 8, "range z-a is reversed"},
		{"trailing backslash", rule("id: a", "allow: /bin/x", `anyArg: ['x\']`), 8, `ends in '\'`},
		{"starstar not last", rule("id: a", "allow: /bin/x", "args: ['**', x]"), 8, `"**" matches all remaining arguments and must come last`},
		{"anyArg empty", rule("id: a", "deny: /bin/x", "anyArg: []"), 8, "rule a: anyArg is empty"},
		{"bad approval", rule("id: a", "allow: /bin/x", "approval: yes"), 8, `rule a: approval "yes": want none or required`},
		{"approval on deny", rule("id: a", "deny: /bin/x", "approval: required"), 8, "rule a: approval applies to allow rules only"},
		{"schedule on deny", rule("id: a", "deny: /bin/x", "schedule: {days: [mon]}"), 8, "rule a: schedule applies to allow rules only"},
		{"rateLimit on deny", rule("id: a", "deny: /bin/x", "rateLimit: {execs: 1, per: 1h}"), 8, "rule a: rateLimit applies to allow rules only"},
		{"bad timezone", rule("id: a", "allow: /bin/x", "schedule:", "  days: [mon]", "  timezone: Mars/Olympus"), 10, `commands.rules[0].schedule.timezone "Mars/Olympus"`},
		{"bad day", rule("id: a", "allow: /bin/x", "schedule: {days: [mon, funday]}"), 8, `"funday" is not a day`},
		{"day twice", base + "schedule:\n  days: [mon, tue, mon]\n", 5, "schedule.days: mon is listed twice"},
		{"bad clock", base + "schedule:\n  from: '8am'\n  to: '18:00'\n", 5, `schedule.from: "8am" is not a time of day`},
		{"clock 25", base + "schedule:\n  from: '08:00'\n  to: '25:00'\n", 6, `"25:00" is not a time of day`},
		{"from 24", base + "schedule:\n  from: '24:00'\n  to: '08:00'\n", 5, "schedule.from: 24:00 is not a start time"},
		{"from only", base + "schedule:\n  from: '08:00'\n", 4, "schedule: want both from and to"},
		{"empty window", base + "schedule:\n  from: '08:00'\n  to: '08:00'\n", 6, "from and to are both 08:00"},
		{"schedule nothing", base + "schedule: {timezone: UTC}\n", 4, "schedule: want days, or from and to"},
		{"schedule null", base + "schedule:\n", 4, "schedule is empty"},
		{"rateLimit no per", base + "rateLimit:\n  execs: 5\n", 4, "rateLimit.per is required"},
		{"rateLimit zero", base + "rateLimit:\n  execs: 0\n  per: 1h\n", 5, "rateLimit.execs: want at least 1"},
		{"rateLimit bare per", base + "rateLimit:\n  execs: 1\n  per: 60\n", 6, "rateLimit.per: 60 is not a duration"},
		{"concurrency 0", base + "concurrency: 0\n", 4, "concurrency: 0 is not allowed"},
		{"concurrency negative", base + "concurrency: -2\n", 4, "concurrency -2: want at least 1"},
		{"require unknown", base + "require:\n  reason: true\n", 5, `unknown field "reason" in require`},
		{"approval timeout bad", base + "approval:\n  timeout: 0s\n", 5, "approval.timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("a.yaml", []byte(tt.yaml))
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v (%T), want ErrorList", err, err)
			}
			prefix := fmt.Sprintf("a.yaml:%d: ", tt.line)
			for _, e := range list {
				if s := e.Error(); strings.HasPrefix(s, prefix) && strings.Contains(s, tt.msg) {
					return
				}
			}
			t.Errorf("got\n%v\nwant an error starting %q containing %q", err, prefix, tt.msg)
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"-[rR]*", []string{"-r", "-R", "-rf", "-r/x"}, []string{"-f", "--recursive", "r", ""}},
		{"-[!-]*[rR]*", []string{"-fr", "-vfR", "-fvr", "-fr-"}, []string{"-r", "--recursive", "--force", "-f"}},
		{"-[^-]*[rR]*", []string{"-fr"}, []string{"--r"}},
		{"--r*", []string{"--r", "--rec", "--recursive"}, []string{"--force", "-r"}},
		{"*", []string{"", "a", "/a/b", "--x"}, nil},
		{"/var/log/app/*.gz", []string{"/var/log/app/a.gz", "/var/log/app/x/y.gz"}, []string{"/var/log/app/a.gzz", "/var/log/a.gz"}},
		{"?", []string{"a", "/", "é"}, []string{"", "ab"}},
		{`\*.gz`, []string{"*.gz"}, []string{"a.gz", `\a.gz`}},
		{`[\]]`, []string{"]"}, []string{`\`}},
		{"[]a]", []string{"]", "a"}, []string{"b"}},
		{"[a-]", []string{"a", "-"}, []string{"b"}},
		{"[-a]", []string{"a", "-"}, []string{"b"}},
		{"+[0-9]*", []string{"+7", "+30"}, []string{"7", "+", "-7"}},
		{"a*b*c", []string{"abc", "aXbYc", "abbbc", "acbc"}, []string{"ab", "acb"}},
		{"é*", []string{"é", "éé"}, []string{"e"}},
	}
	for _, tt := range tests {
		if err := CheckGlob(tt.pattern); err != nil {
			t.Errorf("CheckGlob(%q) = %v", tt.pattern, err)
		}
		for _, s := range tt.match {
			if !MatchGlob(tt.pattern, s) {
				t.Errorf("MatchGlob(%q, %q) = false", tt.pattern, s)
			}
		}
		for _, s := range tt.noMatch {
			if MatchGlob(tt.pattern, s) {
				t.Errorf("MatchGlob(%q, %q) = true", tt.pattern, s)
			}
		}
	}
	for _, p := range []string{"[", "[a", "[!", "[]", "[z-a]", `x\`, `[a\`, "a\x00"} {
		if err := CheckGlob(p); !errors.Is(err, ErrBadGlob) {
			t.Errorf("CheckGlob(%q) = %v, want ErrBadGlob", p, err)
		}
		if MatchGlob(p, p) {
			t.Errorf("MatchGlob(%q) matched with a bad pattern", p)
		}
	}
}

// TestGlobLinear checks that a pathological pattern against a long
// argument finishes: backtracking is bounded by one star.
func TestGlobLinear(t *testing.T) {
	arg := strings.Repeat("a", 64<<10)
	if MatchGlob("*a*a*a*a*a*b", arg) {
		t.Error("matched")
	}
}

func TestSchedule(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	day := func(ds ...time.Weekday) []Weekday {
		var w []Weekday
		for _, d := range ds {
			w = append(w, Weekday(d))
		}
		return w
	}
	office := Schedule{Days: day(time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday), From: 8 * 60, To: 18 * 60, Timezone: "Europe/Paris"}
	night := Schedule{Days: day(time.Friday), From: 22 * 60, To: 6 * 60, Timezone: "Europe/Paris"}
	tests := []struct {
		s        Schedule
		now      string
		contains bool
		next     string
	}{
		// 2026-06-05 is a Friday.
		{office, "2026-06-05 08:00", true, "2026-06-08T08:00:00+02:00"},
		{office, "2026-06-05 17:59", true, "2026-06-08T08:00:00+02:00"},
		{office, "2026-06-05 18:00", false, "2026-06-08T08:00:00+02:00"},
		{office, "2026-06-06 12:00", false, "2026-06-08T08:00:00+02:00"},
		{office, "2026-06-08 07:59", false, "2026-06-08T08:00:00+02:00"},
		{night, "2026-06-05 21:59", false, "2026-06-05T22:00:00+02:00"},
		{night, "2026-06-05 23:00", true, "2026-06-12T22:00:00+02:00"},
		// Saturday morning is still Friday's window.
		{night, "2026-06-06 05:59", true, "2026-06-12T22:00:00+02:00"},
		{night, "2026-06-06 06:00", false, "2026-06-12T22:00:00+02:00"},
		// Thursday night is not.
		{night, "2026-06-05 01:00", false, "2026-06-05T22:00:00+02:00"},
		// Across the switch to winter time: the offset follows the zone.
		{office, "2026-10-24 12:00", false, "2026-10-26T08:00:00+01:00"},
	}
	for _, tt := range tests {
		now := at(tt.now)
		if got := tt.s.Contains(now); got != tt.contains {
			t.Errorf("%v Contains(%s) = %v", tt.s, tt.now, got)
		}
		// The instant is what matters, not the zone of the caller's clock.
		if got := tt.s.Contains(now.UTC()); got != tt.contains {
			t.Errorf("%v Contains(%s UTC) = %v", tt.s, tt.now, got)
		}
		if got := tt.s.Next(now.UTC()).Format(time.RFC3339); got != tt.next {
			t.Errorf("%v Next(%s) = %s, want %s", tt.s, tt.now, got, tt.next)
		}
	}
	allDay := Schedule{From: 0, To: 24 * 60}
	if !allDay.Contains(at("2026-06-05 23:59")) || allDay.Location() != time.UTC {
		t.Error("whole-day UTC schedule")
	}
}

func TestLintCommands(t *testing.T) {
	stubUsers(t, testUsers)
	dir := writeFiles(t, map[string]string{
		"a.yaml": profileYAML("alpha", 1001, 61001) + `filesystem:
  write: [/srv/tools]
commands:
  default: allow
  rules:
    - id: shell
      allow: /bin/sh
    - id: py
      allow: /usr/bin/python3.11
      args: [/srv/x.py]
    - id: own-tool
      allow: /srv/tools/run
    - id: no-env
      deny: /usr/bin/env
    - id: ls
      allow: /usr/bin/ls
`,
	})
	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range Lint(s, nil) {
		got = append(got, strings.ReplaceAll(w.String(), dir, "D"))
	}
	want := []string{
		"D/a.yaml:10: warning: commands.default: allow runs every program filesystem.exec grants that no rule denies: a copy or a new name of a denied program is not denied",
		"D/a.yaml:13: warning: rule shell allows /bin/sh, an interpreter: argument rules can be bypassed through it",
		"D/a.yaml:15: warning: rule py allows /usr/bin/python3.11, an interpreter: argument rules can be bypassed through it",
		"D/a.yaml:18: warning: rule own-tool allows /srv/tools/run, under write grant /srv/tools: the agent can replace the program",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestIsInterpreter(t *testing.T) {
	for p, want := range map[string]bool{
		"/bin/sh": true, "/usr/bin/bash": true, "/usr/bin/python3": true, "/usr/bin/python3.11": true,
		"/usr/bin/perl5.36": true, "/usr/bin/node": true, "/usr/bin/env": true, "/bin/busybox": true,
		"/usr/bin/ls": false, "/usr/bin/shred": false, "/usr/bin/pythonista": false, "/usr/bin/sh5": false,
		"/usr/bin/envsubst": false,
	} {
		if got := isInterpreter(p); got != want {
			t.Errorf("isInterpreter(%s) = %v", p, got)
		}
	}
}
