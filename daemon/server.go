// Package daemon is deputyd: the gRPC server on the Unix socket, peer
// authentication, proto <-> internal conversion, the exec registry, and the
// mapping of every failure to a gRPC status code.
//
// A request's path: socket (server.go) -> identity (daemon/identity) ->
// profile (profiles) -> policy decision (request.go) -> sandbox (sandbox/)
// -> audit.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/defaults"
	"github.com/deputyhq/deputy/daemon/identity"
	"github.com/deputyhq/deputy/daemon/policy"
	"github.com/deputyhq/deputy/profiles"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
	"github.com/deputyhq/deputy/sandbox"
	"github.com/deputyhq/deputy/sandbox/cgroup"
	"github.com/deputyhq/deputy/sandbox/seccomp"
)

// maxMessageBytes bounds one gRPC message either way; a larger one is
// refused by gRPC with RESOURCE_EXHAUSTED before the daemon allocates it.
const maxMessageBytes = 4 << 20

// Server is one running deputyd.
type Server struct {
	deputyv1.UnimplementedDeputyServer

	cfg     *Config
	log     *slog.Logger
	started time.Time
	layers  []*deputyv1.Layer // found at start, for Doctor
	cgroups *cgroup.Manager

	audit *audit.Log
	sys   *syscallAudit // nil when syscall auditing is off

	limiter   *policy.Limiter
	approvals *policy.Approvals
	stats     agentStats

	netnsMu sync.Mutex
	netns   map[string]*os.File // per agent with network: none

	// profiles is swapped whole on reload; a running exec keeps the set it
	// started with.
	profiles atomic.Pointer[loadedSet]

	mu       sync.Mutex
	execs    map[string]*execution
	closing  bool
	execWG   sync.WaitGroup
	baseCtx  context.Context
	stopExec context.CancelFunc
}

// loadedSet is a validated profile set with each profile's seccomp filter
// compiled once, at load.
type loadedSet struct {
	set     *profiles.Set
	filters map[string]*seccomp.Filter
}

// LoadProfiles loads and validates dir and compiles every profile's
// seccomp filter. It is what `deputyd` runs at start and on SIGHUP, and what
// `deputy profile lint` runs offline.
func LoadProfiles(dir string) (*loadedSet, error) {
	set, err := profiles.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	return compileSet(set)
}

// CheckSeccomp compiles every profile's seccomp policy, as the daemon does
// at load, for `deputy profile lint`.
func CheckSeccomp(set *profiles.Set) error {
	_, err := compileSet(set)
	return err
}

func compileSet(set *profiles.Set) (*loadedSet, error) {
	ls := &loadedSet{set: set, filters: map[string]*seccomp.Filter{}}
	for _, p := range set.All() {
		pol := seccomp.Policy{Deny: p.Seccomp.Deny}
		for _, a := range p.Seccomp.Allow {
			pol.Allow = append(pol.Allow, a.Syscall)
		}
		f, err := seccomp.Compile(pol)
		if err != nil {
			return nil, fmt.Errorf("%s: seccomp: %w", p.File, err)
		}
		ls.filters[p.Name] = f
	}
	return ls, nil
}

