package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	// Schedules in Europe/Paris must not depend on the host's zoneinfo.
	_ "time/tzdata"

	"github.com/deputyhq/deputy/profiles"
)

// loadExample parses the shipped log-rotator example, with its peer user
// replaced by a uid so that the test host's user database does not matter.
// The acceptance table below is thereby about the file admins copy.
func loadExample(t *testing.T) *profiles.Profile {
	t.Helper()
	data, err := os.ReadFile("../../profiles/examples/log-rotator.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(data), "users: [rotbot]", "uids: [1003]", 1)
	p, err := profiles.Parse("log-rotator.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func parse(t *testing.T, yaml string) *profiles.Profile {
	t.Helper()
	p, err := profiles.Parse("p.yaml", []byte("name: p\npeers: {uids: [5]}\nrunAs: {uid: 7, gid: 8}\n"+yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(err)
	}
	return loc
}()

// monday is inside every window of the example; saturday outside the
// restart rule's office hours. 2026-06-08 is a Monday.
var (
	monday   = time.Date(2026, 6, 8, 10, 0, 0, 0, paris)
	saturday = time.Date(2026, 6, 6, 10, 0, 0, 0, paris)
)

func TestEvaluateAcceptance(t *testing.T) {
	p := loadExample(t)
	const why = "nightly rotation"
	tests := []struct {
		argv  []string
		allow bool
		rule  string
	}{
		{[]string{"/usr/bin/find", "/var/log/app", "-name", "*.gz", "-mtime", "+7", "-print"}, true, "find-old"},
		{[]string{"/usr/bin/find", "/", "-delete"}, false, "default"},
		{[]string{"/usr/bin/find", "/var/log/app", "-name", "*.gz", "-mtime", "+7", "-print", "-delete"}, false, "default"},
		{[]string{"/usr/bin/find", "/var/log/app", "-name", "x.gz", "-mtime", "+7", "-print"}, false, "default"},
		{[]string{"/usr/bin/rm", "-r", "x"}, false, "no-recursive-rm"},
		{[]string{"/usr/bin/rm", "-fr", "x"}, false, "no-recursive-rm"},
		{[]string{"/usr/bin/rm", "x", "-R"}, false, "no-recursive-rm"},
		{[]string{"/usr/bin/rm", "--recursive", "x"}, false, "no-recursive-rm"},
		{[]string{"/usr/bin/rm", "--rec", "x"}, false, "no-recursive-rm"},
		{[]string{"/usr/bin/rm", "-vRf", "x"}, false, "no-recursive-rm"},
		// Not recursive: no-recursive-rm does not match, nor does rm-old
		// (its first argument must be an old log), so the default decides.
		{[]string{"/usr/bin/rm", "--force", "x"}, false, "default"},
		{[]string{"/usr/bin/rm", "/var/log/app/a.gz", "/var/log/app/b.gz"}, true, "rm-old"},
		{[]string{"/usr/bin/rm", "/var/log/app/a.gz", "-r"}, false, "no-recursive-rm"},
		{[]string{"/usr/sbin/logrotate", "--state", "/var/tmp/log-rotator/state", "/etc/logrotate.d/app"}, true, "rotate"},
		{[]string{"/usr/sbin/logrotate", "--state", "/var/tmp/log-rotator/state", "/etc/logrotate.d/app", "--force"}, false, "default"},
		{[]string{"/usr/sbin/logrotate"}, false, "default"},
		{[]string{"/usr/bin/systemctl", "restart", "app.service"}, true, "restart"},
		{[]string{"/usr/bin/systemctl", "stop", "app.service"}, false, "default"},
		{[]string{"/usr/bin/id"}, false, "default"},
	}
	for _, tt := range tests {
		d := Evaluate(p, tt.argv[0], tt.argv[1:], why, monday)
		if d.Allow != tt.allow || d.Rule != tt.rule || d.MissingJustification {
			t.Errorf("%q: %+v, want allow=%v rule=%s", tt.argv, d, tt.allow, tt.rule)
			continue
		}
		if !d.Allow {
			// A denial names its rule and says what would be allowed.
			if !strings.Contains(d.Reason, tt.rule) {
				t.Errorf("%q: reason %q does not name %s", tt.argv, d.Reason, tt.rule)
			}
			if !strings.HasPrefix(d.AllowedHint, "allowed: /usr/sbin/logrotate --state /var/tmp/log-rotator/state /etc/logrotate.d/app, /usr/bin/find /var/log/app -name ") {
				t.Errorf("%q: hint %q", tt.argv, d.AllowedHint)
			}
		}
	}

	d := Evaluate(p, "/usr/bin/find", []string{"/", "-delete"}, why, monday)
	wantHint := `allowed: /usr/sbin/logrotate --state /var/tmp/log-rotator/state /etc/logrotate.d/app, ` +
		`/usr/bin/find /var/log/app -name \*.gz -mtime +[0-9]* -print, /usr/bin/rm /var/log/app/*.gz ..., ` +
		`/usr/bin/systemctl restart app.service (needs approval, mon,tue,wed,thu,fri 08:00-18:00 Europe/Paris)`
	if d.AllowedHint != wantHint {
		t.Errorf("hint\n%s\nwant\n%s", d.AllowedHint, wantHint)
	}
	if want := "no rule of profile log-rotator allows /usr/bin/find with these arguments (default deny)"; d.Reason != want {
		t.Errorf("reason %q", d.Reason)
	}
	d = Evaluate(p, "/usr/bin/rm", []string{"-r", "x"}, why, monday)
	if want := "denied by rule no-recursive-rm of profile log-rotator (/usr/bin/rm with any argument matching -[rR]* or -[!-]*[rR]* or --r*)"; d.Reason != want {
		t.Errorf("reason %q", d.Reason)
	}

	// Approval and the rule's own rate limit travel with the decision.
	d = Evaluate(p, "/usr/bin/systemctl", []string{"restart", "app.service"}, why, monday)
	if !d.NeedsApproval || d.RateLimit == nil || d.RateLimit.Execs != 5 || d.RateLimit.Per.Std() != time.Hour {
		t.Errorf("restart: %+v", d)
	}
	if d := Evaluate(p, "/usr/bin/find", []string{"/var/log/app", "-name", "*.gz", "-mtime", "+7", "-print"}, why, monday); d.NeedsApproval || d.RateLimit != nil {
		t.Errorf("find-old: %+v", d)
	}
}

// TestEvaluateResolvedNames runs the acceptance cases that depend on how
// argv[0] is written through ResolveProgram on this host.
func TestEvaluateResolvedNames(t *testing.T) {
	if _, err := os.Stat("/usr/bin/rm"); err != nil {
		t.Skip("no /usr/bin/rm on this host")
	}
	p := loadExample(t)
	link := filepath.Join(t.TempDir(), "innocent")
	if err := os.Symlink("/usr/bin/rm", link); err != nil {
		t.Fatal(err)
	}
	for _, argv0 := range []string{"/usr/bin/../bin/rm", link, "rm", "/usr/bin/./rm", "//usr//bin/rm"} {
		prog, err := ResolveProgram(argv0, "/usr/bin:/bin", "")
		if err != nil {
			t.Fatalf("ResolveProgram(%s): %v", argv0, err)
		}
		if d := Evaluate(p, prog, []string{"-r", "x"}, "why", monday); d.Allow || d.Rule != "no-recursive-rm" {
			t.Errorf("%s (%s) -r: %+v", argv0, prog, d)
		}
	}
	// On merged-/usr hosts (Debian 12) /bin is a link to usr/bin.
	if fi, err := os.Lstat("/bin"); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		prog, err := ResolveProgram("/bin/rm", "", "")
		if err != nil || prog != "/usr/bin/rm" {
			t.Fatalf("ResolveProgram(/bin/rm) = %s, %v", prog, err)
		}
		// And a rule written with /bin/rm matches the canonical program.
		q := parse(t, "commands:\n  rules:\n    - {id: no-rm, deny: /bin/rm}\n  default: allow\n")
		if d := Evaluate(q, prog, nil, "", monday); d.Allow || d.Rule != "no-rm" {
			t.Errorf("rule /bin/rm vs %s: %+v", prog, d)
		}
	}
}

// TestEvaluateRuleCanonical checks rule paths are compared canonically,
// with a fake resolver so it does not depend on the host's layout.
func TestEvaluateRuleCanonical(t *testing.T) {
	p := parse(t, "commands:\n  rules:\n    - {id: no-rm, deny: /bin/rm}\n  default: allow\n")
	canon := func(s string) string { return strings.Replace(s, "/bin/", "/usr/bin/", 1) }
	if d := evaluate(p, "/usr/bin/rm", nil, "", monday, canon); d.Allow || d.Rule != "no-rm" {
		t.Errorf("canonical rule path: %+v", d)
	}
	if d := evaluate(p, "/usr/bin/rmdir", nil, "", monday, canon); !d.Allow || d.Rule != "default" {
		t.Errorf("other program: %+v", d)
	}
}

func TestEvaluateJustification(t *testing.T) {
	p := loadExample(t)
	for _, j := range []string{"", "  \n"} {
		d := Evaluate(p, "/usr/bin/find", []string{"/var/log/app", "-name", "*.gz", "-mtime", "+7", "-print"}, j, monday)
		if d.Allow || !d.MissingJustification || d.Rule != RuleRequire || !strings.Contains(d.Reason, "requires a justification") {
			t.Errorf("justification %q: %+v", j, d)
		}
	}
	// Without require, no justification is fine.
	if d := Evaluate(parse(t, ""), "/usr/bin/id", nil, "", monday); !d.Allow || d.MissingJustification {
		t.Errorf("no require: %+v", d)
	}
}

func TestEvaluateSchedules(t *testing.T) {
	p := loadExample(t)
	d := Evaluate(p, "/usr/bin/systemctl", []string{"restart", "app.service"}, "why", saturday)
	want := "rule restart of profile log-rotator allows this only mon,tue,wed,thu,fri 08:00-18:00 Europe/Paris; next opening 2026-06-08T08:00:00+02:00"
	if d.Allow || d.Rule != "restart" || d.Reason != want || d.AllowedHint == "" {
		t.Errorf("restart on saturday: %+v\nwant reason %s", d, want)
	}
	// Other rules have no schedule.
	if d := Evaluate(p, "/usr/sbin/logrotate", []string{"--state", "/var/tmp/log-rotator/state", "/etc/logrotate.d/app"}, "why", saturday); !d.Allow {
		t.Errorf("rotate on saturday: %+v", d)
	}

	// The agent's own schedule comes before any rule, overnight included.
	q := parse(t, "schedule: {from: '22:00', to: '06:00', timezone: UTC}\ncommands: {default: allow}\n")
	night := time.Date(2026, 6, 8, 23, 0, 0, 0, time.UTC)
	if d := Evaluate(q, "/usr/bin/id", nil, "", night); !d.Allow {
		t.Errorf("in window: %+v", d)
	}
	d = Evaluate(q, "/usr/bin/id", nil, "", night.Add(8*time.Hour))
	if d.Allow || d.Rule != RuleSchedule || d.Reason != "agent p may run commands only every day 22:00-06:00 UTC; next opening 2026-06-09T22:00:00Z" {
		t.Errorf("out of window: %+v", d)
	}
}

func TestEvaluateDefaults(t *testing.T) {
	// No commands block: today's behaviour, allow.
	if d := Evaluate(parse(t, ""), "/usr/bin/anything", []string{"-rf", "/"}, "", monday); !d.Allow || d.Rule != RuleDefault || d.NeedsApproval {
		t.Errorf("no commands: %+v", d)
	}
	// commands: {} is deny-all, and the hint says so.
	d := Evaluate(parse(t, "commands: {}\n"), "/usr/bin/id", nil, "", monday)
	if d.Allow || d.Rule != RuleDefault || d.AllowedHint != "allowed: nothing (no allow rules, default deny)" {
		t.Errorf("empty commands: %+v", d)
	}
	// default allow: deny rules still win; the hint says the rest runs.
	q := parse(t, "commands:\n  default: allow\n  rules:\n    - {id: no-sh, deny: /usr/bin/sh}\n    - {id: ls, allow: /usr/bin/ls, args: []}\n")
	if d := Evaluate(q, "/usr/bin/sh", []string{"-c", "id"}, "", monday); d.Allow || d.Rule != "no-sh" ||
		d.AllowedHint != "allowed: /usr/bin/ls (no arguments), any other program no rule denies" {
		t.Errorf("default allow, denied: %+v", d)
	}
	if d := Evaluate(q, "/usr/bin/ls", []string{"-l"}, "", monday); !d.Allow || d.Rule != RuleDefault {
		t.Errorf("default allow, ls -l: %+v", d)
	}
	if d := Evaluate(q, "/usr/bin/ls", nil, "", monday); !d.Allow || d.Rule != "ls" {
		t.Errorf("default allow, ls: %+v", d)
	}
	// First match wins, in order.
	r := parse(t, "commands:\n  rules:\n    - {id: a, allow: /usr/bin/x, args: ['**']}\n    - {id: b, deny: /usr/bin/x}\n")
	if d := Evaluate(r, "/usr/bin/x", []string{"1"}, "", monday); !d.Allow || d.Rule != "a" {
		t.Errorf("order: %+v", d)
	}
}

func TestMatchArgs(t *testing.T) {
	for _, tt := range []struct {
		globs, args []string
		want        bool
	}{
		{[]string{}, nil, true},
		{[]string{}, []string{"a"}, false},
		{[]string{"a"}, []string{"a"}, true},
		{[]string{"a"}, []string{"a", "b"}, false},
		{[]string{"a", "b"}, []string{"a"}, false},
		{[]string{"**"}, nil, true},
		{[]string{"**"}, []string{"x", "y"}, true},
		{[]string{"a", "**"}, []string{"a"}, true},
		{[]string{"a", "**"}, []string{"a", "b", "c"}, true},
		{[]string{"a", "**"}, []string{"b"}, false},
		{[]string{"/var/*"}, []string{"/var/log/app"}, true},
	} {
		if got := matchArgs(tt.globs, tt.args); got != tt.want {
			t.Errorf("matchArgs(%q, %q) = %v", tt.globs, tt.args, got)
		}
	}
}

func TestResolveProgramFakeRoot(t *testing.T) {
	root := t.TempDir()
	mk := func(path string, mode os.FileMode) {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("#!/bin/true\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, path string) {
		full := filepath.Join(root, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/bin/rm", 0o755)
	mk("usr/bin/notes.txt", 0o644)
	mk("usr/local/bin/tool", 0o755)
	ln("usr/bin", "bin")                  // relative, as on Debian 12
	ln("/usr/bin/rm", "opt/x/rm-link")    // absolute: stays inside root
	ln("../../bin/rm", "opt/y/chain")     // relative, through the /bin link
	ln("/opt/y/chain", "usr/local/bin/r") // link to a link
	ln("loop", "opt/loop")
	if err := os.MkdirAll(filepath.Join(root, "usr/bin/dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	ok := []struct{ argv0, path, want string }{
		{"/usr/bin/rm", "", "/usr/bin/rm"},
		{"/bin/rm", "", "/usr/bin/rm"},
		{"/usr/bin/../bin/rm", "", "/usr/bin/rm"},
		{"/bin/../bin/rm", "", "/usr/bin/rm"},
		{"/../../../usr/bin/rm", "", "/usr/bin/rm"}, // ".." stops at root
		{"/opt/x/rm-link", "", "/usr/bin/rm"},
		{"/opt/y/chain", "", "/usr/bin/rm"},
		{"/usr/local/bin/r", "", "/usr/bin/rm"},
		{"rm", "/bin", "/usr/bin/rm"},
		{"rm", "", "/usr/bin/rm"},             // default PATH
		{"rm", "bin:/usr/bin", "/usr/bin/rm"}, // relative entry skipped
		{"tool", "/usr/bin:/usr/local/bin", "/usr/local/bin/tool"},
		{"r", "/usr/local/bin", "/usr/bin/rm"},
	}
	for _, tt := range ok {
		got, err := ResolveProgram(tt.argv0, tt.path, root)
		if err != nil || got != tt.want {
			t.Errorf("ResolveProgram(%q, %q) = %q, %v; want %q", tt.argv0, tt.path, got, err, tt.want)
		}
	}
	bad := []struct {
		argv0, path string
		want        error
	}{
		{"", "", ErrNotFound},
		{"./rm", "", ErrRelativeProgram},
		{"bin/rm", "", ErrRelativeProgram},
		{"/usr/bin/missing", "", ErrNotFound},
		{"missing", "/usr/bin:/bin", ErrNotFound},
		{"/usr/bin/notes.txt", "", ErrNotFound}, // not executable
		{"/usr/bin/dir", "", ErrNotFound},
		{"tool", "/usr/bin", ErrNotFound},
		{"/opt/loop", "", nil},
	}
	for _, tt := range bad {
		got, err := ResolveProgram(tt.argv0, tt.path, root)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("ResolveProgram(%q, %q) = %q, %v; want %v", tt.argv0, tt.path, got, err, tt.want)
		}
	}
	if _, err := ResolveProgram("/opt/loop", "", root); err == nil || !strings.Contains(err.Error(), "too many levels of symbolic links") {
		t.Errorf("loop: %v", err)
	}
}

// TestResolveProgramHost checks root "" against filepath.EvalSymlinks.
func TestResolveProgramHost(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "real")
	if err := os.WriteFile(prog, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real", filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	want, err := filepath.EvalSymlinks(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, argv0 := range []string{prog, filepath.Join(dir, "alias"), dir + "/../" + filepath.Base(dir) + "/alias"} {
		if got, err := ResolveProgram(argv0, "", ""); err != nil || got != want {
			t.Errorf("ResolveProgram(%s) = %s, %v; want %s", argv0, got, err, want)
		}
	}
	if got, err := ResolveProgram("alias", "relative:"+dir, "/"); err != nil || got != want {
		t.Errorf("PATH lookup = %s, %v", got, err)
	}
}
