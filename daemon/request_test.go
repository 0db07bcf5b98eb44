package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/deputyhq/deputy/profiles"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
	"github.com/deputyhq/deputy/sandbox"
)

func testProfile() *profiles.Profile {
	return &profiles.Profile{
		Name:       "tester",
		RunAs:      profiles.RunAs{UID: 50001, GID: 50001},
		Filesystem: profiles.Filesystem{Read: []string{"/srv/data"}, Write: []string{"/var/tmp/tester"}, Exec: []string{"/usr/bin"}},
		Limits:     profiles.Limits{Timeout: profiles.Duration(time.Minute)},
		Env:        profiles.Env{Pass: []string{"LANG"}, Set: map[string]string{"PATH": "/usr/bin"}},
	}
}

func TestNewRequestValidates(t *testing.T) {
	p := testProfile()
	cases := []struct {
		name  string
		start *deputyv1.ExecStart
		want  string // substring of the error, "" for success
	}{
		{"ok", &deputyv1.ExecStart{Argv: []string{"ls"}}, ""},
		{"empty argv", &deputyv1.ExecStart{}, "empty command"},
		{"empty argv0", &deputyv1.ExecStart{Argv: []string{""}}, "empty command"},
		{"nul in argv", &deputyv1.ExecStart{Argv: []string{"ls", "a\x00b"}}, "NUL"},
		{"too many args", &deputyv1.ExecStart{Argv: slices.Repeat([]string{"x"}, maxArgs+1)}, "exceed the limit"},
		{"argv too large", &deputyv1.ExecStart{Argv: []string{"x", strings.Repeat("y", maxArgvBytes)}}, "over the limit"},
		{"env not passed", &deputyv1.ExecStart{Argv: []string{"ls"}, Env: map[string]string{"LD_PRELOAD": "x"}}, "not in profile tester's env.pass (allowed: LANG)"},
		{"env passed", &deputyv1.ExecStart{Argv: []string{"ls"}, Env: map[string]string{"LANG": "C"}}, ""},
		{"timeout over limit", &deputyv1.ExecStart{Argv: []string{"ls"}, Timeout: durationpb.New(time.Hour)}, "exceeds profile tester's limit"},
		{"negative timeout", &deputyv1.ExecStart{Argv: []string{"ls"}, Timeout: durationpb.New(-time.Second)}, "must be positive"},
		{"cwd in proc", &deputyv1.ExecStart{Argv: []string{"ls"}, Cwd: "/proc/self"}, "under /proc"},
		{"cwd relative", &deputyv1.ExecStart{Argv: []string{"ls"}, Cwd: "tmp"}, "clean absolute"},
		{"cwd unclean", &deputyv1.ExecStart{Argv: []string{"ls"}, Cwd: "/srv/data/../../etc"}, "clean absolute"},
		{"cwd outside grants", &deputyv1.ExecStart{Argv: []string{"ls"}, Cwd: "/etc"}, "outside the profile's filesystem paths (profile tester)"},
		{"cwd in read grant", &deputyv1.ExecStart{Argv: []string{"ls"}, Cwd: "/srv/data/x"}, ""},
		{"cwd prefix is not a grant", &deputyv1.ExecStart{Argv: []string{"ls"}, Cwd: "/srv/database"}, "outside"},
		{"bad correlation id", &deputyv1.ExecStart{Argv: []string{"ls"}, CorrelationId: "a b"}, "correlation id"},
		{"long justification", &deputyv1.ExecStart{Argv: []string{"ls"}, Justification: strings.Repeat("x", maxJustification+1)}, "justification"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := newRequest(p, c.start)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want error containing %q, got %v (request %+v)", c.want, err, r)
			}
			if st := toStatus(err); status.Code(st) != codes.InvalidArgument {
				t.Fatalf("want INVALID_ARGUMENT, got %v", st)
			}
		})
	}
}

