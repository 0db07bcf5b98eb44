package profiles

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// stubUsers replaces lookupUser for the test: the real user database of the
// test host must not decide whether a test passes.
func stubUsers(t *testing.T, users map[string]uint32) {
	t.Helper()
	old := lookupUser
	lookupUser = func(name string) (uint32, error) {
		if uid, ok := users[name]; ok {
			return uid, nil
		}
		return 0, fmt.Errorf("user: unknown user %s", name)
	}
	t.Cleanup(func() { lookupUser = old })
}

var testUsers = map[string]uint32{"logbot": 1001, "buildbot": 1002, "rotbot": 1003, "alice": 2000}

const validProfile = `name: log-cleaner
description: rotates logs
peers:
  uids: [1001, 1500]
  users: [logbot, alice]
runAs:
  uid: 61001
  gid: 61001
filesystem:
  read: [/var/log/app]
  write: [/var/tmp/log-cleaner]
  exec: [/usr/bin, /usr/sbin]
  workdir: /var/tmp/log-cleaner
network: host
limits:
  timeout: 90s
  memory: 256Mi
  pids: 64
  cpu: 0.5
  output: 1Mi
  openFiles: 2048
  tmp: 8Mi
env:
  pass: [LANG]
  set: {PATH: /usr/bin:/bin}
seccomp:
  deny: [ptrace]
  allow:
    - syscall: io_uring_setup
      reason: compressor uses io_uring
`

func TestParseValid(t *testing.T) {
	stubUsers(t, testUsers)
	p, err := Parse("a.yaml", []byte(validProfile))
	if err != nil {
		t.Fatal(err)
	}
	want := &Profile{
		Name:        "log-cleaner",
		Description: "rotates logs",
		Peers:       Peers{UIDs: []uint32{1001, 1500}, Users: []string{"logbot", "alice"}},
		RunAs:       RunAs{UID: 61001, GID: 61001},
		Filesystem: Filesystem{
			Read:    []string{"/var/log/app"},
			Write:   []string{"/var/tmp/log-cleaner"},
			Exec:    []string{"/usr/bin", "/usr/sbin"},
			Workdir: "/var/tmp/log-cleaner",
		},
		Network: NetworkHost,
		Limits: Limits{
			Timeout: Duration(90 * time.Second), Memory: 256 << 20, PIDs: 64, CPU: 0.5,
			Output: 1 << 20, OpenFiles: 2048, Tmp: 8 << 20,
		},
		Env:     Env{Pass: []string{"LANG"}, Set: map[string]string{"PATH": "/usr/bin:/bin"}},
		Seccomp: Seccomp{Deny: []string{"ptrace"}, Allow: []SeccompOverride{{"io_uring_setup", "compressor uses io_uring"}}},
		// No commands block: nil, which means today's allow-all.
		Approval: Approval{Timeout: Duration(DefaultApprovalTimeout)},
		File:     "a.yaml",
		// The digest is of the raw bytes, not of a normalized form: it
		// identifies exactly the file an admin wrote.
		Digest: fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(validProfile))),
		// logbot resolves to 1001, already listed: deduplicated.
		PeerUIDs: []uint32{1001, 1500, 2000},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
}

