package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/identity"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

func TestAuditAuthorization(t *testing.T) {
	auditors := Principals{UIDs: []uint32{1500}, Groups: []string{"audit", "sec"}}
	// member stands in for the group database: gid 900 is "audit", and uid
	// 1600 has "sec" as a supplementary group.
	member := func(uid, gid uint32, group string) bool {
		return (group == "audit" && gid == 900) || (group == "sec" && uid == 1600)
	}
	cases := []struct {
		name    string
		uid     uint32
		gid     uint32
		p       Principals
		isAgent bool
		ok      bool
	}{
		{"root", 0, 0, Principals{}, false, true},
		{"listed uid", 1500, 1500, auditors, false, true},
		{"primary group", 1700, 900, auditors, false, true},
		{"supplementary group", 1600, 1600, auditors, false, true},
		{"stranger", 1800, 1800, auditors, false, false},
		{"no auditors configured", 1500, 900, Principals{}, false, false},
		{"agent listed as auditor", 1500, 1500, auditors, true, false},
		{"agent in auditor group", 1700, 900, auditors, true, false},
		{"agent with uid 0", 0, 0, auditors, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := mayAudit(c.uid, c.gid, c.p, c.isAgent, member)
			if c.ok {
				if err != nil {
					t.Fatalf("want allowed, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want refused, got allowed")
			}
			want := fmt.Sprintf("uid %d is not an auditor", c.uid)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("refusal %q does not say %q", err, want)
			}
			if c.isAgent && !strings.Contains(err.Error(), "agent") {
				t.Fatalf("refusal of an agent does not say why: %q", err)
			}
		})
	}
}

func TestAuditAuthorizationSkipsGroupsWhenNotNeeded(t *testing.T) {
	called := false
	member := func(uint32, uint32, string) bool { called = true; return true }
	if err := mayAudit(0, 0, Principals{Groups: []string{"g"}}, false, member); err != nil {
		t.Fatal(err)
	}
	// An agent is refused before any lookup: a slow or failing group
	// database cannot change that answer.
	if err := mayAudit(1, 1, Principals{Groups: []string{"g"}}, true, member); err == nil {
		t.Fatal("agent allowed")
	}
	if called {
		t.Fatal("group lookup made when the answer did not depend on it")
	}
}

func TestAuditFilterFromQuery(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	until := since.Add(time.Hour)
	q := &deputyv1.AuditQuery{
		Agent: "a", ExecId: "e", CorrelationId: "c", Action: "exec.start", Syscall: "openat", Result: "denied",
		Since: timestamppb.New(since), Until: timestamppb.New(until), FromSeq: 7, Follow: true,
	}
	f, err := auditFilter(q)
	if err != nil {
		t.Fatal(err)
	}
	want := audit.Filter{Agent: "a", ExecID: "e", CorrelationID: "c", Action: "exec.start", Syscall: "openat",
		Result: "denied", Since: since, Until: until, Seq: 7}
	if !f.Since.Equal(want.Since) || !f.Until.Equal(want.Until) {
		t.Fatalf("times: got %v..%v, want %v..%v", f.Since, f.Until, want.Since, want.Until)
	}
	f.Since, f.Until, want.Since, want.Until = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if f != want {
		t.Fatalf("got %+v, want %+v", f, want)
	}

	if f, err := auditFilter(&deputyv1.AuditQuery{}); err != nil || f != (audit.Filter{}) {
		t.Fatalf("empty query: got %+v, %v; want the zero filter", f, err)
	}
	if _, err := auditFilter(&deputyv1.AuditQuery{Since: &timestamppb.Timestamp{Nanos: -1}}); err == nil {
		t.Fatal("invalid timestamp accepted")
	}
}

// fakeQueryStream is the server side of a QueryAudit stream.
type fakeQueryStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent [][]byte
	// onSend, if set, runs after each Send.
	onSend func()
}

func (f *fakeQueryStream) Context() context.Context { return f.ctx }

func (f *fakeQueryStream) Send(r *deputyv1.AuditRecord) error {
	f.sent = append(f.sent, r.GetJson())
	if f.onSend != nil {
		f.onSend()
	}
	return nil
}

func peerContext(ctx context.Context, uid uint32) context.Context {
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: identity.AuthInfo{Peer: identity.Peer{UID: uid, GID: uid, PID: 1, PidFD: -1}}})
}

// auditServer is a Server with just what the audit RPCs use: a config, a
// profile set with one agent (peer uid 4242), and a log holding recs.
func auditServer(t *testing.T, recs ...*audit.Record) *Server {
	t.Helper()
	dir := t.TempDir()
	profDir := filepath.Join(dir, "profiles")
	if err := os.Mkdir(profDir, 0o755); err != nil {
		t.Fatal(err)
	}
	prof := "name: agent-a\npeers:\n  uids: [4242]\nrunAs:\n  uid: 4343\n  gid: 4343\nfilesystem:\n  exec: [/usr/bin, /bin]\n"
	if err := os.WriteFile(filepath.Join(profDir, "a.yaml"), []byte(prof), 0o644); err != nil {
		t.Fatal(err)
	}
	ls, err := LoadProfiles(profDir)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: &Config{State: filepath.Join(dir, "state"), Auditors: Principals{UIDs: []uint32{4242, 5000}}},
		log: slog.New(slog.DiscardHandler)}
	s.profiles.Store(ls)
	l, err := audit.Open(AuditDir(s.cfg), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch(recs); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return s
}