func TestNewRequestDefaults(t *testing.T) {
	r, err := newRequest(testProfile(), &deputyv1.ExecStart{Argv: []string{"ls"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Cwd != "/var/tmp/tester" || r.Timeout != time.Minute || !strings.HasPrefix(r.CorrelationID, "c-") {
		t.Fatalf("defaults: %+v", r)
	}
}

func TestBuildEnvDaemonVariablesWin(t *testing.T) {
	p := testProfile()
	p.Env.Set["DEPUTY_AGENT"] = "forged"
	r := &execRequest{Env: map[string]string{"LANG": "C"}, CorrelationID: "corr"}
	env := buildEnv(p, r, "exec1")
	for _, want := range []string{"DEPUTY_AGENT=tester", "DEPUTY_EXEC_ID=exec1", "DEPUTY_CORRELATION_ID=corr", "LANG=C", "PATH=/usr/bin", "HOME=/var/tmp/tester"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %v", want, env)
		}
	}
	if !slices.IsSorted(env) {
		t.Errorf("env not sorted: %v", env)
	}
}

func TestHiddenForOtherAgents(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"a.yaml": "name: tester\npeers: {uids: [1]}\nrunAs: {uid: 50001, gid: 50001}\nfilesystem: {read: [/srv/data], write: [/var/tmp/tester]}\n",
		"b.yaml": "name: other\npeers: {uids: [2]}\nrunAs: {uid: 50002, gid: 50002}\nfilesystem: {write: [/var/tmp/other, /srv/data/shared]}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err := profiles.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ls := &loadedSet{set: set}
	cfg := &Config{Socket: "/run/deputy/deputy.sock", State: "/var/lib/deputy"}
	pa, _ := set.ByName("tester")
	hidden := ls.hiddenFor(pa, cfg)
	for _, want := range []string{"/run/deputy", "/var/lib/deputy", "/dev/log", "/var/tmp/other"} {
		if !slices.Contains(hidden, want) {
			t.Errorf("hidden lacks %s: %v", want, hidden)
		}
	}
	// Another agent's directory stays hidden even inside a broader grant.
	if !slices.Contains(hidden, "/srv/data/shared") {
		t.Errorf("another agent's work directory inside a read grant is visible: %v", hidden)
	}
	// But hiding never covers the agent's own grant.
	pb, _ := set.ByName("other")
	cfg2 := &Config{Socket: "/run/deputy/deputy.sock", State: "/var/lib/deputy"}
	for _, h := range ls.hiddenFor(pb, cfg2) {
		if h == "/var/tmp/other" || h == "/srv/data/shared" {
			t.Errorf("hides agent other's own grant %s", h)
		}
	}
}

func TestToStatus(t *testing.T) {
	cases := []struct {
		err  error
		code codes.Code
	}{
		{&sandbox.InitError{Kind: sandbox.KindNotFound}, codes.NotFound},
		{&sandbox.InitError{Kind: sandbox.KindPermission}, codes.PermissionDenied},
		{&sandbox.InitError{Kind: sandbox.KindInvalid}, codes.InvalidArgument},
		{&sandbox.InitError{Kind: sandbox.KindSetup}, codes.FailedPrecondition},
		{&setupError{errors.New("cgroup")}, codes.FailedPrecondition},
		{invalidf("bad"), codes.InvalidArgument},
		{status.Error(codes.ResourceExhausted, "busy"), codes.ResourceExhausted},
		{errors.New("other"), codes.Internal},
	}
	for _, c := range cases {
		if got := status.Code(toStatus(c.err)); got != c.code {
			t.Errorf("%v: got %v, want %v", c.err, got, c.code)
		}
	}
}

func TestLoadConfigStrict(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := LoadConfig(write("socket: /run/x.sock\nsockets: 1\n"), Config{}); err == nil || !strings.Contains(err.Error(), "c.yaml:2") {
		t.Fatalf("unknown field: want file:line error, got %v", err)
	}
	if _, err := LoadConfig(write("protectedPaths: [var/log]\n"), Config{}); err == nil || !strings.Contains(err.Error(), "clean absolute") {
		t.Fatalf("relative protected path: got %v", err)
	}
	if _, err := LoadConfig(write("protectedPaths: [/]\n"), Config{}); err == nil {
		t.Fatal("protecting / must be refused")
	}
	c, err := LoadConfig(write("state: /srv/deputy\n"), Config{Socket: "/tmp/s.sock"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/tmp/s.sock" || c.State != "/srv/deputy" || !slices.Equal(c.ProtectedPaths, []string{"/var/log"}) || !c.syscallAudit() {
		t.Fatalf("defaults/overrides: %+v", c)
	}
	prot := c.Protected()
	for _, want := range []string{"/var/log", "/srv/deputy", c.File, DefaultProfiles} {
		if !slices.Contains(prot, want) {
			t.Errorf("Protected() lacks %s: %v", want, prot)
		}
	}
}

func TestFormatSockaddr(t *testing.T) {
	in4 := []byte{2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	if got := formatSockaddr(in4); got != "127.0.0.1:8080" {
		t.Errorf("inet: %q", got)
	}
	un := append([]byte{1, 0}, []byte("/run/x.sock\x00")...)
	if got := formatSockaddr(un); got != "unix:/run/x.sock" {
		t.Errorf("unix: %q", got)
	}
	abstract := append([]byte{1, 0, 0}, []byte("name\x00")...)
	if got := formatSockaddr(abstract); got != "unix:@name" {
		t.Errorf("abstract: %q", got)
	}
}
