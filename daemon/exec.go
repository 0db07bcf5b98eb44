package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/identity"
	"github.com/deputyhq/deputy/profiles"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
	"github.com/deputyhq/deputy/sandbox"
	"github.com/deputyhq/deputy/sandbox/cgroup"
)

// outputChunk is the most bytes of stdout or stderr sent in one message.
const outputChunk = 32 << 10

// execution is one running exec, registered so shutdown can end it.
type execution struct {
	id     string
	agent  string
	cancel context.CancelCauseFunc
}

// Stop causes the daemon records as the reason an exec ended early.
var (
	errTimeout    = errors.New("timeout")
	errOutputCap  = errors.New("output limit reached")
	errClientGone = errors.New("client went away")
	errShutdown   = errors.New("daemon shutting down")
)

// Exec implements the Exec RPC.
func (s *Server) Exec(stream deputyv1.Deputy_ExecServer) error {
	ctx := stream.Context()
	peer, err := identity.FromContext(ctx)
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	ls := s.profiles.Load()
	prof, ok := ls.set.ForUID(peer.UID)
	log := s.log.With("peer_uid", peer.UID, "peer_pid", peer.PID)
	if !ok {
		msg := fmt.Sprintf("peer uid %d (pid %d) is not listed in any agent profile", peer.UID, peer.PID)
		if peer.UID == 0 {
			msg = "peer uid 0 (root) is not an agent: root is refused unless a profile lists uid 0 in peers.uids"
		}
		log.Warn("exec denied", "decision", "deny", "reason", msg)
		s.denyRecord(peer, msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	log = log.With("agent", prof.Name)

	first, err := stream.Recv()
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "read exec start: %v", err)
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "the first message of an Exec stream must be start")
	}
	execID := newID()
	rec := &execRecorder{log: s.audit, base: audit.Record{
		PrincipalType: audit.PrincipalAgent, PrincipalID: prof.Name, UID: prof.RunAs.UID,
		ExecID: execID, CorrelationID: start.GetCorrelationId(),
	}}
	details := requestDetails{ExecRequestDetails: audit.ExecRequestDetails{
		PeerUID: peer.UID, PeerPID: int(peer.PID), Argv: start.GetArgv(), Cwd: start.GetCwd(),
		EnvNames: envNames(start.GetEnv()), Justification: start.GetJustification(),
		Profile: prof.Name, ProfileDigest: prof.Digest,
	}}
	req, err := newRequest(prof, start)
	if err != nil {
		log.Warn("exec refused", "decision", "invalid", "reason", err.Error())
		details.Decision, details.Reason = "invalid", err.Error()
		_ = rec.append(audit.ActionExecRequest, audit.ResultError, details)
		return toStatus(err)
	}
	rec.base.CorrelationID = req.CorrelationID
	log = log.With("exec_id", execID, "correlation_id", req.CorrelationID)
	details.Cwd = req.Cwd
	now := time.Now()
	refuse := func(decision string, st error) error {
		log.Warn("exec refused", "decision", decision, "reason", status.Convert(st).Message())
		details.Decision, details.Reason = decision, status.Convert(st).Message()
		result := audit.ResultDenied
		if status.Code(st) == codes.InvalidArgument {
			result = audit.ResultError
		}
		_ = rec.append(audit.ActionExecRequest, result, details)
		s.stats.denied(prof.Name, now)
		return st
	}

	// The policy: command rules, justification, schedules.
	v := s.decide(ls, prof, req, now)
	details.Rule = v.Rule
	if v.Err != nil {
		return refuse("deny", v.Err)
	}
	req.Program = v.Program
	release, ok := s.limiter.Acquire(prof.Name, prof.Concurrency)
	if !ok {
		return refuse("busy", status.Errorf(codes.ResourceExhausted, "agent %s already runs %d execs, its concurrency limit; retry when one ends", prof.Name, prof.Concurrency))
	}
	defer release()

	details.Decision = "allow"
	if v.NeedsApproval {
		details.Decision = "approval-required"
	}
	// No audit, no exec: a command the log cannot record does not run.
	if err := rec.append(audit.ActionExecRequest, audit.ResultSuccess, details); err != nil {
		log.Error("audit append", "err", err)
		return status.Errorf(codes.Unavailable, "audit log unavailable, refusing to run unaudited: %v", err)
	}

	execCtx, cancel := context.WithCancelCause(s.baseCtx)
	defer cancel(nil)
	if err := s.register(&execution{id: execID, agent: prof.Name, cancel: cancel}); err != nil {
		log.Warn("exec refused", "decision", "busy", "reason", err.Error())
		return err
	}
	defer s.unregister(execID)

	if v.NeedsApproval {
		if err := s.awaitApproval(ctx, prof, peer, req, execID, v.Rule, rec, log); err != nil {
			s.stats.denied(prof.Name, time.Now())
			return err
		}
	}
	// Budgets, charged only to execs that will run: one the policy or an
	// approver refused does not use up the agent's allowance.
	if ok, wait, err := s.limiter.Admit(time.Now(), rateLimits(prof, v.Decision)...); err != nil {
		return refuse("error", status.Errorf(codes.Unavailable, "rate limit state: %v", err))
	} else if !ok {
		return refuse("rate-limited", status.Error(codes.ResourceExhausted, retryMessage(prof.Name, wait)))
	}
	defer s.stats.started(prof.Name, time.Now())()
	log.Info("exec allowed", "decision", "allow", "argv", req.Argv, "cwd", req.Cwd, "timeout", req.Timeout)
	res, err := s.run(execCtx, stream, ls, prof, req, execID, rec, log)
	if err != nil {
		log.Warn("exec failed", "outcome", "error", "err", err.Error())
		st := toStatus(err)
		_ = rec.append(audit.ActionExecStart, audit.ResultError, map[string]any{"error": err.Error(), "code": status.Code(st).String()})
		return st
	}
	log.Info("exec finished", "outcome", "exited", "exit_code", res.ExitCode, "signal", res.Signal,
		"timed_out", res.TimedOut, "oom_killed", res.OomKilled, "reason", res.Reason, "duration", res.Duration.AsDuration())
	return nil
}