// storedLines returns the lines of the first log file.
func storedLines(t *testing.T, s *Server) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(AuditDir(s.cfg), "audit-000001.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestQueryAuditStreamsStoredLines(t *testing.T) {
	s := auditServer(t,
		&audit.Record{PrincipalType: audit.PrincipalDaemon, PrincipalID: "deputyd", Action: audit.ActionDaemonStart,
			Details: map[string]any{"version": "x", "html": "<a&b>"}},
		&audit.Record{PrincipalType: audit.PrincipalAgent, PrincipalID: "agent-a", ExecID: "e1", Action: audit.ActionExecStart},
		&audit.Record{PrincipalType: audit.PrincipalAgent, PrincipalID: "agent-a", ExecID: "e1", Action: audit.ActionSyscall,
			Syscall: "openat", Resource: "/tmp/caf\u00e9\u2028\x1b[2J", Args: []string{"O_RDONLY"}, Result: audit.ResultDenied, Errno: "EACCES"},
		&audit.Record{PrincipalType: audit.PrincipalAgent, PrincipalID: "agent-a", ExecID: "e2", Action: audit.ActionExecStart},
	)
	lines := storedLines(t, s)

	st := &fakeQueryStream{ctx: peerContext(context.Background(), 0)}
	if err := s.QueryAudit(&deputyv1.AuditQuery{}, st); err != nil {
		t.Fatal(err)
	}
	if len(st.sent) != len(lines) {
		t.Fatalf("got %d records, want %d", len(st.sent), len(lines))
	}
	for i := range lines {
		if string(st.sent[i]) != lines[i] {
			t.Errorf("record %d differs from the stored line:\n got %s\nwant %s", i+1, st.sent[i], lines[i])
		}
	}

	st = &fakeQueryStream{ctx: peerContext(context.Background(), 5000)}
	if err := s.QueryAudit(&deputyv1.AuditQuery{ExecId: "e1"}, st); err != nil {
		t.Fatal(err)
	}
	if len(st.sent) != 2 || string(st.sent[0]) != lines[1] || string(st.sent[1]) != lines[2] {
		t.Fatalf("exec e1: got %q", st.sent)
	}
}

func TestAuditRPCsRefuseAgentsAndStrangers(t *testing.T) {
	s := auditServer(t, &audit.Record{Action: audit.ActionDaemonStart})
	for _, uid := range []uint32{4242, 4343, 1234} {
		ctx := peerContext(context.Background(), uid)
		err := s.QueryAudit(&deputyv1.AuditQuery{}, &fakeQueryStream{ctx: ctx})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), fmt.Sprintf("uid %d is not an auditor", uid)) {
			t.Errorf("query as uid %d: want PERMISSION_DENIED naming the uid, got %v", uid, err)
		}
		if _, err := s.VerifyAudit(ctx, &deputyv1.VerifyAuditRequest{}); status.Code(err) != codes.PermissionDenied {
			t.Errorf("verify as uid %d: want PERMISSION_DENIED, got %v", uid, err)
		}
	}
	err := s.QueryAudit(&deputyv1.AuditQuery{}, &fakeQueryStream{ctx: context.Background()})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("no peer credentials: want UNAUTHENTICATED, got %v", err)
	}
}

func TestVerifyAudit(t *testing.T) {
	s := auditServer(t, &audit.Record{Action: audit.ActionDaemonStart}, &audit.Record{Action: audit.ActionExecStart},
		&audit.Record{Action: audit.ActionExecExit})
	ctx := peerContext(context.Background(), 0)
	resp, err := s.VerifyAudit(ctx, &deputyv1.VerifyAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetOk() || resp.GetRecords() != 3 || resp.GetFiles() != 1 || resp.GetProblem() != "" || len(resp.GetLastHash()) != 64 {
		t.Fatalf("fresh log: got %v", resp)
	}
	path := filepath.Join(AuditDir(s.cfg), "audit-000001.log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), `"action":"exec.start"`)
	b[i+len(`"action":"`)] = 'E'
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err = s.VerifyAudit(ctx, &deputyv1.VerifyAuditRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOk() || !strings.Contains(resp.GetProblem(), "seq 2") || !strings.Contains(resp.GetProblem(), audit.ProblemModified) {
		t.Fatalf("modified record 2: got %v", resp)
	}
}

func TestQueryAuditFollowEndsWithClientAndDaemon(t *testing.T) {
	old := audit.TailPollInterval
	audit.TailPollInterval = 10 * time.Millisecond
	defer func() { audit.TailPollInterval = old }()
	s := auditServer(t, &audit.Record{Action: audit.ActionDaemonStart})

	// The client goes away after the first record.
	ctx, cancel := context.WithCancel(peerContext(context.Background(), 0))
	st := &fakeQueryStream{ctx: ctx, onSend: cancel}
	err := s.QueryAudit(&deputyv1.AuditQuery{Follow: true}, st)
	if status.Code(err) != codes.Canceled || len(st.sent) != 1 {
		t.Fatalf("client gone: want CANCELED after 1 record, got %v after %d", err, len(st.sent))
	}

	// The daemon shuts down while a follower waits.
	s.baseCtx, s.stopExec = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.QueryAudit(&deputyv1.AuditQuery{Follow: true}, &fakeQueryStream{ctx: peerContext(context.Background(), 0)})
	}()
	time.Sleep(50 * time.Millisecond)
	s.stopExec()
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("shutdown: want UNAVAILABLE, got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follower did not end with the daemon")
	}
}