// Run starts the daemon and serves until ctx ends or SIGTERM/SIGINT.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return errors.New("deputyd must run as root: it switches to each agent's uid and sets up namespaces, cgroups and mounts")
	}
	// Catch signals before anything else: once the socket exists a client
	// (or an operator's reload) may signal us, and SIGHUP's default action
	// would end the daemon. They wait in the channel until serving starts.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ls, err := LoadProfiles(cfg.Profiles)
	if err != nil {
		return fmt.Errorf("refusing to start: invalid profile set in %s:\n%w", cfg.Profiles, err)
	}
	if err := ensureProtected(cfg.ProtectedPaths); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(cfg.State, 0o700); err != nil {
		return fmt.Errorf("chmod state directory: %w", err)
	}

	s := &Server{cfg: cfg, log: log, started: time.Now(), execs: map[string]*execution{}, approvals: policy.NewApprovals()}
	// Rate-limit windows live in the state directory, so a restart does not
	// reset an agent's budget.
	if s.limiter, err = policy.LoadLimiter(filepath.Join(cfg.State, "ratelimit.json")); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	s.profiles.Store(ls)
	s.netns = map[string]*os.File{}
	defer s.closeNetNS()
	s.baseCtx, s.stopExec = context.WithCancel(context.Background())
	defer s.stopExec()

	layers, mgr, err := ProbeLayers(cfg)
	for _, l := range layers {
		log.Info("layer", "name", l.Name, "active", l.Active, "detail", l.Detail, "consequence", l.Consequence)
	}
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	s.layers = layers
	s.cgroups = mgr
	if s.audit, err = openAudit(cfg, ls); err != nil {
		return fmt.Errorf("refusing to start without an audit log: %w", err)
	}
	defer func() {
		s.daemonRecord(audit.ActionDaemonStop, audit.ResultSuccess, nil)
		if err := s.audit.Close(); err != nil {
			log.Error("close audit log", "err", err)
		}
	}()
	if cfg.syscallAudit() {
		if s.sys, err = startSyscallAudit(s.audit, log); err != nil {
			return fmt.Errorf("refusing to start: syscall auditing (eBPF) unavailable: %w (set auditSyscalls: false to run without it, not for production)", err)
		}
		defer s.sys.close()
		al := &deputyv1.Layer{Name: "audit", Active: true, Detail: "eBPF raw_tp sys_enter/sys_exit and sched fork/exec/exit into a ring buffer; hash-chained log in " + AuditDir(cfg)}
		s.layers = append(s.layers, al)
		log.Info("layer", "name", al.Name, "active", al.Active, "detail", al.Detail)
	} else {
		al := &deputyv1.Layer{Name: "audit", Detail: "auditSyscalls: false", Consequence: "syscalls are NOT recorded (benchmarks only, not for production); requests, output and exits still are"}
		s.layers = append(s.layers, al)
		log.Warn("layer", "name", al.Name, "active", al.Active, "detail", al.Detail, "consequence", al.Consequence)
	}
	if n, err := s.cgroups.CleanupStale(); err != nil {
		log.Warn("clean up cgroups of a previous run", "err", err)
	} else if n > 0 {
		log.Warn("removed cgroups left by a previous run", "count", n)
	}

	lis, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.Socket)

	gs := grpc.NewServer(
		grpc.Creds(identity.Credentials()),
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	deputyv1.RegisterDeputyServer(gs, s)

	changed := watchDir(s.baseCtx, cfg.Profiles, 500*time.Millisecond)

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	log.Info("deputyd started", "version", defaults.Version, "socket", cfg.Socket, "profiles", cfg.Profiles,
		"agents", ls.set.Len(), "state", cfg.State, "protected", cfg.Protected())

	for {
		select {
		case err := <-serveErr:
			s.shutdown(gs)
			return fmt.Errorf("serve: %w", err)
		case <-ctx.Done():
			s.shutdown(gs)
			return nil
		case <-changed:
			log.Info("profiles directory changed", "dir", cfg.Profiles)
			s.reload()
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				s.reload()
				continue
			}
			log.Info("shutting down", "signal", sig.String())
			s.shutdown(gs)
			return nil
		}
	}
}

// reload swaps in a new profile set, or keeps the old one, loudly.
func (s *Server) reload() {
	ls, err := LoadProfiles(s.cfg.Profiles)
	if err != nil {
		s.log.Error("profile reload rejected; the previous profiles stay in force", "dir", s.cfg.Profiles, "err", err.Error())
		s.daemonRecord(audit.ActionDaemonReload, audit.ResultError, map[string]any{"error": err.Error(), "kept": "previous profiles"})
		return
	}
	s.profiles.Store(ls)
	s.daemonRecord(audit.ActionDaemonReload, audit.ResultSuccess, map[string]any{"profiles": profileDigests(ls.set)})
	s.log.Info("profiles reloaded", "dir", s.cfg.Profiles, "agents", ls.set.Len())
}