func (s *Server) register(e *execution) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return status.Error(codes.Unavailable, "deputyd is shutting down")
	}
	if len(s.execs) >= s.cfg.MaxConcurrentExecs {
		return status.Errorf(codes.ResourceExhausted, "%d execs are running, the daemon's limit (maxConcurrentExecs); retry when one ends", len(s.execs))
	}
	s.execs[e.id] = e
	s.execWG.Add(1)
	return nil
}

func (s *Server) unregister(id string) {
	s.mu.Lock()
	delete(s.execs, id)
	s.mu.Unlock()
	s.execWG.Done()
}

// run launches the command and pumps stdio until it exits. Once Started is
// sent, the result is always an Exited message, never an error status.
func (s *Server) run(ctx context.Context, stream deputyv1.Deputy_ExecServer, ls *loadedSet, prof *profiles.Profile,
	req *execRequest, execID string, rec *execRecorder, log *slog.Logger) (*deputyv1.Exited, error) {
	grp, err := s.cgroups.Create("exec-"+execID, cgroup.Limits{
		MemoryBytes: int64(prof.Limits.Memory),
		PIDs:        prof.Limits.PIDs,
		CPU:         prof.Limits.CPU,
	})
	if err != nil {
		return nil, &setupError{fmt.Errorf("create cgroup for exec %s: %w", execID, err)}
	}
	defer func() {
		if err := grp.Delete(); err != nil {
			log.Warn("delete exec cgroup", "err", err)
		}
	}()

	var traced *tracedExec
	if s.sys != nil {
		if traced, err = s.sys.track(rec.base, grp, req.Cwd); err != nil {
			return nil, &setupError{err}
		}
	}
	spec := s.buildSpec(ls, prof, req, execID)
	opts := sandbox.Options{CgroupFD: grp.FD(), HostNetwork: prof.Network == profiles.NetworkHost, Placed: grp.AddProc}
	if !opts.HostNetwork {
		if opts.NetNS, err = s.agentNetNS(prof.Name); err != nil {
			s.finishTrace(grp, traced, log)
			return nil, &setupError{err}
		}
		spec.Loopback = false // the agent's namespace has it up already
	}
	began := time.Now()
	proc, err := sandbox.Start(spec, opts)
	if err != nil {
		s.finishTrace(grp, traced, log)
		return nil, err
	}
	if traced != nil {
		traced.commandRunning() // from now on back-pressure may freeze it
	}
	if err := stream.Send(&deputyv1.ExecResponse{Kind: &deputyv1.ExecResponse_Started{Started: &deputyv1.Started{
		ExecId: execID, Pid: int32(proc.Pid), Uid: prof.RunAs.UID, Gid: prof.RunAs.GID,
		Agent: prof.Name, CorrelationId: req.CorrelationID,
	}}}); err != nil {
		grp.Kill()
		proc.Kill()
		proc.Wait()
		s.finishTrace(grp, traced, log)
		return nil, fmt.Errorf("send started: %w", err)
	}
	log.Info("exec started", "pid", proc.Pid, "uid", prof.RunAs.UID)
	rec.base.PID = proc.Pid
	_ = rec.append(audit.ActionExecStart, audit.ResultSuccess, map[string]any{
		"pid": proc.Pid, "uid": prof.RunAs.UID, "gid": prof.RunAs.GID, "cgroup_id": grp.ID(), "argv": req.Argv, "cwd": req.Cwd})

	x := &running{proc: proc, grp: grp, stream: stream, outCap: int64(prof.Limits.Output), log: log, rec: rec}
	ex := x.wait(ctx, req.Timeout, began)
	ex.AuditEvents, ex.AuditLost = s.finishTrace(grp, traced, log)
	details := exitDetails(ex)
	details.Events, details.Lost = ex.AuditEvents, ex.AuditLost
	_ = rec.append(audit.ActionExecExit, exitResult(ex), execExitDetails{ExecExitDetails: details, AuditIncomplete: ex.AuditLost > 0})
	if err := x.send(&deputyv1.ExecResponse{Kind: &deputyv1.ExecResponse_Exited{Exited: ex}}); err != nil {
		log.Debug("send exited", "err", err)
	}
	return ex, nil
}

