package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"golang.org/x/sys/unix"
)

const (
	unifiedMount = "/sys/fs/cgroup"
	hybridMount  = "/sys/fs/cgroup/unified"

	// deleteTimeout bounds how long Delete and CleanupStale wait for killed processes to
	// exit. SIGKILLed tasks leave within milliseconds unless stuck in uninterruptible sleep.
	deleteTimeout = 5 * time.Second
	// freezeTimeout bounds how long Freeze waits for every task to stop.
	freezeTimeout = 2 * time.Second
)

// Manager creates and removes the per-exec groups under one root. One per daemon.
type Manager struct {
	mode    Mode
	root    string
	v2Mount string
	v2Root  string
	// v1 maps a v1 controller to its mount point (hybrid only).
	v1 map[string]string
	// groupCtrls are the v1 controllers each exec group joins, in AddProc order (hybrid only).
	groupCtrls []string

	hasKill    bool // cgroup.kill, kernel 5.14
	hasFreeze  bool // cgroup.freeze, kernel 5.2
	hasCPUStat bool // cpu.stat in a controller-less cgroup2 group, kernel 5.x
}

// New detects the host's cgroup layout, creates root (e.g. "deputy") as a top-level group
// in every hierarchy it uses and checks that groups can be created under it. It returns an
// error wrapping ErrNotSupported when the host cannot give the promised guarantees.
func New(root string) (*Manager, error) {
	if err := validRoot(root); err != nil {
		return nil, err
	}
	m := &Manager{root: root}
	switch cgroups.Mode() {
	case cgroups.Unified:
		m.mode, m.v2Mount = Unified, unifiedMount
	case cgroups.Hybrid:
		m.mode, m.v2Mount = Hybrid, hybridMount
	case cgroups.Legacy:
		// Without cgroup2 there is no CLONE_INTO_CGROUP target and no cgroup id for eBPF:
		// the exec would run briefly outside its limits and its events could not be told apart.
		return nil, fmt.Errorf("cgroup v1 without a cgroup2 mount: %w", ErrNotSupported)
	default:
		return nil, fmt.Errorf("no cgroup filesystem at %s: %w", unifiedMount, ErrNotSupported)
	}
	m.v2Root = filepath.Join(m.v2Mount, root)

	var err error
	if m.mode == Unified {
		err = m.setupUnified()
	} else {
		err = m.setupHybrid()
	}
	if err != nil {
		return nil, err
	}
	if err := m.probe(); err != nil {
		return nil, err
	}
	if m.mode == Hybrid {
		m.groupCtrls = slices.Clone(v1LimitControllers)
		// cpuacct is only needed for Stats when the cgroup2 group has no cpu.stat of its own.
		if _, ok := m.v1["cpuacct"]; ok && !m.hasCPUStat {
			m.groupCtrls = append(m.groupCtrls, "cpuacct")
		}
		// The v1 freezer is only needed for Freeze and the kill loop on kernels without cgroup.freeze.
		if _, ok := m.v1["freezer"]; ok && !m.hasFreeze {
			m.groupCtrls = append(m.groupCtrls, "freezer")
		}
		for _, c := range m.groupCtrls {
			if err := mkdirAll(filepath.Join(m.v1[c], root)); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// setupUnified creates the root and enables memory, pids and cpu for its children at every
// level from the mount down: a cgroup2 controller only reaches a group if every ancestor
// lists it in cgroup.subtree_control.
func (m *Manager) setupUnified() error {
	avail, err := os.ReadFile(filepath.Join(m.v2Mount, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read cgroup2 controllers: %w", err)
	}
	for _, c := range v1LimitControllers {
		if !slices.Contains(strings.Fields(string(avail)), c) {
			return fmt.Errorf("cgroup2 controller %s not available at %s: %w", c, m.v2Mount, ErrNotSupported)
		}
	}
	dir := m.v2Mount
	for _, part := range append([]string{""}, strings.Split(m.root, "/")...) {
		if part != "" {
			dir = filepath.Join(dir, part)
			if err := mkdirAll(dir); err != nil {
				return err
			}
		}
		if err := enableControllers(dir, v1LimitControllers); err != nil {
			return err
		}
	}
	return nil
}

func enableControllers(dir string, ctrls []string) error {
	p := filepath.Join(dir, "cgroup.subtree_control")
	cur, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	var add []string
	for _, c := range ctrls {
		if !slices.Contains(strings.Fields(string(cur)), c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := writeFile(p, strings.Join(add, " ")); err != nil {
		if errors.Is(err, unix.EBUSY) {
			// The "no internal processes" rule: a non-root group that holds processes
			// cannot hand controllers to its children.
			return fmt.Errorf("%w (processes live directly in %s; move them to a leaf group)", err, dir)
		}
		return err
	}
	return nil
}

func (m *Manager) setupHybrid() error {
	if err := mkdirAll(m.v2Root); err != nil {
		return err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	m.v1 = parseV1Mounts(mi)
	for _, c := range v1LimitControllers {
		if _, ok := m.v1[c]; !ok {
			return fmt.Errorf("cgroup v1 controller %s not mounted: %w", c, ErrNotSupported)
		}
	}
	return nil
}

// probe creates and removes a throwaway group, which both proves that groups can be
// created (the root may pre-exist from an earlier run) and shows which cgroup2 interface
// files this kernel has in a non-root group.
func (m *Manager) probe() error {
	dir := filepath.Join(m.v2Root, "probe-"+strconv.Itoa(os.Getpid()))
	if err := mkdir(dir); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	defer os.Remove(dir)
	m.hasKill = exists(filepath.Join(dir, "cgroup.kill"))
	m.hasFreeze = exists(filepath.Join(dir, "cgroup.freeze"))
	m.hasCPUStat = exists(filepath.Join(dir, "cpu.stat"))
	if !m.hasFreeze {
		// cgroup.freeze (5.2) predates CLONE_INTO_CGROUP (5.7): without it the kernel is too
		// old to place a process in a group before it runs.
		return fmt.Errorf("cgroup2 without cgroup.freeze (kernel < 5.2, no CLONE_INTO_CGROUP): %w", ErrNotSupported)
	}
	return os.Remove(dir)
}

// Mode returns the detected cgroup layout.
func (m *Manager) Mode() Mode { return m.mode }

// Describe says in one line how limits, ids and kill are implemented on this host, for logs
// and `deputy doctor`.
func (m *Manager) Describe() string {
	kill := "cgroup.kill"
	if !m.hasKill {
		kill = "freeze+SIGKILL"
	}
	return describe(m.mode, m.v2Mount, m.v1, kill)
}

// Group is the cgroup of one exec.
type Group struct {
	m    *Manager
	name string
	v2   string
	// v1 maps each joined v1 controller to its group directory (hybrid only).
	v1 map[string]string
	id uint64

	mu      sync.Mutex
	fd      int
	deleted bool
}

// Create makes the group name (e.g. "exec-<id>") with limits l. The limits are in place
// before Create returns, so a process cloned into FD() (and, on hybrid, moved by AddProc
// before it runs user code) never runs unlimited.
func (m *Manager) Create(name string, l Limits) (_ *Group, err error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if err := l.Validate(); err != nil {
		return nil, err
	}
	g := &Group{m: m, name: name, v2: filepath.Join(m.v2Root, name), v1: map[string]string{}, fd: -1}
	if err := mkdir(g.v2); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			g.closeFD()
			_ = g.rmdirAll(time.Now())
		}
	}()
	for _, c := range m.groupCtrls {
		g.v1[c] = filepath.Join(m.v1[c], m.root, name)
	}
	for _, dir := range g.v1Dirs() {
		if err := mkdir(dir); err != nil {
			return nil, err
		}
	}
	settings := v2Settings(l)
	if m.mode == Hybrid {
		settings = v1Settings(l)
	}
	for _, s := range settings {
		p := filepath.Join(g.limitDir(s.ctrl), s.file)
		if s.optional && !exists(p) {
			continue
		}
		if err := writeFile(p, s.value); err != nil {
			return nil, err
		}
	}
	// O_PATH is enough for CLONE_INTO_CGROUP (the kernel takes the fd with fget_raw) and
	// grants no read or write access to anyone the fd might leak to.
	fd, err := unix.Open(g.v2, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: g.v2, Err: err}
	}
	g.fd = fd
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: g.v2, Err: err}
	}
	// A cgroup2 directory's inode number is its cgroup id (kernfs uses the id as ino on
	// 64-bit), which is what bpf_get_current_cgroup_id returns for tasks inside it.
	g.id = st.Ino
	return g, nil
}

// limitDir is where ctrl's files live: the v1 group on hybrid, the cgroup2 group otherwise.
func (g *Group) limitDir(ctrl string) string {
	if d, ok := g.v1[ctrl]; ok {
		return d
	}
	return g.v2
}

// v1Dirs lists the distinct v1 group directories (co-mounted controllers share one).
func (g *Group) v1Dirs() []string {
	var dirs []string
	for _, c := range g.m.groupCtrls {
		if d := g.v1[c]; !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// FD returns an O_PATH fd of the cgroup2 directory for SysProcAttr.CgroupFD, or -1 after
// Close or Delete.
func (g *Group) FD() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fd
}

// ID returns the cgroup2 id, as bpf_get_current_cgroup_id reports it.
func (g *Group) ID() uint64 { return g.id }

// Path returns the cgroup2 directory.
func (g *Group) Path() string { return g.v2 }

// Name returns the group's name under the root.
func (g *Group) Name() string { return g.name }

// Close releases FD once the process has been started; the group itself stays.
func (g *Group) Close() error {
	g.closeFD()
	return nil
}

func (g *Group) closeFD() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
}

// AddProc moves pid into the v1 groups that carry the limits. On hybrid hosts it must run
// before pid runs any user code: until then the process is only in the controller-less
// cgroup2 group and nothing limits it. On unified hosts it does nothing, since the process
// was cloned straight into the limited group.
func (g *Group) AddProc(pid int) error {
	if g.m.mode != Hybrid {
		return nil
	}
	for _, dir := range g.v1Dirs() {
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
	}
	return nil
}

// Kill sends SIGKILL to every process in the group. It does not wait: see WaitEmpty.
// On hybrid hosts a process gets into the v1 groups only through AddProc, after its clone
// into the cgroup2 group, so killing the cgroup2 group reaches every process of the exec;
// rmdirAll deals with one that root moved out of it.
func (g *Group) Kill() error {
	if g.m.hasKill {
		// cgroup.kill (5.14) kills the whole subtree atomically: no fork can escape it.
		if err := writeFile(filepath.Join(g.v2, "cgroup.kill"), "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	return killLoop(g.v2, g.freezeFuncs(), time.Now().Add(deleteTimeout))
}

// freezer is how the kill loop stops a group from forking while it is signalled.
type freezer struct{ freeze, thaw func() error }

func (g *Group) freezeFuncs() *freezer {
	return &freezer{freeze: g.Freeze, thaw: g.Thaw}
}

// killLoop is the kill fallback without cgroup.kill: freeze so that nothing forks between
// reading cgroup.procs and signalling, SIGKILL every pid, thaw so that the signals are
// acted on, and repeat until the group (with its subgroups) is empty.
func killLoop(dir string, fz *freezer, deadline time.Time) error {
	for {
		pids, err := procsTree(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill processes in %s: %d left after %v", dir, len(pids), deleteTimeout)
		}
		if fz != nil {
			_ = fz.freeze()
		}
		for _, pid := range pids {
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && err != unix.ESRCH {
				return os.NewSyscallError("kill", err)
			}
		}
		if fz != nil {
			_ = fz.thaw()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procsTree returns the pids in dir and all of its subgroups.
func procsTree(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != dir {
				return nil
			}
			return err
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids, err
}

// OOMKilled reports whether the kernel OOM-killed a process of the group for exceeding its
// memory limit.
func (g *Group) OOMKilled() (bool, error) {
	if g.m.mode == Unified {
		ev, err := readKeyed(filepath.Join(g.v2, "memory.events"))
		if err != nil {
			return false, err
		}
		return ev["oom_kill"] > 0, nil
	}
	dir := g.limitDir("memory")
	oc, err := readKeyed(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return false, err
	}
	if n, ok := oc["oom_kill"]; ok {
		return n > 0, nil
	}
	// Before 4.13 v1 has no oom_kill counter; failcnt counts hits of the limit, which
	// over-reports (reclaim may have succeeded) but never misses an OOM kill.
	fc, err := os.ReadFile(filepath.Join(dir, "memory.failcnt"))
	if err != nil {
		return false, err
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(fc)), 10, 64)
	return n > 0, nil
}

// Stats returns the group's memory peak and CPU time, best effort: values the kernel does
// not expose (memory.peak before 5.19) are left zero.
func (g *Group) Stats() (Usage, error) {
	var u Usage
	peakFile := filepath.Join(g.v2, "memory.peak")
	if g.m.mode == Hybrid {
		peakFile = filepath.Join(g.limitDir("memory"), "memory.max_usage_in_bytes")
	}
	if b, err := os.ReadFile(peakFile); err == nil {
		u.MemoryPeakBytes, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return u, err
	}
	if g.m.hasCPUStat {
		st, err := readKeyed(filepath.Join(g.v2, "cpu.stat"))
		if err != nil {
			return u, err
		}
		u.CPUUser = time.Duration(st["user_usec"]) * time.Microsecond
		u.CPUSystem = time.Duration(st["system_usec"]) * time.Microsecond
	} else if d, ok := g.v1["cpuacct"]; ok {
		st, err := readKeyed(filepath.Join(d, "cpuacct.stat"))
		if err != nil {
			return u, err
		}
		// cpuacct.stat counts USER_HZ ticks, 100 per second on every Linux ABI.
		u.CPUUser = time.Duration(st["user"]) * 10 * time.Millisecond
		u.CPUSystem = time.Duration(st["system"]) * 10 * time.Millisecond
	}
	return u, nil
}

// Freeze stops every task in the group and waits, up to 2s, until all are stopped.
func (g *Group) Freeze() error {
	if g.m.hasFreeze {
		if err := writeFile(filepath.Join(g.v2, "cgroup.freeze"), "1"); err != nil {
			return err
		}
		return waitFor(freezeTimeout, func() (bool, error) {
			ev, err := readKeyed(filepath.Join(g.v2, "cgroup.events"))
			return ev["frozen"] == 1, err
		}, "freeze "+g.v2)
	}
	dir, ok := g.v1["freezer"]
	if !ok {
		return fmt.Errorf("freeze %s: no cgroup.freeze and no v1 freezer: %w", g.v2, ErrNotSupported)
	}
	state := filepath.Join(dir, "freezer.state")
	if err := writeFile(state, "FROZEN"); err != nil {
		return err
	}
	return waitFor(freezeTimeout, func() (bool, error) {
		b, err := os.ReadFile(state)
		return strings.TrimSpace(string(b)) == "FROZEN", err
	}, "freeze "+dir)
}

// SetFrozen asks the kernel to freeze or thaw the group's tasks and returns
// at once, without waiting for them to stop: for the audit's
// back-pressure, where a thaw must never wait behind a slow freeze.
func (g *Group) SetFrozen(frozen bool) error {
	if g.m.hasFreeze {
		v := "0"
		if frozen {
			v = "1"
		}
		return writeFile(filepath.Join(g.v2, "cgroup.freeze"), v)
	}
	dir, ok := g.v1["freezer"]
	if !ok {
		return fmt.Errorf("freeze %s: no cgroup.freeze and no v1 freezer: %w", g.v2, ErrNotSupported)
	}
	v := "THAWED"
	if frozen {
		v = "FROZEN"
	}
	return writeFile(filepath.Join(dir, "freezer.state"), v)
}

// Thaw resumes the group's tasks.
func (g *Group) Thaw() error {
	if g.m.hasFreeze {
		return writeFile(filepath.Join(g.v2, "cgroup.freeze"), "0")
	}
	dir, ok := g.v1["freezer"]
	if !ok {
		return fmt.Errorf("thaw %s: no cgroup.freeze and no v1 freezer: %w", g.v2, ErrNotSupported)
	}
	return writeFile(filepath.Join(dir, "freezer.state"), "THAWED")
}

// Empty reports whether no process is left in the group or its subgroups. A removed group
// is empty.
func (g *Group) Empty() (bool, error) {
	return populatedZero(g.v2)
}

func populatedZero(dir string) (bool, error) {
	ev, err := readKeyed(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true, nil
		}
		return false, err
	}
	return ev["populated"] == 0, nil
}

// WaitEmpty blocks until the group is empty or ctx ends.
func (g *Group) WaitEmpty(ctx context.Context) error {
	return waitEmpty(ctx, g.v2)
}

// waitEmpty waits for "populated 0" in dir's cgroup.events. The kernel signals every change
// of that file as an inotify IN_MODIFY; the 50ms poll timeout only bounds how late ctx is
// noticed, and keeps things working if inotify is unavailable.
func waitEmpty(ctx context.Context, dir string) error {
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err == nil {
		defer unix.Close(ifd)
		if _, err := unix.InotifyAddWatch(ifd, filepath.Join(dir, "cgroup.events"), unix.IN_MODIFY); err != nil {
			unix.Close(ifd)
			ifd = -1
		}
	} else {
		ifd = -1
	}
	buf := make([]byte, 4096)
	for {
		// Check after arming the watch so that a change between the two is not missed.
		empty, err := populatedZero(dir)
		if err != nil {
			return err
		}
		if empty {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for %s to empty: %w", dir, err)
		}
		if ifd < 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		fds := []unix.PollFd{{Fd: int32(ifd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 50); err != nil && err != unix.EINTR {
			return os.NewSyscallError("poll", err)
		}
		for {
			if _, err := unix.Read(ifd, buf); err != nil {
				break
			}
		}
	}
}

// Delete kills what is left in the group, waits (bounded) for it to empty, removes its
// directories in every hierarchy and closes FD. Deleting a deleted group does nothing.
func (g *Group) Delete() error {
	g.mu.Lock()
	deleted := g.deleted
	g.mu.Unlock()
	if deleted {
		return nil
	}
	deadline := time.Now().Add(deleteTimeout)
	var errs []error
	if err := g.Kill(); err != nil {
		errs = append(errs, err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := g.WaitEmpty(ctx); err != nil {
		errs = append(errs, err)
	}
	g.closeFD()
	if err := g.rmdirAll(deadline); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", g.name, err)
	}
	g.mu.Lock()
	g.deleted = true
	g.mu.Unlock()
	return nil
}

func (g *Group) rmdirAll(deadline time.Time) error {
	var errs []error
	if err := rmdir(g.v2, deadline); err != nil {
		errs = append(errs, err)
	}
	for _, d := range g.v1Dirs() {
		// Normally empty already (see Kill). A group still busy holds a process that is
		// not in the cgroup2 group, or a subgroup: kill what is there, then remove.
		if unix.Rmdir(d) == unix.EBUSY {
			if err := killLoop(d, nil, deadline); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := rmdir(d, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rmdir removes a group directory. EBUSY is retried until deadline: a killed task keeps its
// group busy for a moment after the populated count drops.
func rmdir(dir string, deadline time.Time) error {
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil || err == unix.ENOENT:
			return nil
		case err == unix.EBUSY && time.Now().Before(deadline):
			time.Sleep(10 * time.Millisecond)
		default:
			return &os.PathError{Op: "rmdir", Path: dir, Err: err}
		}
	}
}

// CleanupStale kills the processes in, and removes, every group under the root left by a
// daemon that crashed: the cgroup2 tree first (cgroup.kill reaches every process there),
// then the v1 trees. It returns how many distinct groups were removed. Call it at daemon
// start, before Create.
func (m *Manager) CleanupStale() (removed int, err error) {
	names := map[string]bool{}
	var errs []error
	roots := []string{m.v2Root}
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct", "freezer"} {
		if mnt, ok := m.v1[c]; ok {
			if d := filepath.Join(mnt, m.root); !slices.Contains(roots, d) {
				roots = append(roots, d)
			}
		}
	}
	deadline := time.Now().Add(deleteTimeout)
	for i, root := range roots {
		entries, err := os.ReadDir(root)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			if err := removeTree(filepath.Join(root, e.Name()), i == 0 && m.hasKill, deadline); err != nil {
				errs = append(errs, err)
				continue
			}
			names[e.Name()] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return len(names), fmt.Errorf("clean up stale cgroups under %s: %w", m.root, err)
	}
	return len(names), nil
}

// removeTree kills every process under dir and removes dir and its subgroups, deepest first.
func removeTree(dir string, useKill bool, deadline time.Time) error {
	if useKill {
		if err := writeFile(filepath.Join(dir, "cgroup.kill"), "1"); err != nil {
			return err
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := waitEmpty(ctx, dir)
		cancel()
		if err != nil {
			return err
		}
	}
	if err := killLoop(dir, nil, deadline); err != nil {
		return err
	}
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := rmdir(d, deadline); err != nil {
			return err
		}
	}
	return nil
}

// removeRoot removes the (empty) root directories; for tests.
func (m *Manager) removeRoot() error {
	var errs []error
	dirs := []string{m.v2Root}
	for _, c := range m.groupCtrls {
		if d := filepath.Join(m.v1[c], m.root); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := rmdir(d, time.Now().Add(time.Second)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func waitFor(timeout time.Duration, done func() (bool, error), what string) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := done()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not done after %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// writeFile writes one value into an existing cgroup file. os.WriteFile is not used: its
// O_CREAT would turn a missing file into a misleading permission error.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

func readKeyed(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKeyed(b), nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// mkdir creates one group. Permission and read-only errors mean this daemon cannot manage
// cgroups here at all (unprivileged, or a container without delegation).
func mkdir(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
		return fmt.Errorf("create cgroup: %w: %w", err, ErrNotSupported)
	}
	return err
}

func mkdirAll(dir string) error {
	err := os.MkdirAll(dir, 0o755)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
		return fmt.Errorf("create cgroup: %w: %w", err, ErrNotSupported)
	}
	return err
}
