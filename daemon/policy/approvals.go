package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Errors of the approvals registry, for the daemon to map to status codes.
var (
	// ErrUnknownApproval: no pending request has that id (never existed,
	// already decided, or its exec gave up waiting).
	ErrUnknownApproval = errors.New("no pending approval with this id")
	// ErrSelfApproval: the approver is a peer of the agent whose exec it
	// is, or the very process owner that asked.
	ErrSelfApproval = errors.New("an approver cannot approve an exec of their own agent")
	// ErrReasonRequired: a denial must say why.
	ErrReasonRequired = errors.New("a denial needs a reason")
	// ErrApprovalTimeout: nobody decided before the request's deadline.
	ErrApprovalTimeout = errors.New("approval timed out")
	// ErrDuplicateApproval: Request with an id that is already pending.
	ErrDuplicateApproval = errors.New("an approval with this id is already pending")
)

// ApprovalRequest is one exec waiting for an admin.
type ApprovalRequest struct {
	ID            string
	Agent         string
	PeerUID       uint32
	Argv          []string
	Cwd           string
	Justification string
	CorrelationID string
	// Rule is the id of the rule that requires approval.
	Rule    string
	Created time.Time
	// Expires is the deadline of the Request's context, zero if none; set
	// by Request.
	Expires time.Time
}

// Outcome is an admin's decision.
type Outcome struct {
	Approved    bool
	ApproverUID uint32
	Reason      string
	Decided     time.Time
}

// Approvals holds pending approval requests in memory. They are not
// persisted: each belongs to an exec stream that a daemon restart ends.
// Safe for concurrent use.
type Approvals struct {
	mu      sync.Mutex
	pending map[string]*pendingApproval
	now     func() time.Time
}

type pendingApproval struct {
	req ApprovalRequest
	out chan Outcome // buffered 1: Decide never blocks
}

// NewApprovals returns an empty registry.
func NewApprovals() *Approvals {
	return &Approvals{pending: map[string]*pendingApproval{}, now: time.Now}
}

// Request registers req and blocks until Decide settles it or ctx ends.
// The caller bounds the wait with the profile's approval.timeout:
// context.WithTimeout(ctx, p.Approval.Timeout.Std()). When the deadline
// passes the error wraps ErrApprovalTimeout; when ctx is cancelled (the
// client went away) it wraps ctx's cause. Either way the request is
// withdrawn, so a late Decide gets ErrUnknownApproval.
func (a *Approvals) Request(ctx context.Context, req ApprovalRequest) (Outcome, error) {
	if req.ID == "" {
		return Outcome{}, fmt.Errorf("request approval: empty id")
	}
	if req.Created.IsZero() {
		req.Created = a.now()
	}
	if d, ok := ctx.Deadline(); ok {
		req.Expires = d
	}
	req.Argv = slices.Clone(req.Argv)
	pa := &pendingApproval{req: req, out: make(chan Outcome, 1)}
	a.mu.Lock()
	if _, dup := a.pending[req.ID]; dup {
		a.mu.Unlock()
		return Outcome{}, fmt.Errorf("request approval %s: %w", req.ID, ErrDuplicateApproval)
	}
	a.pending[req.ID] = pa
	a.mu.Unlock()

	select {
	case o := <-pa.out:
		return o, nil
	case <-ctx.Done():
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Decide may have won the race with ctx: if the request is gone, the
	// outcome is in the channel, and the admin's word stands.
	if a.pending[req.ID] != pa {
		return <-pa.out, nil
	}
	delete(a.pending, req.ID)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Outcome{}, fmt.Errorf("approval %s of agent %s after %s: %w", req.ID, req.Agent,
			req.Expires.Sub(req.Created).Round(time.Second), ErrApprovalTimeout)
	}
	return Outcome{}, fmt.Errorf("approval %s of agent %s: %w", req.ID, req.Agent, context.Cause(ctx))
}

// List returns the pending requests, oldest first, as copies.
func (a *Approvals) List() []ApprovalRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ApprovalRequest, 0, len(a.pending))
	for _, pa := range a.pending {
		r := pa.req
		r.Argv = slices.Clone(r.Argv)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Decide settles the pending request id. approverAgentPeer maps a uid to
// the agent it is a peer of (profiles.Set.ForUID, from the set loaded
// now); an approver who is a peer of the request's agent, or who is the
// uid that asked, is refused: an agent must not approve its own execs.
// Whether approverUID may approve at all (root, an admin group) is the
// caller's check, made before this one. A denial needs a reason.
func (a *Approvals) Decide(id string, approverUID uint32, approverAgentPeer func(uid uint32) (agent string, ok bool),
	approve bool, reason string) error {
	reason = strings.TrimSpace(reason)
	if !approve && reason == "" {
		return fmt.Errorf("deny %s: %w", id, ErrReasonRequired)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	pa, ok := a.pending[id]
	if !ok {
		return fmt.Errorf("decide %s: %w", id, ErrUnknownApproval)
	}
	// The uid that asked is checked as well as the agent's current peers:
	// a reload may have moved that uid out of the profile meanwhile.
	if approverUID == pa.req.PeerUID {
		return fmt.Errorf("decide %s: uid %d requested it: %w", id, approverUID, ErrSelfApproval)
	}
	if approverAgentPeer != nil {
		if agent, isPeer := approverAgentPeer(approverUID); isPeer && agent == pa.req.Agent {
			return fmt.Errorf("decide %s: uid %d is a peer of agent %s: %w", id, approverUID, agent, ErrSelfApproval)
		}
	}
	delete(a.pending, id)
	pa.out <- Outcome{Approved: approve, ApproverUID: approverUID, Reason: reason, Decided: a.now()}
	return nil
}