// running pumps one started exec.
type running struct {
	proc   *sandbox.Process
	grp    *cgroup.Group
	stream deputyv1.Deputy_ExecServer
	log    *slog.Logger
	rec    *execRecorder

	sendMu   sync.Mutex // stream.Send is not safe for concurrent use
	outCap   int64
	outBytes atomic.Int64

	stopOnce sync.Once
	stopWhy  error // why the daemon stopped the command, nil if it ended itself
	stopSig  syscall.Signal
}

func (x *running) send(m *deputyv1.ExecResponse) error {
	x.sendMu.Lock()
	defer x.sendMu.Unlock()
	return x.stream.Send(m)
}

// stop kills the whole exec once, remembering why.
func (x *running) stop(why error, sig syscall.Signal) {
	x.stopOnce.Do(func() {
		x.stopWhy = why
		x.stopSig = sig
		// The cgroup kill reaches every process, even one that left the
		// process group; killing the namespace's init also ends the rest.
		if err := x.grp.Kill(); err != nil {
			x.log.Warn("kill exec cgroup", "err", err)
		}
		x.proc.Kill()
	})
}

func (x *running) wait(ctx context.Context, timeout time.Duration, began time.Time) *deputyv1.Exited {
	var pumps sync.WaitGroup
	pumps.Add(2)
	go x.pump(&pumps, x.proc.Stdout, false)
	go x.pump(&pumps, x.proc.Stderr, true)

	// Client messages: stdin, stdin close, signals. A receive error means
	// the client is gone (or cancelled): the command must not outlive it.
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		x.receive()
	}()

	waited := make(chan *os.ProcessState, 1)
	go func() {
		st, _ := x.proc.Wait()
		waited <- st
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	clientGone := x.stream.Context().Done()
	var st *os.ProcessState
loop:
	for {
		select {
		case st = <-waited:
			break loop
		case <-timer.C:
			x.stop(errTimeout, syscall.SIGKILL)
		case <-ctx.Done():
			x.stop(errShutdown, syscall.SIGKILL)
			ctx = context.Background()
		case <-clientGone:
			x.stop(errClientGone, syscall.SIGKILL)
			clientGone = nil
		case <-recvDone:
			// The client stopped sending. That is normal after stdin close
			// and a half-closed stream, but a broken stream means it left.
			if err := x.stream.Context().Err(); err != nil {
				x.stop(errClientGone, syscall.SIGKILL)
			}
			recvDone = nil
		}
	}
	// The leader is gone, so the pid namespace is being torn down; make sure
	// of it before waiting for the pipes, which close with their last
	// writer.
	_ = x.grp.Kill()
	pumps.Wait()
	x.proc.Stdin.Close()

	ex := &deputyv1.Exited{ExitCode: -1, Duration: durationpb.New(time.Since(began))}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			ex.ExitCode = int32(ws.ExitStatus())
		case ws.Signaled():
			ex.Signal = int32(ws.Signal())
		}
	}
	if oom, err := x.grp.OOMKilled(); err == nil && oom {
		ex.OomKilled = true
		ex.Reason = "memory limit reached: the kernel's OOM killer ended a process of this exec"
	}
	switch {
	case errors.Is(x.stopWhy, errTimeout):
		ex.TimedOut = true
		ex.Reason = fmt.Sprintf("timed out after %s", timeout)
	case errors.Is(x.stopWhy, errOutputCap):
		ex.OutputTruncated = true
		ex.Reason = fmt.Sprintf("output limit of %d bytes reached", x.outCap)
	case errors.Is(x.stopWhy, errShutdown), errors.Is(x.stopWhy, errClientGone):
		ex.Reason = x.stopWhy.Error()
	case x.stopWhy != nil:
		ex.Reason = x.stopWhy.Error()
		if x.stopSig != 0 && x.stopSig != syscall.SIGKILL {
			ex.Signal = int32(x.stopSig)
		}
	}
	ex.Usage = x.usage(st)
	return ex
}

