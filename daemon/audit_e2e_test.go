package daemon_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/daemontest"
	"github.com/deputyhq/deputy/sandbox/sandboxtest"
)

// Uids of the audit tests: two agents, an auditor and a stranger.
const (
	auditPeerA, auditRunA = 47301, 47311
	auditPeerB, auditRunB = 47302, 47312
	auditorUID            = 47399
	strangerUID           = 47398
)

func auditDaemon(t *testing.T) *daemontest.Daemon {
	return daemontest.Start(t, daemontest.Options{
		Profiles: map[string]string{
			"a.yaml": auditProfile("audit-a", auditPeerA, auditRunA),
			"b.yaml": auditProfile("audit-b", auditPeerB, auditRunB),
		},
		Config: fmt.Sprintf("auditors:\n  uids: [%d]\n", auditorUID),
	})
}

func auditProfile(name string, peer, run int) string {
	return fmt.Sprintf("name: %s\npeers:\n  uids: [%d]\nrunAs:\n  uid: %d\n  gid: %d\nfilesystem:\n  exec: [/usr/bin, /bin]\n",
		name, peer, run, run)
}

// parseRecords decodes `deputy audit ... --json` output.
func parseRecords(t *testing.T, out string) []*audit.Record {
	t.Helper()
	var recs []*audit.Record
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		r := new(audit.Record)
		if err := r.UnmarshalJSON([]byte(line)); err != nil {
			t.Fatalf("not a record: %v\n%s", err, line)
		}
		recs = append(recs, r)
	}
	return recs
}