func TestParseDefaults(t *testing.T) {
	stubUsers(t, testUsers)
	p, err := Parse("a.yaml", []byte("name: a\npeers: {uids: [5]}\nrunAs: {uid: 7, gid: 8}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{
		Timeout: Duration(DefaultTimeout), Memory: DefaultMemory, PIDs: DefaultPIDs,
		Output: DefaultOutput, OpenFiles: DefaultOpenFiles, Tmp: DefaultTmp,
	}
	if p.Limits != want {
		t.Errorf("limits %+v, want %+v", p.Limits, want)
	}
	if p.Network != NetworkNone {
		t.Errorf("network %q, want none", p.Network)
	}
	if !reflect.DeepEqual(p.PeerUIDs, []uint32{5}) {
		t.Errorf("peer uids %v", p.PeerUIDs)
	}
}

// base is a minimal valid profile; error cases append or replace lines so
// that the expected line numbers are easy to read off.
const base = "name: a\npeers: {uids: [5]}\nrunAs: {uid: 7, gid: 8}\n" // lines 1-3

func TestParseErrors(t *testing.T) {
	stubUsers(t, testUsers)
	tests := []struct {
		name, yaml string
		line       int
		msg        string
	}{
		// Decoding.
		{"empty", "", 1, "empty document"},
		{"comment only", "# nothing\n", 1, "empty document"},
		{"two documents", base + "---\nname: b\n", 4, "more than one YAML document"},
		{"not a mapping", "- a\n", 1, "want a mapping, got a list"},
		{"unknown top field", base + "foo: 1\n", 4, `unknown field "foo"`},
		{"unknown nested field", "name: a\npeers: {uids: [5]}\nrunAs:\n  uid: 7\n  gid: 8\n  foo: 1\n", 6, `unknown field "foo" in runAs`},
		{"unknown field in list item", base + "seccomp:\n  allow:\n    - syscall: x\n      reasn: y\n", 7, `unknown field "reasn" in seccomp.allow[0]`},
		{"duplicate key", base + "name: b\n", 4, `duplicate key "name" (first on line 1)`},
		{"duplicate env key", base + "env:\n  set:\n    A: x\n    A: y\n", 7, `duplicate key "A"`},
		{"wrong type uid", "name: a\npeers: {uids: [5]}\nrunAs:\n  uid: abc\n  gid: 8\n", 4, "runAs.uid: want a non-negative integer, got a string"},
		{"negative uid", "name: a\npeers: {uids: [5]}\nrunAs:\n  uid: -1\n  gid: 8\n", 4, "runAs.uid: -1 is out of range (0 to 4294967295)"},
		{"list for string", "name: [a]\n", 1, "name: want a string, got a list"},
		{"string for list", base + "filesystem:\n  read: /var\n", 5, "filesystem.read: want a list, got a string"},
		{"bad network", base + "network: bridge\n", 4, `network: "bridge" is not a network mode: want none or host`},
		{"bad duration", base + "limits:\n  timeout: 5 minutes\n", 5, `limits.timeout: "5 minutes" is not a duration`},
		{"bare duration", base + "limits:\n  timeout: 60\n", 5, "limits.timeout: 60 is not a duration"},
		{"zero duration", base + "limits:\n  timeout: 0s\n", 5, "must be greater than zero"},
		{"decimal size", base + "limits:\n  memory: 64M\n", 5, `limits.memory: "64M" is not a size: want a number of bytes or a number with Ki, Mi, Gi or Ti`},
		{"fractional size", base + "limits:\n  memory: 1.5Gi\n", 5, `"1.5Gi" is not a size`},

		// Validation.
		{"name missing", "peers: {uids: [5]}\nrunAs: {uid: 7, gid: 8}\n", 1, "name is required"},
		{"name bad", "peers: {uids: [5]}\nrunAs: {uid: 7, gid: 8}\nname: Log_Cleaner\n", 3, `name "Log_Cleaner": want a lowercase letter`},
		{"name too long", "name: a" + strings.Repeat("b", 63) + "\npeers: {uids: [5]}\nrunAs: {uid: 7, gid: 8}\n", 1, "want a lowercase letter"},
		{"no peers", "name: a\nrunAs: {uid: 7, gid: 8}\n", 1, "peers: want at least one uid or user"},
		{"empty peers", "name: a\nrunAs: {uid: 7, gid: 8}\npeers: {uids: []}\n", 3, "peers: want at least one uid or user"},
		{"unknown user", "name: a\nrunAs: {uid: 7, gid: 8}\npeers:\n  users:\n    - logbot\n    - nobody-here\n", 6, `peers.users: unknown user "nobody-here"`},
		{"runAs missing", "name: a\npeers: {uids: [5]}\n", 1, "runAs.uid is required and must not be 0"},
		{"runAs uid 0", "name: a\npeers: {uids: [5]}\nrunAs:\n  uid: 0\n  gid: 8\n", 4, "runAs.uid is required and must not be 0 (root)"},
		{"runAs gid missing", "name: a\npeers: {uids: [5]}\nrunAs:\n  uid: 7\n", 3, "runAs.gid is required"},
		{"runAs is own peer", "name: a\npeers: {uids: [5]}\nrunAs:\n  uid: 5\n  gid: 8\n", 4, "runAs.uid 5 is also a peer uid of this agent (peers.uids[0])"},
		{"relative path", base + "filesystem:\n  read:\n    - /ok\n    - var/log\n", 7, `filesystem.read[1]: "var/log" is not absolute`},
		{"dotdot path", base + "filesystem:\n  write: [/var/../etc]\n", 5, `filesystem.write[0]: "/var/../etc" contains ".."`},
		{"trailing slash", base + "filesystem:\n  exec: [/usr/bin/]\n", 5, `filesystem.exec[0]: "/usr/bin/" is not clean: write "/usr/bin"`},
		{"double slash", base + "filesystem:\n  exec: [/usr//bin]\n", 5, `is not clean`},
		{"empty path", base + "filesystem:\n  read: [\"\"]\n", 5, "filesystem.read[0]: empty path"},
		{"relative workdir", base + "filesystem:\n  workdir: tmp\n", 5, `filesystem.workdir: "tmp" is not absolute`},
		{"memory low", base + "limits:\n  memory: 1Mi\n", 5, "limits.memory: 1Mi is below the minimum of 4Mi"},
		{"memory explicit 0", base + "limits:\n  memory: 0\n", 5, "limits.memory: 0 is not allowed; leave it out for the default of 512Mi"},
		{"pids negative", base + "limits:\n  pids: -3\n", 5, "limits.pids: -3: want at least 1"},
		{"pids explicit 0", base + "limits:\n  pids: 0\n", 5, "limits.pids: 0 is not allowed"},
		{"cpu negative", base + "limits:\n  cpu: -1\n", 5, "limits.cpu: -1: want 0 (unlimited) to 1024 cores"},
		{"cpu too high", base + "limits:\n  cpu: 2000\n", 5, "limits.cpu: 2000: want 0 (unlimited) to 1024 cores"},
		{"cpu nan", base + "limits:\n  cpu: .nan\n", 5, "limits.cpu: NaN"},
		{"open files low", base + "limits:\n  openFiles: 8\n", 5, "limits.openFiles: 8: want at least 16"},
		{"tmp low", base + "limits:\n  tmp: 64Ki\n", 5, "limits.tmp: 64Ki is below the minimum of 1Mi"},
		{"env pass bad name", base + "env:\n  pass: [1A]\n", 5, `env.pass: "1A" is not a valid variable name`},
		{"env pass reserved", base + "env:\n  pass: [LANG, DEPUTY_AGENT]\n", 5, "env.pass: DEPUTY_AGENT is set by the daemon"},
		{"env pass loader", base + "env:\n  pass:\n    - LD_PRELOAD\n", 6, "env.pass: LD_PRELOAD is read by the dynamic loader"},
		{"env pass loader other", base + "env:\n  pass: [LD_AUDIT]\n", 5, "env.pass: LD_AUDIT is read by the dynamic loader"},
		{"env set bad name", base + "env:\n  set:\n    A-B: x\n", 6, `env.set: "A-B" is not a valid variable name`},
		{"env set reserved", base + "env:\n  set:\n    DEPUTY_EXEC_ID: x\n", 6, "env.set: DEPUTY_EXEC_ID is set by the daemon"},
		{"seccomp deny bad", base + "seccomp:\n  deny: [Ptrace]\n", 5, `seccomp.deny: "Ptrace" is not a syscall name`},
		{"seccomp allow bad", base + "seccomp:\n  allow:\n    - syscall: \"io uring\"\n      reason: x\n", 6, `seccomp.allow: "io uring" is not a syscall name`},
		{"seccomp allow no reason", base + "seccomp:\n  allow:\n    - syscall: io_uring_setup\n", 6, "seccomp.allow: io_uring_setup needs a reason"},
		{"seccomp allow and deny", base + "seccomp:\n  deny: [bpf]\n  allow:\n    - {syscall: bpf, reason: x}\n", 7, "seccomp.allow: bpf is also in seccomp.deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("/etc/deputy/profiles/a.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("no error")
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %T, want ErrorList", err)
			}
			prefix := fmt.Sprintf("/etc/deputy/profiles/a.yaml:%d: ", tt.line)
			for _, e := range list {
				if s := e.Error(); strings.HasPrefix(s, prefix) && strings.Contains(s, tt.msg) {
					return
				}
			}
			t.Errorf("got\n%v\nwant an error starting %q containing %q", err, prefix, tt.msg)
		})
	}
}

