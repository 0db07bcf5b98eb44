package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os/user"
	"slices"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/identity"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

// QueryAudit implements the QueryAudit RPC: the records that match, oldest
// first, each exactly as stored; with follow, new ones as they are written
// until the client goes away or the daemon stops.
func (s *Server) QueryAudit(q *deputyv1.AuditQuery, stream deputyv1.Deputy_QueryAuditServer) error {
	ctx := stream.Context()
	peer, err := s.authorizeAuditor(ctx)
	if err != nil {
		return err
	}
	f, err := auditFilter(q)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	s.log.Info("audit query", "peer_uid", peer.UID, "peer_pid", peer.PID, "filter", filterAttrs(f),
		"follow", q.GetFollow())
	// Make what has been appended so far visible to the reader below, rather
	// than up to one SyncInterval later.
	if s.audit != nil {
		if err := s.audit.Sync(); err != nil {
			s.log.Error("audit sync before query", "err", err)
		}
	}
	send := func(r *audit.Record) error {
		// MarshalJSON writes the canonical encoding, which is the line as
		// stored: the client can re-verify the hash from these bytes.
		b, err := r.MarshalJSON()
		if err != nil {
			return fmt.Errorf("encode seq %d: %w", r.Seq, err)
		}
		return stream.Send(&deputyv1.AuditRecord{Json: b})
	}
	dir := AuditDir(s.cfg)
	if !q.GetFollow() {
		return auditStatus(audit.Query(dir, f, send))
	}
	// A follower ends with the daemon too, so that shutdown does not wait
	// on streams that would never end by themselves.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.baseCtx != nil {
		defer context.AfterFunc(s.baseCtx, cancel)()
	}
	err = audit.TailFilter(ctx, dir, f, true, send)
	switch {
	case err == nil:
		return nil
	case stream.Context().Err() != nil:
		// The client went away: nobody is left to tell.
		return status.FromContextError(stream.Context().Err()).Err()
	case ctx.Err() != nil:
		return status.Error(codes.Unavailable, "deputyd is shutting down")
	}
	return auditStatus(err)
}

// VerifyAudit implements the VerifyAudit RPC: a walk of the whole chain.
func (s *Server) VerifyAudit(ctx context.Context, _ *deputyv1.VerifyAuditRequest) (*deputyv1.VerifyAuditResponse, error) {
	peer, err := s.authorizeAuditor(ctx)
	if err != nil {
		return nil, err
	}
	s.log.Info("audit verify", "peer_uid", peer.UID, "peer_pid", peer.PID)
	if s.audit != nil {
		if err := s.audit.Sync(); err != nil {
			s.log.Error("audit sync before verify", "err", err)
		}
	}
	rep, err := audit.Verify(AuditDir(s.cfg))
	if err != nil {
		return nil, auditStatus(err)
	}
	resp := &deputyv1.VerifyAuditResponse{
		Ok:            rep.OK,
		Records:       uint64(rep.Records),
		Files:         uint32(rep.Files),
		TruncatedTail: rep.TruncatedTail,
		LastHash:      rep.LastHash,
	}
	if rep.FirstBad != nil {
		resp.Problem = rep.FirstBad.String()
		s.log.Error("audit chain broken", "peer_uid", peer.UID, "problem", resp.Problem)
	}
	return resp, nil
}

// authorizeAuditor returns the caller if it may read the audit log, or a
// PERMISSION_DENIED status naming its uid.
func (s *Server) authorizeAuditor(ctx context.Context) (identity.Peer, error) {
	peer, err := identity.FromContext(ctx)
	if err != nil {
		return peer, status.Error(codes.Unauthenticated, err.Error())
	}
	_, isAgent := s.profiles.Load().set.ForUID(peer.UID)
	if err := mayAudit(peer.UID, peer.GID, s.cfg.Auditors, isAgent, s.groupMember); err != nil {
		s.log.Warn("audit access denied", "peer_uid", peer.UID, "peer_pid", peer.PID, "reason", err.Error())
		return peer, status.Error(codes.PermissionDenied, err.Error())
	}
	return peer, nil
}

