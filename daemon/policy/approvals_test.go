package policy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// peers maps uids to agents as profiles.Set.ForUID would.
func peers(uid uint32) (string, bool) {
	switch uid {
	case 1003, 1004:
		return "log-rotator", true
	case 1001:
		return "log-cleaner", true
	}
	return "", false
}

func req(id string) ApprovalRequest {
	return ApprovalRequest{ID: id, Agent: "log-rotator", PeerUID: 1003, Argv: []string{"systemctl", "restart", "app.service"},
		Cwd: "/var/tmp/log-rotator", Justification: "app wedged", CorrelationID: "c-1", Rule: "restart"}
}

// waitPending waits until id is listed, so Decide does not race Request.
func waitPending(t *testing.T, a *Approvals, id string) ApprovalRequest {
	t.Helper()
	for i := 0; i < 1000; i++ {
		for _, r := range a.List() {
			if r.ID == id {
				return r
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s never pending", id)
	return ApprovalRequest{}
}

type result struct {
	o   Outcome
	err error
}

func request(a *Approvals, ctx context.Context, r ApprovalRequest) <-chan result {
	ch := make(chan result, 1)
	go func() {
		o, err := a.Request(ctx, r)
		ch <- result{o, err}
	}()
	return ch
}

func TestApprovalsApprove(t *testing.T) {
	a := NewApprovals()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := request(a, ctx, req("ap1"))
	r := waitPending(t, a, "ap1")
	if r.Agent != "log-rotator" || r.Rule != "restart" || r.Created.IsZero() || r.Expires.IsZero() || len(r.Argv) != 3 {
		t.Errorf("listed %+v", r)
	}
	// The listed copy is the caller's to change.
	r.Argv[0] = "sh"
	if a.List()[0].Argv[0] != "systemctl" {
		t.Error("List exposes the registry's argv")
	}

	// Peers of the same agent may not approve: not the asker, not another
	// peer uid of that agent.
	for _, uid := range []uint32{1003, 1004} {
		if err := a.Decide("ap1", uid, peers, true, ""); !errors.Is(err, ErrSelfApproval) {
			t.Errorf("uid %d: %v, want ErrSelfApproval", uid, err)
		}
	}
	// Still pending after refused decisions.
	if len(a.List()) != 1 {
		t.Fatal("refused Decide removed the request")
	}
	// A denial needs a reason.
	if err := a.Decide("ap1", 0, peers, false, " "); !errors.Is(err, ErrReasonRequired) {
		t.Errorf("deny without reason: %v", err)
	}
	if err := a.Decide("nope", 0, peers, true, ""); !errors.Is(err, ErrUnknownApproval) {
		t.Errorf("unknown id: %v", err)
	}
	// Another agent's peer (or root) may.
	if err := a.Decide("ap1", 1001, peers, true, ""); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || !res.o.Approved || res.o.ApproverUID != 1001 || res.o.Decided.IsZero() {
		t.Errorf("outcome %+v, %v", res.o, res.err)
	}
	if len(a.List()) != 0 {
		t.Error("decided request still listed")
	}
	if err := a.Decide("ap1", 0, peers, true, ""); !errors.Is(err, ErrUnknownApproval) {
		t.Errorf("second decision: %v", err)
	}
}

func TestApprovalsDeny(t *testing.T) {
	a := NewApprovals()
	done := request(a, context.Background(), req("ap2"))
	waitPending(t, a, "ap2")
	if err := a.Decide("ap2", 0, nil, false, "not during the sale"); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.o.Approved || res.o.Reason != "not during the sale" || res.o.ApproverUID != 0 {
		t.Errorf("outcome %+v, %v", res.o, res.err)
	}
}

func TestApprovalsTimeoutAndCancel(t *testing.T) {
	a := NewApprovals()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := a.Request(ctx, req("ap3"))
	if !errors.Is(err, ErrApprovalTimeout) {
		t.Errorf("timeout: %v", err)
	}
	if len(a.List()) != 0 {
		t.Error("timed-out request still listed")
	}
	if err := a.Decide("ap3", 0, peers, true, ""); !errors.Is(err, ErrUnknownApproval) {
		t.Errorf("late decision: %v", err)
	}

	gone := errors.New("client went away")
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	done := request(a, ctx2, req("ap4"))
	waitPending(t, a, "ap4")
	cancel2(gone)
	if res := <-done; !errors.Is(res.err, gone) {
		t.Errorf("cancel: %v", res.err)
	}
	if len(a.List()) != 0 {
		t.Error("cancelled request still listed")
	}
}

func TestApprovalsDuplicate(t *testing.T) {
	a := NewApprovals()
	ctx, cancel := context.WithCancel(context.Background())
	done := request(a, ctx, req("ap5"))
	waitPending(t, a, "ap5")
	if _, err := a.Request(ctx, req("ap5")); !errors.Is(err, ErrDuplicateApproval) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := a.Request(ctx, ApprovalRequest{}); err == nil {
		t.Error("empty id accepted")
	}
	cancel()
	<-done
}

func TestApprovalsListOrder(t *testing.T) {
	a := NewApprovals()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := time.Date(2026, 6, 8, 10, 0, 0, 0, time.UTC)
	var chans []<-chan result
	for i, id := range []string{"c", "a", "b"} {
		r := req(id)
		r.Created = base.Add(time.Duration(-i) * time.Minute)
		chans = append(chans, request(a, ctx, r))
		waitPending(t, a, id)
	}
	var got []string
	for _, r := range a.List() {
		got = append(got, r.ID)
	}
	if len(got) != 3 || got[0] != "b" || got[1] != "a" || got[2] != "c" {
		t.Errorf("order %v, want oldest first", got)
	}
	cancel()
	for _, ch := range chans {
		<-ch
	}
}
