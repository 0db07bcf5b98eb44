package daemon

import (
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/deputyhq/deputy/bpf"
	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/sandbox/cgroup"
)

// Back-pressure thresholds on the ring buffer's fill level. The kernel
// cannot wait for us, so above the high-water mark the traced execs are
// frozen (their cgroups stop running) until the reader has drained the ring
// below the low-water mark: slower commands instead of lost events.
const (
	highWater = 0.5
	lowWater  = 0.1
)

// syscallAudit reads the eBPF ring buffer and writes one audit record per
// syscall and process event of every tracked exec.
type syscallAudit struct {
	tr    *bpf.Tracer
	log   *audit.Log
	slg   *slog.Logger
	clock func(ts uint64) time.Time // the tracer's boot-clock to wall time

	mu     sync.RWMutex
	execs  map[uint64]*tracedExec // by cookie
	cookie atomic.Uint64

	busy    atomic.Bool   // the reader is handling a record
	handled atomic.Uint64 // records handled, for drain
	frozen  atomic.Bool
	kick    chan struct{}
	done    chan struct{}
}

// tracedExec is the reader's state for one exec. Only the reader goroutine
// touches resolver and started.
type tracedExec struct {
	base     audit.Record
	grp      *cgroup.Group
	resolver *bpf.Resolver
	execs    int  // exec events of this exec's processes so far
	started  bool // the command's execve happened: the init helper's setup is over
	events   atomic.Uint64
	cookie   uint64

	// live counts the exec's processes the reader has seen start (fork
	// records) and not yet end (the exit record of a process's last
	// thread). A process's exit record is the last record it produces, so
	// once the cgroup is empty and live is back to 0, every record of the
	// exec has been read. gone is closed then.
	live     int
	seenFork bool
	// freezable is set once the command runs. Until then the helper is a
	// clone(CLONE_VFORK) child of the daemon: frozen there, it would hold
	// the cloning thread, and with it a P that Go's stop-the-world waits
	// for, so the daemon would hang and never drain the ring to thaw it.
	freezable atomic.Bool
	// comm is the last command name seen and its string, reused while
	// it does not change (it changes only at exec or prctl).
	comm     [16]byte
	commStr  string
	gone     chan struct{}
	goneOnce sync.Once
}

func startSyscallAudit(l *audit.Log, slg *slog.Logger) (*syscallAudit, error) {
	tr, err := bpf.Load(bpf.Options{})
	if err != nil {
		return nil, err
	}
	a := &syscallAudit{tr: tr, log: l, slg: slg, clock: tr.Time, execs: map[uint64]*tracedExec{},
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go a.read()
	go a.pressure()
	return a, nil
}

func (a *syscallAudit) close() {
	a.tr.Close()
	<-a.done
}

// track registers an exec's cgroup before its first instruction runs, so
// every syscall of it, its children and threads is recorded.
func (a *syscallAudit) track(base audit.Record, grp *cgroup.Group, cwd string) (*tracedExec, error) {
	te := &tracedExec{base: base, grp: grp, resolver: bpf.NewResolver(cwd), cookie: a.cookie.Add(1), gone: make(chan struct{})}
	te.base.Action = audit.ActionSyscall
	a.mu.Lock()
	a.execs[te.cookie] = te
	a.mu.Unlock()
	if err := a.tr.Track(grp.ID(), te.cookie); err != nil {
		a.mu.Lock()
		delete(a.execs, te.cookie)
		a.mu.Unlock()
		return nil, fmt.Errorf("track cgroup %d: %w", grp.ID(), err)
	}
	return te, nil
}

// finish drains what the exec produced, stops tracking it and returns its
// event and lost counts. Call it once the exec's cgroup is empty.
func (a *syscallAudit) finish(te *tracedExec) (events, lost uint64) {
	select {
	case <-te.gone:
	case <-time.After(2 * time.Second):
		// An exit record was lost (the lost count says so) or never came:
		// fall back to draining the whole ring.
		a.drain(time.Second)
	}
	lost, err := a.tr.Untrack(te.grp.ID())
	if err != nil {
		a.slg.Warn("untrack exec cgroup", "err", err)
	}
	a.mu.Lock()
	delete(a.execs, te.cookie)
	a.mu.Unlock()
	if lost > 0 {
		r := te.base
		r.Action, r.Result = audit.ActionLost, audit.ResultError
		r.Details = map[string]any{"lost": lost, "reason": "ring buffer full: these syscalls were not recorded"}
		if err := a.log.Append(&r); err != nil {
			a.slg.Error("audit append", "err", err)
		}
	}
	return te.events.Load(), lost
}

// drain waits until the reader has consumed everything in the ring.
func (a *syscallAudit) drain(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		h := a.handled.Load()
		if a.tr.AvailableBytes() == 0 && !a.busy.Load() {
			time.Sleep(500 * time.Microsecond)
			if a.tr.AvailableBytes() == 0 && !a.busy.Load() && a.handled.Load() == h {
				return
			}
			continue
		}
		time.Sleep(200 * time.Microsecond)
	}
	a.slg.Warn("audit ring buffer not drained in time", "limit", limit)
}