// mayAudit decides whether the peer uid (primary gid gid) may read the audit
// log: root and the configured auditors may, an agent never may. member
// reports whether the peer belongs to a named group.
func mayAudit(uid, gid uint32, auditors Principals, isAgent bool, member func(uid, gid uint32, group string) bool) error {
	// Checked first, so that listing an agent as an auditor (or giving an
	// agent uid 0) cannot let it read what every other agent did.
	if isAgent {
		return fmt.Errorf("uid %d is not an auditor: it is an agent's peer uid, and agents may never read the audit log", uid)
	}
	if uid == 0 || inSet(uid, gid, auditors, member) {
		return nil
	}
	return fmt.Errorf("uid %d is not an auditor: only root and the daemon config's auditors (uids, groups) may read the audit log", uid)
}

// groupMember reports whether the peer is in the named group: as its primary
// gid (from the kernel, at connect time) or as a supplementary group of its
// user in the user database.
func (s *Server) groupMember(uid, gid uint32, group string) bool {
	g, err := user.LookupGroup(group)
	if err != nil {
		s.log.Warn("auditors: look up group", "group", group, "err", err)
		return false
	}
	if g.Gid == strconv.FormatUint(uint64(gid), 10) {
		return true
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		// A uid without a passwd entry has no supplementary groups to list.
		return false
	}
	ids, err := u.GroupIds()
	if err != nil {
		s.log.Warn("auditors: list groups", "uid", uid, "err", err)
		return false
	}
	return slices.Contains(ids, g.Gid)
}

// auditFilter converts a query from the wire once, at the boundary.
func auditFilter(q *deputyv1.AuditQuery) (audit.Filter, error) {
	f := audit.Filter{
		Agent:         q.GetAgent(),
		ExecID:        q.GetExecId(),
		CorrelationID: q.GetCorrelationId(),
		Action:        q.GetAction(),
		Syscall:       q.GetSyscall(),
		Result:        q.GetResult(),
		Seq:           q.GetFromSeq(),
	}
	if q.Since != nil {
		if err := q.Since.CheckValid(); err != nil {
			return f, fmt.Errorf("since: %w", err)
		}
		f.Since = q.Since.AsTime()
	}
	if q.Until != nil {
		if err := q.Until.CheckValid(); err != nil {
			return f, fmt.Errorf("until: %w", err)
		}
		f.Until = q.Until.AsTime()
	}
	return f, nil
}

// filterAttrs logs the set fields of f.
func filterAttrs(f audit.Filter) slog.Value {
	var as []slog.Attr
	for _, kv := range [][2]string{
		{"agent", f.Agent}, {"exec_id", f.ExecID}, {"correlation_id", f.CorrelationID},
		{"action", f.Action}, {"syscall", f.Syscall}, {"result", f.Result},
	} {
		if kv[1] != "" {
			as = append(as, slog.String(kv[0], kv[1]))
		}
	}
	if !f.Since.IsZero() {
		as = append(as, slog.Time("since", f.Since))
	}
	if !f.Until.IsZero() {
		as = append(as, slog.Time("until", f.Until))
	}
	if f.Seq > 0 {
		as = append(as, slog.Uint64("from_seq", f.Seq))
	}
	return slog.GroupValue(as...)
}

// auditStatus maps a failure to read the log to a status.
func auditStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case status.Code(err) != codes.Unknown:
		// Already a status: stream.Send's, when the client is gone.
		return err
	case errors.Is(err, audit.ErrCorrupt):
		return status.Errorf(codes.DataLoss, "%v (run `deputy audit verify`)", err)
	case errors.Is(err, fs.ErrNotExist):
		return status.Errorf(codes.Internal, "audit log missing: %v", err)
	}
	return status.Error(codes.Internal, err.Error())
}