// TestParseAllErrors checks that validation reports every problem, not the
// first.
func TestParseAllErrors(t *testing.T) {
	stubUsers(t, testUsers)
	_, err := Parse("a.yaml", []byte("name: A\nrunAs: {uid: 0, gid: 0}\nnetwork: none\n"))
	want := "a.yaml:1: name \"A\": want a lowercase letter then up to 62 lowercase letters, digits or '-'\n" +
		"a.yaml:1: peers: want at least one uid or user\n" +
		"a.yaml:2: runAs.uid is required and must not be 0 (root)\n" +
		"a.yaml:2: runAs.gid is required and must not be 0 (root)"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestDecodeStrict(t *testing.T) {
	type config struct {
		Socket string `yaml:"socket"`
		Sub    struct {
			N int `yaml:"n"`
		} `yaml:"sub"`
	}
	var c config
	if err := DecodeStrict("d.yaml", []byte("socket: /run/x\nsub:\n  n: 3\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Socket != "/run/x" || c.Sub.N != 3 {
		t.Errorf("decoded %+v", c)
	}
	err := DecodeStrict("d.yaml", []byte("socket: /run/x\nsub:\n  m: 3\n"), &c)
	var e *Error
	if !errors.As(err, &e) || *e != (Error{File: "d.yaml", Line: 3, Msg: `unknown field "m" in sub`}) {
		t.Errorf("got %#v", err)
	}
	if err.Error() != `d.yaml:3: unknown field "m" in sub` {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]Bytes{"0": 0, "1": 1, "4096": 4096, "64Ki": 64 << 10, "256Mi": 256 << 20, "1Gi": 1 << 30, "2Ti": 2 << 40}
	for s, want := range good {
		if got, err := ParseBytes(s); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "64K", "64M", "1G", "1GB", "1gi", "-1", "1.5Mi", " 1Mi", "Mi", "0x10", "9999999999999Ti", "99999999999999999999"} {
		if got, err := ParseBytes(s); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", s, got)
		}
	}
	for b, want := range map[Bytes]string{0: "0", 1000: "1000", 1024: "1Ki", 3 << 20: "3Mi", 1<<30 + 1: "1073741825"} {
		if got := b.String(); got != want {
			t.Errorf("Bytes(%d).String() = %q, want %q", int64(b), got, want)
		}
	}
}

func TestDurationDecode(t *testing.T) {
	for s, want := range map[string]time.Duration{"60s": time.Minute, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute, `"250ms"`: 250 * time.Millisecond} {
		var v struct {
			D Duration `yaml:"d"`
		}
		if err := DecodeStrict("x", []byte("d: "+s), &v); err != nil || v.D.Std() != want {
			t.Errorf("%s: got %v, %v; want %v", s, v.D, err, want)
		}
	}
	for _, s := range []string{"60", "-5s", "0s", "5 m", "1d", "true"} {
		var v struct {
			D Duration `yaml:"d"`
		}
		if err := DecodeStrict("x", []byte("d: "+s), &v); err == nil || !strings.HasPrefix(err.Error(), "x:1: d: ") {
			t.Errorf("%s: got %v, want an error at x:1 naming d", s, err)
		}
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func profileYAML(name string, peer, runAs uint32) string {
	return fmt.Sprintf("name: %s\npeers:\n  uids: [%d]\nrunAs:\n  uid: %d\n  gid: %d\n", name, peer, runAs, runAs)
}

func TestLoadDir(t *testing.T) {
	stubUsers(t, testUsers)
	dir := writeFiles(t, map[string]string{
		"a.yaml":            profileYAML("alpha", 1001, 61001),
		"b.yml":             profileYAML("beta", 1002, 61002),
		"README.md":         "not a profile",
		".a.yaml.swp":       "not a profile",
		".hidden.yaml":      "not: a profile",
		"sub/c.yaml":        "not: a profile",
		"dir.yaml/x.yaml":   "not: a profile",
		"c.yaml.dpkg-dist":  "not: a profile",
		"example.yaml.orig": "x",
	})
	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("Len() = %d, want 2", s.Len())
	}
	if all := s.All(); all[0].Name != "alpha" || all[1].Name != "beta" {
		t.Errorf("All() = %s, %s", all[0].Name, all[1].Name)
	}
	if p, ok := s.ForUID(1002); !ok || p.Name != "beta" {
		t.Errorf("ForUID(1002) = %v, %v", p, ok)
	}
	if _, ok := s.ForUID(61001); ok {
		t.Error("ForUID matched a runAs uid")
	}
	if p, ok := s.ByName("alpha"); !ok || p.File != filepath.Join(dir, "a.yaml") {
		t.Errorf("ByName(alpha) = %v, %v", p, ok)
	}
	if _, ok := s.ByName("gamma"); ok {
		t.Error("ByName(gamma) found")
	}
	// All returns a copy: a caller cannot reorder the set.
	s.All()[0] = nil
	if s.All()[0] == nil {
		t.Error("All() exposes the set's slice")
	}
}

func TestLoadDirEmptyAndMissing(t *testing.T) {
	s, err := LoadDir(t.TempDir())
	if err != nil || s.Len() != 0 {
		t.Errorf("empty dir: %v, %v", s, err)
	}
	if _, err := LoadDir(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "read profile directory") {
		t.Errorf("missing dir: %v", err)
	}
}

func TestLoadDirCrossChecks(t *testing.T) {
	stubUsers(t, testUsers)
	tests := []struct {
		name  string
		files map[string]string
		want  []string // the exact error lines, with dir replaced by D
	}{
		{
			"duplicate name",
			map[string]string{"a.yaml": profileYAML("alpha", 1001, 61001), "b.yaml": profileYAML("alpha", 1002, 61002)},
			[]string{`D/b.yaml:1: duplicate name "alpha": already used by D/a.yaml`},
		},
		{
			"shared runAs uid",
			map[string]string{"a.yaml": profileYAML("alpha", 1001, 61001), "b.yaml": profileYAML("beta", 1002, 61001)},
			[]string{`D/b.yaml:5: runAs.uid 61001 is also the runAs uid of agent "alpha" (D/a.yaml)`},
		},
		{
			"duplicate peer",
			map[string]string{"a.yaml": profileYAML("alpha", 1001, 61001), "b.yaml": "name: beta\npeers:\n  uids: [7]\n  users: [logbot]\nrunAs: {uid: 61002, gid: 61002}\n"},
			[]string{`D/b.yaml:4: peer uid 1001 is also a peer of agent "alpha" (D/a.yaml): a caller must map to exactly one agent`},
		},
		{
			"runAs is another's peer",
			map[string]string{"a.yaml": profileYAML("alpha", 1001, 61001), "b.yaml": profileYAML("beta", 1002, 1001)},
			[]string{`D/b.yaml:5: runAs.uid 1001 is a peer uid of agent "alpha" (D/a.yaml): its commands could act as that agent`},
		},
		{
			"peer is another's runAs",
			map[string]string{"a.yaml": profileYAML("alpha", 1001, 61001), "b.yaml": profileYAML("beta", 61001, 61002)},
			[]string{`D/b.yaml:3: peer uid 61001 is the runAs uid of agent "alpha" (D/a.yaml): that agent's commands could act as this one`},
		},
		{
			"errors from every file",
			map[string]string{
				"a.yaml": "name: alpha\nbogus: 1\n",
				"b.yaml": profileYAML("beta", 1002, 61002) + "limits:\n  memory: 1Ki\nnetwork: bridge\n",
				"c.yaml": profileYAML("gamma", 1003, 61003) + "limits:\n  pids: -1\n  tmp: 1Ki\n",
			},
			[]string{
				`D/a.yaml:2: unknown field "bogus"`,
				`D/b.yaml:9: network: "bridge" is not a network mode: want none or host`,
				`D/c.yaml:8: limits.pids: -1: want at least 1`,
				`D/c.yaml:9: limits.tmp: 1Ki is below the minimum of 1Mi`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			s, err := LoadDir(dir)
			if err == nil {
				t.Fatalf("no error; set of %d", s.Len())
			}
			got := strings.ReplaceAll(err.Error(), dir, "D")
			if want := strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestLoadFiles(t *testing.T) {
	stubUsers(t, testUsers)
	dir := writeFiles(t, map[string]string{"a.yaml": profileYAML("alpha", 1001, 61001), "b.yaml": profileYAML("beta", 1001, 61002)})
	_, err := LoadFiles([]string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")})
	if err == nil || !strings.Contains(err.Error(), "b.yaml:3: peer uid 1001 is also a peer of agent \"alpha\"") {
		t.Errorf("got %v", err)
	}
	if _, err := LoadFiles([]string{filepath.Join(dir, "missing.yaml")}); err == nil || !strings.Contains(err.Error(), "missing.yaml: read profile:") {
		t.Errorf("missing file: %v", err)
	}
	s, err := LoadFiles([]string{filepath.Join(dir, "a.yaml")})
	if err != nil || s.Len() != 1 {
		t.Errorf("one file: %v, %v", s, err)
	}
}

// TestExamples loads the shipped examples with the demo's users stubbed in,
// so that a schema change that breaks them fails here, not in the demo.
func TestExamples(t *testing.T) {
	stubUsers(t, testUsers)
	s, err := LoadDir("examples")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"log-cleaner", "builder", "log-rotator"} {
		if _, ok := s.ByName(name); !ok {
			t.Errorf("example %s missing", name)
		}
	}
	if p, ok := s.ForUID(testUsers["logbot"]); !ok || p.Name != "log-cleaner" || p.RunAs != (RunAs{61001, 61001}) {
		t.Errorf("logbot -> %+v", p)
	}
	if p, ok := s.ForUID(testUsers["buildbot"]); !ok || p.Name != "builder" || p.Network != NetworkNone {
		t.Errorf("buildbot -> %+v", p)
	}
	// The demo runs arbitrary commands as log-cleaner: it must keep
	// today's allow-all behaviour.
	if p, _ := s.ByName("log-cleaner"); p == nil || p.Commands != nil {
		t.Errorf("log-cleaner has a commands block: the demo's commands would be denied")
	}
	p, ok := s.ForUID(testUsers["rotbot"])
	if !ok || p.Name != "log-rotator" || p.Commands == nil || p.Commands.Default != ActionDeny || len(p.Commands.Rules) != 5 {
		t.Fatalf("rotbot -> %+v", p)
	}
	if !p.Require.Justification || p.Concurrency != 2 || p.RateLimit == nil || p.Approval.Timeout.Std() != 10*time.Minute {
		t.Errorf("log-rotator: %+v", p)
	}
	if r := p.Commands.Rules[4]; r.ID != "restart" || r.Approval != ApprovalRequired || r.Schedule == nil || r.Schedule.Location().String() != "Europe/Paris" {
		t.Errorf("restart rule: %+v", r)
	}
	// The shipped examples lint clean: a warning there would teach admins
	// to ignore warnings.
	for _, w := range Lint(s, nil) {
		if strings.Contains(w.File, "log-rotator") {
			t.Errorf("lint: %s", w)
		}
	}
}

func TestLint(t *testing.T) {
	stubUsers(t, testUsers)
	dir := writeFiles(t, map[string]string{
		"a.yaml": profileYAML("alpha", 1001, 61001) + `filesystem:
  read: [/etc/deputy/profiles, /var/logs]
  write: [/var, /srv/data]
  exec: [/usr/bin, /srv]
network: host
seccomp:
  allow:
    - syscall: io_uring_setup
      reason: fast io
`,
		"b.yaml": profileYAML("beta", 1002, 61002) + "filesystem:\n  write: [/var/tmp/b]\n",
	})
	s, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ws := Lint(s, []string{"/etc/deputy", "/var/log/"})
	var got []string
	for _, w := range ws {
		got = append(got, strings.ReplaceAll(w.String(), dir, "D"))
	}
	want := []string{
		"D/a.yaml:8: warning: read grant /etc/deputy/profiles overlaps protected path /etc/deputy: the daemon's protection of that path wins over this grant",
		"D/a.yaml:9: warning: write grant /var overlaps protected path /var/log: the protected path stays read-only",
		"D/a.yaml:9: warning: write grant /srv/data overlaps exec grant /srv: the agent can run programs it writes",
		"D/a.yaml:11: warning: network: host shares the host's network namespace: the agent can reach every local service",
		"D/a.yaml:14: warning: seccomp override allows io_uring_setup (reason: fast io)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestOverlaps(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"/var", "/var/log", true},
		{"/var/log", "/var", true},
		{"/var/log", "/var/log", true},
		{"/", "/etc", true},
		{"/var/logs", "/var/log", false},
		{"/usr/bin", "/usr/sbin", false},
	} {
		if got := overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("overlaps(%s, %s) = %v", tt.a, tt.b, got)
		}
	}
}