// pressureEvery is how many records the reader handles between two looks
// at the ring's fill level: often enough to freeze well before the ring is
// full (it holds about a million small records), rare enough to cost
// nothing.
const pressureEvery = 1024

// checkPressure decides whether the traced execs should be frozen: above
// the high-water mark yes, below the low-water mark no. The reader calls it;
// the pressure goroutine applies the decision.
func (a *syscallAudit) checkPressure() {
	fill := float64(a.tr.AvailableBytes()) / float64(a.tr.RingSize())
	switch {
	case fill > highWater && !a.frozen.Load():
		a.frozen.Store(true)
	case fill < lowWater && a.frozen.Load():
		a.frozen.Store(false)
	default:
		return
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// pressure applies freeze and thaw decisions one at a time, so a thaw can
// never be overtaken by an older freeze. While frozen it also watches the
// ring itself: once the reader has emptied it there are no records left to
// trigger checkPressure.
func (a *syscallAudit) pressure() {
	applied := false
	for {
		var tick <-chan time.Time
		if a.frozen.Load() {
			tick = time.After(5 * time.Millisecond)
		}
		select {
		case <-a.done:
			return
		case <-a.kick:
		case <-tick:
			if float64(a.tr.AvailableBytes())/float64(a.tr.RingSize()) < lowWater {
				a.frozen.Store(false)
			}
		}
		want := a.frozen.Load()
		if want == applied && !want {
			continue
		}
		a.mu.RLock()
		groups := make([]*cgroup.Group, 0, len(a.execs))
		for _, te := range a.execs {
			if !want || te.freezable.Load() {
				groups = append(groups, te.grp)
			}
		}
		a.mu.RUnlock()
		for _, g := range groups {
			if err := g.SetFrozen(want); err != nil {
				a.slg.Debug("back-pressure", "freeze", want, "err", err)
			}
		}
		applied = want
	}
}

func (a *syscallAudit) read() {
	defer close(a.done)
	var scratch recordScratch
	err := a.tr.Read(func(ev *bpf.Event) error {
		a.busy.Store(true)
		defer func() {
			if n := a.handled.Add(1); n%pressureEvery == 0 || a.frozen.Load() {
				a.checkPressure()
			}
			a.busy.Store(false)
		}()
		a.mu.RLock()
		te := a.execs[ev.Header.Cookie]
		a.mu.RUnlock()
		if te == nil {
			return nil // untracked meanwhile
		}
		a.countProcesses(te, ev)
		r, keep := a.convert(te, ev, &scratch)
		te.resolver.Observe(ev)
		if !keep {
			return nil
		}
		te.events.Add(1)
		if err := a.log.Append(r); err != nil {
			a.slg.Error("audit append", "err", err)
		}
		return nil
	})
	if err != nil {
		a.slg.Error("syscall audit reader stopped", "err", err)
	}
}

// commString returns comm as a string, allocating only when it changed.
func (te *tracedExec) commString(comm *[16]byte) string {
	if *comm != te.comm || te.commStr == "" {
		te.comm = *comm
		te.commStr = bpf.CString(comm[:])
	}
	return te.commStr
}

// commandRunning marks te's command as started: back-pressure may freeze it now.
func (te *tracedExec) commandRunning() { te.freezable.Store(true) }

// countProcesses keeps te.live and closes te.gone when the last process
// of the exec has exited.
func (a *syscallAudit) countProcesses(te *tracedExec, ev *bpf.Event) {
	switch ev.Kind() {
	case bpf.KindFork:
		if ev.Fork.ChildTid == ev.Fork.ChildPid {
			te.live++
			te.seenFork = true
		}
	case bpf.KindExit:
		if bpf.Flag(ev.Header.Flags)&bpf.FlagGroupDead != 0 {
			te.live--
			if te.seenFork && te.live <= 0 {
				te.goneOnce.Do(func() { close(te.gone) })
			}
		}
	}
}

// convert turns one event into a record. Events of the init helper before
// it executes the command are its own setup (mounts, Landlock, seccomp):
// they are left out, and the record stream starts with the command's exec.
//
// The record is scratch's, valid until the next call: at hundreds of
// thousands of events a second, a heap record per event cost more than
// encoding it (see BenchmarkSyscallRecord). Nothing keeps it after
// audit.Log.Append returns.
func (a *syscallAudit) convert(te *tracedExec, ev *bpf.Event, scratch *recordScratch) (*audit.Record, bool) {
	h := ev.Header
	if !te.started {
		// The first exec is the daemon starting its init helper
		// (/proc/self/exe) in the cgroup, the second the helper executing
		// the command.
		if ev.Kind() != bpf.KindExec {
			return nil, false
		}
		if te.execs++; te.execs < 2 {
			return nil, false
		}
		te.started = true
	}
	r := &scratch.rec
	*r = te.base
	scratch.arena = scratch.arena[:0]
	r.Timestamp = a.clock(h.Ts)
	r.UID = h.Uid
	r.PID, r.PPID = int(h.Pid), int(h.Ppid)
	if h.Tid != h.Pid {
		r.TID = int(h.Tid)
	}
	r.Comm = te.commString(&h.Comm)
	r.Result = audit.ResultSuccess
	switch ev.Kind() {
	case bpf.KindFork:
		r.Action = audit.ActionProcessFork
		r.PID, r.PPID = int(ev.Fork.ChildPid), int(h.Pid)
		if ev.Fork.ChildTid != ev.Fork.ChildPid {
			return nil, false // a new thread, not a process
		}
		return r, true
	case bpf.KindExec:
		r.Action = audit.ActionProcessExec
		r.Resource = ev.Exec.FilenameString()
		r.Details = audit.ProcessDetails{Path: r.Resource}
		return r, true
	case bpf.KindExit:
		if h.Tid != h.Pid {
			return nil, false // thread exits: the syscall records cover them
		}
		r.Action = audit.ActionProcessExit
		code := int(ev.Exit.ExitCode)
		d := audit.ProcessDetails{}
		if sig := code & 0x7f; sig != 0 {
			d.Signal = strconv.Itoa(sig)
			r.Result = audit.ResultError
		} else {
			c := code >> 8
			d.ExitCode = &c
			if c != 0 {
				r.Result = audit.ResultError
			}
		}
		r.Details = d
		return r, true
	}
	sc := ev.Syscall
	if sc == nil {
		return nil, false
	}
	r.Syscall = sc.Name()
	r.Arch = archName(bpf.Arch(h.Arch))
	r.Ret = sc.Ret
	if sc.Ret < 0 && sc.Ret >= -4095 {
		r.Errno = bpf.ErrnoName(sc.Ret)
		r.Result = resultFor(r.Errno)
	}
	switch ev.Kind() {
	case bpf.KindPath:
		if p, ok := te.resolver.Resolve(ev, 0); ok {
			r.Resource = p
		} else if p, ok := ev.Path.PathString(0); ok {
			r.Resource = p
		}
		r.Args = scratch.rawArgs(sc)
		if p, ok := te.resolver.Resolve(ev, 1); ok {
			r.Args = append(r.Args, "path2="+p)
		}
	case bpf.KindExecve:
		if f, ok := ev.Execve.Filename(); ok {
			r.Resource = f
		}
		r.Args = ev.Execve.ArgvStrings(nil) // kept in Details: its own
		r.Details = execveDetails(r.Syscall, r.Resource, sc, r.Args)
	case bpf.KindSockaddr:
		r.Resource = formatSockaddr(ev.Sockaddr.Addr())
		r.Args = scratch.rawArgs(sc)
	default:
		r.Args = scratch.rawArgs(sc)
	}
	return r, true
}

// resultFor classifies a failure: refusals by a permission check (file
// modes, Landlock, seccomp, a read-only protected mount) are "denied".
func resultFor(errno string) string {
	switch errno {
	case "EPERM", "EACCES", "EROFS":
		return audit.ResultDenied
	}
	return audit.ResultError
}

func archName(a bpf.Arch) string {
	switch a {
	case bpf.ArchX86_64:
		return "x86_64"
	case bpf.ArchI386:
		return "i386"
	case bpf.ArchX32:
		return "x32"
	}
	return "unknown"
}

// recordScratch is the reader's reusable record and the bytes its
// argument strings point into.
type recordScratch struct {
	rec   audit.Record
	args  [7]string // six registers and a second path
	arena []byte
}

// rawArgs renders the argument registers the syscall uses (see
// bpf.SyscallArgs) into strings that share the scratch arena, so they cost
// no allocation. They are valid until the next record.
func (s *recordScratch) rawArgs(sc *bpf.Syscall) []string {
	if cap(s.arena) < 6*20 {
		s.arena = make([]byte, 0, 256)
	}
	out := s.args[:sc.NArgs()]
	for i := range out {
		start := len(s.arena)
		v := sc.Args[i]
		if v > 0xffff {
			s.arena = append(s.arena, '0', 'x')
			s.arena = strconv.AppendUint(s.arena, v, 16)
		} else {
			s.arena = strconv.AppendUint(s.arena, v, 10)
		}
		// The arena never reallocates within a record (its capacity
		// holds six 18-byte numbers), so earlier strings stay intact.
		out[i] = unsafe.String(&s.arena[start], len(s.arena)-start)
	}
	return out
}

// formatSockaddr renders AF_INET, AF_INET6 and AF_UNIX addresses.
func formatSockaddr(b []byte) string {
	if len(b) < 2 {
		return ""
	}
	family := uint16(b[0]) | uint16(b[1])<<8
	switch family {
	case 1: // AF_UNIX
		p := b[2:]
		if len(p) > 0 && p[0] == 0 {
			return "unix:@" + bpf.CString(p[1:])
		}
		return "unix:" + bpf.CString(p)
	case 2: // AF_INET
		if len(b) >= 8 {
			port := int(b[2])<<8 | int(b[3])
			return fmt.Sprintf("%d.%d.%d.%d:%d", b[4], b[5], b[6], b[7], port)
		}
	case 10: // AF_INET6
		if len(b) >= 24 {
			port := int(b[2])<<8 | int(b[3])
			return fmt.Sprintf("[%x]:%d", b[8:24], port)
		}
	}
	return "family " + strconv.Itoa(int(family))
}

// execveDetails marks programs that do not come from a file the agent can
// be held to: an anonymous memory file (memfd_create + execveat with an
// empty path), or a program started through the dynamic loader (ld.so
// /path/prog), where the real program is an argument.
func execveDetails(name, filename string, sc *bpf.Syscall, argv []string) any {
	const atEmptyPath = 0x1000
	switch {
	case strings.HasPrefix(filename, "/memfd:"),
		name == "execveat" && filename == "" && sc.Args[4]&atEmptyPath != 0:
		return map[string]any{"memfd": true}
	case strings.HasPrefix(path.Base(filename), "ld-linux") || strings.HasPrefix(path.Base(filename), "ld.so"):
		d := map[string]any{"loader": true}
		for _, a := range argv[min(1, len(argv)):] {
			if !strings.HasPrefix(a, "-") {
				d["program"] = a
				break
			}
		}
		return d
	}
	return nil
}