func (x *running) usage(st *os.ProcessState) *deputyv1.ResourceUsage {
	u := &deputyv1.ResourceUsage{OutputBytes: x.outBytes.Load()}
	if st != nil {
		u.UserTime = durationpb.New(st.UserTime())
		u.SystemTime = durationpb.New(st.SystemTime())
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			u.MaxRssBytes = ru.Maxrss * 1024
		}
	}
	// The cgroup saw every process, including ones the leader never waited
	// for: prefer its numbers.
	if cs, err := x.grp.Stats(); err == nil {
		if cs.CPUUser > 0 || cs.CPUSystem > 0 {
			u.UserTime = durationpb.New(cs.CPUUser)
			u.SystemTime = durationpb.New(cs.CPUSystem)
		}
		u.MemoryPeakBytes = cs.MemoryPeakBytes
	}
	return u
}

// pump copies one output pipe to the stream until EOF, enforcing the
// output cap across both pipes.
func (x *running) pump(wg *sync.WaitGroup, r io.ReadCloser, isErr bool) {
	defer wg.Done()
	defer r.Close()
	buf := make([]byte, outputChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			total := x.outBytes.Add(int64(n))
			if over := total - x.outCap; over > 0 {
				n -= int(min(over, int64(n)))
				x.stop(errOutputCap, syscall.SIGKILL)
			}
			if n > 0 {
				chunk := append([]byte(nil), buf[:n]...)
				stream := "stdout"
				if isErr {
					stream = "stderr"
				}
				if err := x.rec.append(audit.ActionExecOutput, audit.ResultSuccess,
					audit.ExecOutputDetails{Stream: stream, Data: chunk, Offset: total - int64(len(chunk))}); err != nil {
					x.log.Error("audit append", "err", err)
				}
				m := &deputyv1.ExecResponse{Kind: &deputyv1.ExecResponse_Stdout{Stdout: chunk}}
				if isErr {
					m = &deputyv1.ExecResponse{Kind: &deputyv1.ExecResponse_Stderr{Stderr: chunk}}
				}
				if err := x.send(m); err != nil {
					x.stop(errClientGone, syscall.SIGKILL)
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// receive handles client messages after start.
func (x *running) receive() {
	for {
		m, err := x.stream.Recv()
		if err != nil {
			x.proc.Stdin.Close()
			return
		}
		switch k := m.Kind.(type) {
		case *deputyv1.ExecRequest_Stdin:
			if _, err := x.proc.Stdin.Write(k.Stdin); err != nil {
				// The command closed its stdin; further input is dropped.
				continue
			}
		case *deputyv1.ExecRequest_StdinClose:
			x.proc.Stdin.Close()
		case *deputyv1.ExecRequest_Signal:
			x.signal(syscall.Signal(k.Signal.GetNumber()))
		case *deputyv1.ExecRequest_Start:
			x.log.Warn("ignoring a second start message")
		}
	}
}

// signal forwards a client's signal. The command's leader is init of its
// pid namespace, which the kernel shields from signals it has no handler
// for; where the signal's default action is to terminate, the daemon carries
// that out itself so Ctrl-C works as the user expects.
func (x *running) signal(sig syscall.Signal) {
	if sig < 1 || sig > 64 {
		return
	}
	if err := x.proc.Signal(sig); err != nil {
		x.log.Warn("forward signal", "signal", sig, "err", err)
		return
	}
	if terminatesByDefault(sig) && !x.proc.HandlesSignal(sig) {
		x.stop(fmt.Errorf("stopped by forwarded signal %s", sig), sig)
	}
}

func terminatesByDefault(sig syscall.Signal) bool {
	switch sig {
	case syscall.SIGCHLD, syscall.SIGCONT, syscall.SIGURG, syscall.SIGWINCH,
		syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return false
	}
	return true
}

// setupError wraps a daemon-side failure to prepare the sandbox.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }
func (e *setupError) Unwrap() error { return e.err }

// toStatus maps internal errors to gRPC status codes, in one place.
func toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	var inv *invalidError
	var ie *sandbox.InitError
	var se *setupError
	switch {
	case errors.As(err, &inv):
		return status.Error(codes.InvalidArgument, inv.msg)
	case errors.As(err, &ie):
		switch ie.Kind {
		case sandbox.KindNotFound:
			return status.Error(codes.NotFound, ie.Error())
		case sandbox.KindPermission:
			return status.Error(codes.PermissionDenied, ie.Error())
		case sandbox.KindInvalid:
			return status.Error(codes.InvalidArgument, ie.Error())
		default:
			return status.Error(codes.FailedPrecondition, ie.Error())
		}
	case errors.As(err, &se):
		return status.Error(codes.FailedPrecondition, se.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// denyRecord audits a caller that maps to no agent.
func (s *Server) denyRecord(peer identity.Peer, reason string) {
	err := s.audit.Append(&audit.Record{
		PrincipalType: "peer", UID: peer.UID, PID: int(peer.PID), Action: audit.ActionDenied,
		Result: audit.ResultDenied, Details: map[string]any{"peer_uid": peer.UID, "peer_pid": peer.PID, "reason": reason},
	})
	if err != nil {
		s.log.Error("audit append", "err", err)
	}
}

func envNames(env map[string]string) []string {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func exitResult(ex *deputyv1.Exited) string {
	if ex.GetExitCode() == 0 && ex.GetSignal() == 0 {
		return audit.ResultSuccess
	}
	return audit.ResultError
}

func exitDetails(ex *deputyv1.Exited) audit.ExecExitDetails {
	d := audit.ExecExitDetails{
		ExitCode: int(ex.GetExitCode()), TimedOut: ex.GetTimedOut(), OOMKilled: ex.GetOomKilled(),
		Rusage: &audit.Rusage{
			UserMicros:   ex.GetUsage().GetUserTime().AsDuration().Microseconds(),
			SystemMicros: ex.GetUsage().GetSystemTime().AsDuration().Microseconds(),
			MaxRSSKiB:    ex.GetUsage().GetMaxRssBytes() / 1024,
		},
	}
	if ex.GetSignal() != 0 {
		d.Signal = unix.SignalName(syscall.Signal(ex.GetSignal()))
	}
	return d
}

// finishTrace waits for the exec's cgroup to empty, so that every event of
// it is in the ring buffer, then drains and untracks it.
func (s *Server) finishTrace(grp *cgroup.Group, te *tracedExec, log *slog.Logger) (events, lost uint64) {
	if te == nil {
		return 0, 0
	}
	_ = grp.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := grp.WaitEmpty(ctx); err != nil {
		log.Warn("exec cgroup not empty", "err", err)
	}
	return s.sys.finish(te)
}

// execExitDetails marks an exec whose audit trail lost events.
type execExitDetails struct {
	audit.ExecExitDetails
	AuditIncomplete bool `json:"audit_incomplete,omitempty"`
}