// shutdown stops accepting, ends running commands (each caller gets its
// `exited` with the reason), and waits for them.
func (s *Server) shutdown(gs *grpc.Server) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.stopExec()
	done := make(chan struct{})
	go func() { s.execWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.log.Warn("execs still running after 10s of shutdown")
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	if err := os.Remove(s.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("remove socket", "err", err)
	}
	s.log.Info("deputyd stopped")
}

// listen creates the socket in a root-owned directory that others cannot
// write, so nobody can replace the socket with their own.
func listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, fmt.Errorf("stat socket directory: %w", err)
	}
	if st.Uid != 0 {
		return nil, fmt.Errorf("socket directory %s is owned by uid %d, not root", dir, st.Uid)
	}
	if st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("socket directory %s is writable by group or others (mode %o): anyone could replace the socket", dir, st.Mode&0o7777)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to remove it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another daemon is serving %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Anyone may connect: who they are is read from the kernel, and only
	// listed peers get anything.
	if err := os.Chmod(path, 0o666); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	return lis, nil
}

// Version implements the Version RPC.
func (s *Server) Version(ctx context.Context, _ *deputyv1.VersionRequest) (*deputyv1.VersionResponse, error) {
	p, err := identity.FromContext(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	resp := &deputyv1.VersionResponse{Version: defaults.Version, PeerUid: p.UID, StartedAt: timestamppb.New(s.started)}
	if prof, ok := s.profiles.Load().set.ForUID(p.UID); ok {
		resp.Agent = prof.Name
	}
	return resp, nil
}

// Doctor implements the Doctor RPC: the layers found at start.
func (s *Server) Doctor(ctx context.Context, _ *deputyv1.DoctorRequest) (*deputyv1.DoctorResponse, error) {
	if _, err := identity.FromContext(ctx); err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return &deputyv1.DoctorResponse{Layers: s.layers}, nil
}

// ensureProtected creates missing protected directories, root-owned, so
// that no agent with write access to a parent can create one first (and
// fill it with forged logs), and refuses symlinks: the read-only mount
// would protect whatever they point to, which the agent may control.
func ensureProtected(paths []string) error {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("create protected path %s: %w", p, err)
			}
		case err != nil:
			return fmt.Errorf("protected path %s: %w", p, err)
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("protected path %s is a symlink; name its target in protectedPaths", p)
		}
	}
	return nil
}

// watchDir reports changes to the files directly in dir (names, sizes,
// modification times), polled every interval. Polling rather than inotify:
// editors replace files in every way (rename, truncate, symlink swap) and a
// poll sees them all; half a second is well inside the 2 s promise.
func watchDir(ctx context.Context, dir string, interval time.Duration) <-chan struct{} {
	out := make(chan struct{}, 1)
	state := func() string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "error: " + err.Error()
		}
		var b []byte
		for _, e := range entries {
			fi, err := os.Stat(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			b = fmt.Appendf(b, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
		return string(b)
	}
	go func() {
		last := state()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if cur := state(); cur != last {
				last = cur
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

// agentNetNS returns the agent's network namespace (loopback only), made on
// first use and shared by its execs: one agent's execs can reach each
// other over 127.0.0.1, never another agent's or the host's.
func (s *Server) agentNetNS(agent string) (*os.File, error) {
	s.netnsMu.Lock()
	defer s.netnsMu.Unlock()
	if ns, ok := s.netns[agent]; ok {
		return ns, nil
	}
	ns, err := sandbox.NewNetNS()
	if err != nil {
		return nil, fmt.Errorf("network namespace for agent %s: %w", agent, err)
	}
	s.netns[agent] = ns
	return ns, nil
}

func (s *Server) closeNetNS() {
	s.netnsMu.Lock()
	defer s.netnsMu.Unlock()
	for name, ns := range s.netns {
		ns.Close()
		delete(s.netns, name)
	}
}
