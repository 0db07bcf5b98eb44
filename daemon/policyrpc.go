package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/identity"
	"github.com/deputyhq/deputy/daemon/policy"
	"github.com/deputyhq/deputy/profiles"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
	"github.com/deputyhq/deputy/sandbox/seccomp"
)

// Audit actions of the approval flow.
const (
	actionApprovalRequest  = "approval.request"
	actionApprovalDecision = "approval.decision"
)

// awaitApproval blocks an exec until an approver decides, the profile's
// approval timeout passes, or the caller goes away. Every step is audited.
func (s *Server) awaitApproval(ctx context.Context, p *profiles.Profile, peer identity.Peer, r *execRequest,
	execID, rule string, rec *execRecorder, log *slog.Logger) error {
	timeout := p.Approval.Timeout.Std()
	if timeout <= 0 {
		timeout = profiles.DefaultApprovalTimeout
	}
	req := policy.ApprovalRequest{
		ID: execID, Agent: p.Name, PeerUID: peer.UID, Argv: r.Argv, Cwd: r.Cwd,
		Justification: r.Justification, CorrelationID: r.CorrelationID, Rule: rule, Created: time.Now(),
	}
	_ = rec.append(actionApprovalRequest, audit.ResultSuccess, map[string]any{"approval_id": execID, "rule": rule, "timeout": timeout.String()})
	log.Info("exec waits for approval", "approval_id", execID, "rule", rule, "timeout", timeout)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := s.approvals.Request(wctx, req)
	switch {
	case errors.Is(err, policy.ErrApprovalTimeout):
		_ = rec.append(actionApprovalDecision, audit.ResultDenied, map[string]any{"approval_id": execID, "reason": "timed out"})
		return status.Errorf(codes.PermissionDenied, "rule %s requires approval and no approver decided within %s", rule, timeout)
	case err != nil:
		_ = rec.append(actionApprovalDecision, audit.ResultError, map[string]any{"approval_id": execID, "reason": err.Error()})
		return status.Errorf(codes.Canceled, "waiting for approval: %v", err)
	}
	d := map[string]any{"approval_id": execID, "approver_uid": out.ApproverUID, "approved": out.Approved, "reason": out.Reason}
	if !out.Approved {
		_ = rec.append(actionApprovalDecision, audit.ResultDenied, d)
		return status.Errorf(codes.PermissionDenied, "approver uid %d denied this exec (rule %s): %s", out.ApproverUID, rule, out.Reason)
	}
	_ = rec.append(actionApprovalDecision, audit.ResultSuccess, d)
	log.Info("exec approved", "approval_id", execID, "approver_uid", out.ApproverUID)
	return nil
}

// inPrincipals reports whether the peer is root or one of p's uids or
// groups.
func (s *Server) inPrincipals(peer identity.Peer, p Principals) bool {
	return peer.UID == 0 || inSet(peer.UID, peer.GID, p, s.groupMember)
}

// inSet reports whether uid (primary gid gid) is one of p's uids or in one
// of its groups.
func inSet(uid, gid uint32, p Principals, member func(uid, gid uint32, group string) bool) bool {
	if slices.Contains(p.UIDs, uid) {
		return true
	}
	for _, g := range p.Groups {
		if member(uid, gid, g) {
			return true
		}
	}
	return false
}

// authorize admits root and members of any of the given principal sets,
// never an agent's peer.
func (s *Server) authorize(ctx context.Context, what string, sets ...Principals) (identity.Peer, error) {
	peer, err := identity.FromContext(ctx)
	if err != nil {
		return peer, status.Error(codes.Unauthenticated, err.Error())
	}
	if _, isAgent := s.profiles.Load().set.ForUID(peer.UID); isAgent {
		return peer, status.Errorf(codes.PermissionDenied, "uid %d is an agent's peer: agents may not %s", peer.UID, what)
	}
	if peer.UID == 0 {
		return peer, nil
	}
	for _, set := range sets {
		if s.inPrincipals(peer, set) {
			return peer, nil
		}
	}
	return peer, status.Errorf(codes.PermissionDenied, "uid %d may not %s: only root and the daemon config's listed principals may", peer.UID, what)
}

// ListApprovals implements the ListApprovals RPC.
func (s *Server) ListApprovals(ctx context.Context, _ *deputyv1.ListApprovalsRequest) (*deputyv1.ListApprovalsResponse, error) {
	if _, err := s.authorize(ctx, "list approvals (approvers only)", s.cfg.Approvers); err != nil {
		return nil, err
	}
	resp := &deputyv1.ListApprovalsResponse{}
	for _, a := range s.approvals.List() {
		pa := &deputyv1.Approval{
			Id: a.ID, Agent: a.Agent, PeerUid: a.PeerUID, Argv: a.Argv, Cwd: a.Cwd,
			Justification: a.Justification, CorrelationId: a.CorrelationID, Rule: a.Rule,
			Created: timestamppb.New(a.Created),
		}
		if !a.Expires.IsZero() {
			pa.Expires = timestamppb.New(a.Expires)
		}
		resp.Approvals = append(resp.Approvals, pa)
	}
	return resp, nil
}