// auditLogFile returns the path and content of the first (only) log file.
func auditLogFile(t *testing.T, d *daemontest.Daemon) (string, []byte) {
	t.Helper()
	path := filepath.Join(d.State, "audit", "audit-000001.log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestAuditQueryVerifyReplay(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := auditDaemon(t)
	if r := d.Exec(t, auditPeerA, "", "sh", "-c", "echo hello-audit; echo to-stderr >&2"); r.Code != 0 {
		t.Fatalf("exec: %s", r)
	}
	if r := d.Exec(t, auditPeerB, "", "true"); r.Code != 0 {
		t.Fatalf("exec: %s", r)
	}
	if r := d.Exec(t, auditPeerA, "", "sh", "-c", "exit 3"); r.Code != 3 {
		t.Fatalf("exec: %s", r)
	}

	// (a) Root, through the daemon: every record, exactly as stored.
	r := d.Run(t, 0, "", "audit", "query", "--json")
	if r.Code != 0 {
		t.Fatalf("root query: %s\n%s", r, d.Log())
	}
	_, stored := auditLogFile(t, d)
	if r.Stdout == "" || !bytes.HasPrefix(stored, []byte(r.Stdout)) {
		t.Fatalf("query --json is not the stored log:\n got %s\nfile %s", r.Stdout, stored)
	}
	recs := parseRecords(t, r.Stdout)
	actions := map[string]int{}
	var execID string
	for _, rec := range recs {
		actions[rec.Action]++
		if rec.Action == audit.ActionExecOutput && rec.PrincipalID == "audit-a" {
			var o audit.ExecOutputDetails
			if err := rec.DecodeDetails(&o); err == nil && string(o.Data) == "hello-audit\n" {
				execID = rec.ExecID
			}
		}
	}
	for _, a := range []string{audit.ActionDaemonStart, audit.ActionExecRequest, audit.ActionExecStart,
		audit.ActionExecOutput, audit.ActionExecExit} {
		if actions[a] == 0 {
			t.Errorf("no %s record; got %v", a, actions)
		}
	}
	if actions[audit.ActionExecRequest] < 3 || actions[audit.ActionExecExit] < 3 {
		t.Errorf("want a request and an exit for each of 3 execs, got %v", actions)
	}
	if execID == "" {
		t.Fatalf("no exec.output record holds the first exec's output:\n%s", r.Stdout)
	}

	// Filters go through the daemon; the readable form names the action.
	r = d.Run(t, 0, "", "audit", "query", "--agent", "audit-a", "--action", audit.ActionExecExit, "--json")
	if got := parseRecords(t, r.Stdout); r.Code != 0 || len(got) != 2 || got[0].PrincipalID != "audit-a" || got[1].Action != audit.ActionExecExit {
		t.Errorf("query --agent audit-a --action exec.exit: want 2 exits of audit-a, got %s", r)
	}
	r = d.Run(t, 0, "", "audit", "query", "--exec", execID)
	if r.Code != 0 || !strings.Contains(r.Stdout, execID[:8]) || !strings.Contains(r.Stdout, audit.ActionExecExit) ||
		!strings.Contains(r.Stdout, "exit 0") {
		t.Errorf("readable query --exec: %s", r)
	}
	if r = d.Run(t, 0, "", "audit", "query", "--since", "1h", "--until", "2000-01-01T00:00:00Z"); r.Code != 0 || r.Stdout != "" {
		t.Errorf("empty time window: want no records, got %s", r)
	}

	// (b) A configured auditor may query and verify.
	r = d.Run(t, auditorUID, "", "audit", "query", "--json", "--action", audit.ActionDaemonStart)
	if got := parseRecords(t, r.Stdout); r.Code != 0 || len(got) != 1 {
		t.Errorf("auditor query: want the daemon.start record, got %s", r)
	}
	if r = d.Run(t, auditorUID, "", "audit", "verify"); r.Code != 0 || !strings.Contains(r.Stdout, "intact") {
		t.Errorf("auditor verify: %s", r)
	}

	// (c) Agents never read the log, nor does anyone else not listed.
	for _, uid := range []uint32{auditPeerA, auditPeerB, strangerUID} {
		for _, args := range [][]string{{"audit", "query"}, {"audit", "verify"}, {"audit", "replay", execID}, {"audit", "tail"}} {
			r = d.Run(t, uid, "", args...)
			if want := fmt.Sprintf("uid %d is not an auditor", uid); r.Code != 126 || !strings.Contains(r.Stderr, want) || r.Stdout != "" {
				t.Errorf("uid %d: %v: want exit 126 and %q, got %s", uid, args, want, r)
			}
		}
	}
	if !strings.Contains(d.Log(), "audit access denied") {
		t.Errorf("refusals not logged:\n%s", d.Log())
	}

	// (d) Nor can an agent (or an auditor) read the root-only files.
	for _, uid := range []uint32{auditPeerA, auditorUID} {
		r = d.Run(t, uid, "", "audit", "query", "--dir", d.State)
		if r.Code != 126 || !strings.Contains(r.Stderr, "permission denied") || r.Stdout != "" {
			t.Errorf("uid %d reading the files: want 126 and permission denied, got %s", uid, r)
		}
	}

	// (f) Replay shows the header and plays the output back, also from a
	// prefix of the id and from the files.
	for _, args := range [][]string{
		{"audit", "replay", "--no-timing", execID},
		{"audit", "replay", "--no-timing", execID[:6]},
		{"audit", "replay", "--no-timing", "--all", "--dir", d.State, execID},
	} {
		r = d.Run(t, 0, "", args...)
		for _, want := range []string{"== exec ==", execID, "audit-a", "hello-audit", "to-stderr", "exit code 0"} {
			if r.Code != 0 || !strings.Contains(r.Stdout, want) {
				t.Errorf("%v: want %q, got %s", args, want, r)
			}
		}
	}
	if r = d.Run(t, 0, "", "audit", "replay", "--no-timing", "ffffffffffffffff"); r.Code != 125 || !strings.Contains(r.Stderr, "no audit records") {
		t.Errorf("replay of an unknown exec: %s", r)
	}

	// tail, through the daemon and from the files.
	for _, args := range [][]string{{"audit", "tail", "-n", "3", "--json"}, {"audit", "tail", "-n", "3", "--json", "--dir", d.State}} {
		r = d.Run(t, 0, "", args...)
		if got := parseRecords(t, r.Stdout); r.Code != 0 || len(got) != 3 || got[2].Seq != recs[len(recs)-1].Seq {
			t.Errorf("%v: want the last 3 records, got %s", args, r)
		}
	}

	// (e) The fresh chain verifies, through the daemon and from the files.
	for _, args := range [][]string{{"audit", "verify"}, {"audit", "verify", "--dir", d.State}} {
		if r = d.Run(t, 0, "", args...); r.Code != 0 || !strings.Contains(r.Stdout, "intact") {
			t.Fatalf("%v on a fresh log: %s", args, r)
		}
	}

	d.Stop(t)
	r = d.Run(t, 0, "", "audit", "query")
	if r.Code != 125 || !strings.Contains(r.Stderr, "--dir /var/lib/deputy") {
		t.Errorf("daemon gone: want 125 and a hint to use --dir, got %s", r)
	}

	// Flip one byte inside a middle record: verify must name that record.
	path, b := auditLogFile(t, d)
	lines := bytes.SplitAfter(b, []byte("\n"))
	mid := len(lines) / 2
	victim := parseRecords(t, string(lines[mid]))[0]
	at := bytes.Index(lines[mid], []byte(`"timestamp":"2`))
	if at < 0 {
		t.Fatalf("no timestamp in %s", lines[mid])
	}
	lines[mid][at+len(`"timestamp":"`)] = '3'
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	r = d.Run(t, 0, "", "audit", "verify", "--dir", d.State)
	want := fmt.Sprintf("seq %d: %s", victim.Seq, audit.ProblemModified)
	if r.Code != 1 || !strings.Contains(r.Stdout, want) || !strings.Contains(r.Stdout, "BROKEN") {
		t.Fatalf("verify after a flipped byte: want exit 1 naming %q, got %s", want, r)
	}
}