// DecideApproval implements the DecideApproval RPC.
func (s *Server) DecideApproval(ctx context.Context, req *deputyv1.DecideApprovalRequest) (*deputyv1.DecideApprovalResponse, error) {
	peer, err := s.authorize(ctx, "decide approvals (approvers only)", s.cfg.Approvers)
	if err != nil {
		return nil, err
	}
	set := s.profiles.Load().set
	peerOf := func(uid uint32) (string, bool) {
		p, ok := set.ForUID(uid)
		if !ok {
			return "", false
		}
		return p.Name, true
	}
	err = s.approvals.Decide(req.GetId(), peer.UID, peerOf, req.GetApprove(), req.GetReason())
	rec := &audit.Record{
		PrincipalType: audit.PrincipalApprover, PrincipalID: fmt.Sprintf("uid:%d", peer.UID), UID: peer.UID, PID: int(peer.PID),
		ExecID: req.GetId(), Action: "approval.decide", Result: audit.ResultSuccess,
		Details: map[string]any{"approval_id": req.GetId(), "approve": req.GetApprove(), "reason": req.GetReason()},
	}
	if err != nil {
		rec.Result = audit.ResultDenied
		rec.Details = map[string]any{"approval_id": req.GetId(), "approve": req.GetApprove(), "reason": req.GetReason(), "error": err.Error()}
	}
	if aerr := s.audit.Append(rec); aerr != nil {
		s.log.Error("audit append", "err", aerr)
	}
	switch {
	case errors.Is(err, policy.ErrUnknownApproval):
		return nil, status.Errorf(codes.NotFound, "%v: %s", err, req.GetId())
	case errors.Is(err, policy.ErrSelfApproval):
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, policy.ErrReasonRequired):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	s.log.Info("approval decided", "approval_id", req.GetId(), "approver_uid", peer.UID, "approve", req.GetApprove())
	return &deputyv1.DecideApprovalResponse{}, nil
}

// ListAgents implements the ListAgents RPC.
func (s *Server) ListAgents(ctx context.Context, _ *deputyv1.ListAgentsRequest) (*deputyv1.ListAgentsResponse, error) {
	if _, err := s.authorize(ctx, "list agents (admins and auditors only)", s.cfg.Auditors, s.cfg.Approvers); err != nil {
		return nil, err
	}
	now := time.Now()
	resp := &deputyv1.ListAgentsResponse{}
	for _, p := range s.profiles.Load().set.All() {
		last, execs, denials, running := s.stats.snapshot(p.Name, now)
		a := &deputyv1.Agent{
			Name: p.Name, Description: p.Description, PeerUids: p.PeerUIDs,
			RunAsUid: p.RunAs.UID, RunAsGid: p.RunAs.GID, ProfileFile: p.File, ProfileDigest: p.Digest,
			Execs_24H: uint32(execs), Denials_24H: uint32(denials), Running: uint32(running),
		}
		if !last.IsZero() {
			a.LastExec = timestamppb.New(last)
		}
		resp.Agents = append(resp.Agents, a)
	}
	return resp, nil
}

// Explain implements the Explain RPC: the same conversion and decision as
// Exec, and the sandbox Exec would build, without running anything.
func (s *Server) Explain(ctx context.Context, req *deputyv1.ExplainRequest) (*deputyv1.ExplainResponse, error) {
	peer, err := identity.FromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	ls := s.profiles.Load()
	p, ok := ls.set.ByName(req.GetAgent())
	if !ok {
		return nil, status.Errorf(codes.NotFound, "no agent named %q", req.GetAgent())
	}
	if own, isPeer := ls.set.ForUID(peer.UID); !isPeer || own.Name != p.Name {
		if _, err := s.authorize(ctx, "explain other agents' policy (admins and auditors only)", s.cfg.Auditors, s.cfg.Approvers); err != nil {
			return nil, err
		}
	}
	resp := &deputyv1.ExplainResponse{}
	r, err := newRequest(p, &deputyv1.ExecStart{Argv: req.GetArgv(), Cwd: req.GetCwd(), Justification: req.GetJustification()})
	if err != nil {
		st := toStatus(err)
		resp.Code, resp.Reason = codeName(status.Code(st)), status.Convert(st).Message()
		return resp, nil
	}
	v := s.decide(ls, p, r, time.Now())
	resp.Allow, resp.Rule, resp.Reason = v.Allow && v.Err == nil, v.Rule, v.Reason
	resp.NeedsApproval, resp.Program, resp.AllowedHint = v.NeedsApproval, v.Program, v.AllowedHint
	if v.Err != nil {
		resp.Code = codeName(status.Code(v.Err))
		resp.Reason = status.Convert(v.Err).Message()
	}
	r.Program = v.Program
	spec := s.buildSpec(ls, p, r, "explain")
	resp.Sandbox = &deputyv1.Sandbox{
		Agent: p.Name, Uid: spec.UID, Gid: spec.GID, Network: string(p.Network), Cwd: spec.Cwd,
		Timeout: durationpb.New(r.Timeout), MemoryBytes: int64(p.Limits.Memory), Pids: p.Limits.PIDs,
		Cpu: p.Limits.CPU, OutputBytes: int64(p.Limits.Output),
		Read: spec.Landlock.Read, Write: spec.Landlock.Write, Exec: spec.Landlock.Exec,
		ReadOnly: spec.Mounts.ReadOnly, Hidden: spec.Mounts.Hidden,
		SeccompDenied: seccompDenied(p),
	}
	for _, a := range p.Seccomp.Allow {
		resp.Sandbox.SeccompAllowedOverrides = append(resp.Sandbox.SeccompAllowedOverrides, a.Syscall+" ("+a.Reason+")")
	}
	return resp, nil
}

// seccompDenied lists what the profile's filter refuses.
func seccompDenied(p *profiles.Profile) []string {
	allowed := map[string]bool{}
	for _, a := range p.Seccomp.Allow {
		allowed[a.Syscall] = true
	}
	var out []string
	for _, e := range seccomp.DefaultDeny() {
		name := e.Syscall
		if e.When != "" {
			name += " (" + e.When + ")"
		}
		if !allowed[e.Syscall] {
			out = append(out, name)
		}
	}
	out = append(out, p.Seccomp.Deny...)
	slices.Sort(out)
	return slices.Compact(out)
}
