package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deputyhq/deputy/sandbox/sandboxtest"
)

// TestMain fails the package on leaked fds, goroutines or child processes.
func TestMain(m *testing.M) {
	// Start the runtime's lazily created fds (netpoller) before counting.
	_ = exec.Command("/bin/true").Run()
	fds, gor := countFDs(), runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		time.Sleep(50 * time.Millisecond) // let finished goroutines exit
		if n := countFDs(); n > fds {
			fmt.Fprintf(os.Stderr, "leaked %d file descriptors\n", n-fds)
			code = 1
		}
		if n := runtime.NumGoroutine(); n > gor {
			fmt.Fprintf(os.Stderr, "leaked %d goroutines\n", n-gor)
			code = 1
		}
		var ws syscall.WaitStatus
		if pid, _ := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid > 0 {
			fmt.Fprintf(os.Stderr, "leaked child process %d\n", pid)
			code = 1
		}
	}
	os.Exit(code)
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

// cgroup2Mount finds the cgroup2 hierarchy: /sys/fs/cgroup on unified
// hosts, /sys/fs/cgroup/unified on hybrid ones.
func cgroup2Mount(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// id parent maj:min root mountpoint opts [optional...] - fstype src opts
		fields := strings.Fields(s.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				return fields[4]
			}
		}
	}
	sandboxtest.Skip(t, "no cgroup2 hierarchy mounted")
	return ""
}

// testCgroup creates a cgroup2 group and returns its id (the directory's
// inode number) and an open fd for CLONE_INTO_CGROUP.
func testCgroup(t *testing.T) (id uint64, fd int) {
	t.Helper()
	dir := filepath.Join(cgroup2Mount(t), fmt.Sprintf("deputy-bpf-test-%d-%s", os.Getpid(), t.Name()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino, int(f.Fd())
}

// record is a copy of the fields of an Event that the tests check.
type record struct {
	kind         Kind
	hdr          Header
	name         string
	nr           uint32
	ret          int64
	paths        []string
	argv         []string
	filename     string
	childPid     uint32
	exitCode     int32
	flags        Flag
	cgroup       uint64
	cookie       uint64
	pid, tid     uint32
	comm         string
	sockaddrSize int
}

func copyEvent(ev *Event) record {
	r := record{
		kind: ev.Kind(), hdr: *ev.Header, flags: Flag(ev.Header.Flags),
		cgroup: ev.Header.CgroupId, cookie: ev.Header.Cookie,
		pid: ev.Header.Pid, tid: ev.Header.Tid, comm: ev.Header.CommString(),
	}
	if ev.Syscall != nil {
		r.name, r.nr, r.ret = ev.Syscall.Name(), ev.Syscall.Nr, ev.Syscall.Ret
	}
	switch {
	case ev.Path != nil:
		for i := range 2 {
			if p, ok := ev.Path.PathString(i); ok {
				r.paths = append(r.paths, p)
			}
		}
	case ev.Execve != nil:
		r.filename, _ = ev.Execve.Filename()
		r.argv = ev.Execve.ArgvStrings(nil)
	case ev.Sockaddr != nil:
		r.sockaddrSize = len(ev.Sockaddr.Addr())
	case ev.Fork != nil:
		r.childPid = ev.Fork.ChildPid
	case ev.Exec != nil:
		r.filename = ev.Exec.FilenameString()
	case ev.Exit != nil:
		r.exitCode = ev.Exit.ExitCode
	}
	return r
}

// traceCommand runs cmd in a fresh tracked cgroup and returns every record
// of the group, read until its first process has exited.
func traceCommand(t *testing.T, tr *Tracer, cmd *exec.Cmd, keep func(*Event) bool) (recs []record, lost uint64) {
	t.Helper()
	id, fd := testCgroup(t)
	const cookie = 0xdeadbeef
	if err := tr.Track(id, cookie); err != nil {
		t.Fatal(err)
	}
	// CLONE_INTO_CGROUP: the child is in the tracked group from its first
	// instruction, as the daemon starts commands.
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	var (
		mu      sync.Mutex
		started = make(chan int, 1)
		readErr = make(chan error, 1)
	)
	go func() {
		pid := -1
		readErr <- tr.Read(func(ev *Event) error {
			if ev.Header.CgroupId != id {
				return fmt.Errorf("record of cgroup %d, tracking only %d", ev.Header.CgroupId, id)
			}
			if keep == nil || keep(ev) {
				mu.Lock()
				recs = append(recs, copyEvent(ev))
				mu.Unlock()
			}
			if pid < 0 && ev.Exit != nil {
				// An exit can beat cmd.Start's return; wait for the pid.
				pid = <-started
			}
			if ev.Exit != nil && int(ev.Header.Pid) == pid && Flag(ev.Header.Flags)&FlagGroupDead != 0 {
				return errStop // the group is gone: stop reading
			}
			return nil
		})
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started <- cmd.Process.Pid
	if err := cmd.Wait(); err != nil {
		t.Errorf("command: %v", err)
	}
	select {
	case err := <-readErr:
		if err != errStop {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit record for the command")
	}
	lost, err := tr.Untrack(id)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return recs, lost
}

var errStop = errors.New("stop")

func loadTracer(t *testing.T) *Tracer {
	t.Helper()
	sandboxtest.RequireRoot(t)
	tr, err := Load(Options{RingSize: 64 << 20})
	if errors.Is(err, ErrNotSupported) {
		sandboxtest.Skip(t, "kernel cannot run the tracer: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return tr
}

func TestProbe(t *testing.T) {
	err := Probe()
	if os.Geteuid() != 0 {
		if !errors.Is(err, os.ErrPermission) {
			t.Errorf("Probe as uid %d = %v, want a permission error", os.Geteuid(), err)
		}
		return
	}
	if errors.Is(err, ErrNotSupported) {
		sandboxtest.Skip(t, "kernel cannot run the tracer: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestTraceShell(t *testing.T) {
	tr := loadTracer(t)
	script := "cat /etc/hostname >/dev/null; ls /nonexistent; cd /usr && cat ./share/../lib/os-release >/dev/null; exit 0"
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = "/etc"
	res := NewResolver(cmd.Dir)
	resolved := map[string]bool{}
	recs, lost := traceCommand(t, tr, cmd, func(ev *Event) bool {
		if ev.Path != nil && ev.Syscall.Ret >= 0 {
			if p, ok := res.Resolve(ev, 0); ok {
				resolved[p] = true
			}
		}
		res.Observe(ev)
		return true
	})
	if !resolved["/usr/lib/os-release"] {
		t.Errorf("./share/../lib/os-release in /usr not resolved; resolved: %v", resolved)
	}
	if lost != 0 {
		t.Errorf("lost %d records", lost)
	}
	self := uint32(os.Getpid())
	var execSh, openHostname, enoent, forks, execs, exits, groupExit bool
	for _, r := range recs {
		if d := time.Since(tr.Time(r.hdr.Ts)); d < 0 || d > time.Minute {
			t.Errorf("record time %v is %v from now", tr.Time(r.hdr.Ts), d)
		}
		if r.cookie != 0xdeadbeef {
			t.Errorf("record %+v: cookie %#x", r, r.cookie)
		}
		// The fork record of the first process describes its parent
		// (this test); every other record is the cgroup's own.
		if r.pid == self && r.kind != KindFork {
			t.Errorf("record of the test process itself: %+v", r)
		}
		// rt_sigreturn (sh handles SIGCHLD) must not show up as nr -1.
		if r.kind <= KindSockaddr && r.name == "" {
			t.Errorf("syscall record without a name: nr %d", r.nr)
		}
		switch r.kind {
		case KindExecve:
			if r.filename == "/bin/sh" && r.ret == 0 && strings.Join(r.argv, "\x00") == "/bin/sh\x00-c\x00"+script {
				execSh = true
			}
		case KindPath:
			if r.name == "openat" && len(r.paths) == 1 && r.paths[0] == "/etc/hostname" && r.ret >= 0 {
				openHostname = true
			}
			if len(r.paths) > 0 && r.paths[0] == "/nonexistent" && ErrnoName(r.ret) == "ENOENT" {
				enoent = true
			}
		case KindFork:
			forks = true
		case KindExec:
			execs = execs || r.filename == "/bin/sh"
		case KindExit:
			exits = true
			groupExit = groupExit || r.flags&FlagGroupDead != 0
		}
	}
	for what, ok := range map[string]bool{
		"execve /bin/sh with argv": execSh, `openat "/etc/hostname"`: openHostname,
		`ENOENT on "/nonexistent"`: enoent, "fork": forks, "exec /bin/sh": execs,
		"exit": exits, "group exit": groupExit,
	} {
		if !ok {
			t.Errorf("no record of %s", what)
		}
	}
	if t.Failed() {
		for _, r := range recs {
			t.Logf("%s %s %d %v %q %q", r.kind, r.name, r.ret, r.paths, r.filename, r.comm)
		}
	}
}

// getppidBinary compiles testdata/getppid.c.
func getppidBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		sandboxtest.Skip(t, "needs gcc: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "getppid")
	if out, err := exec.Command("gcc", "-O2", "-o", bin, "testdata/getppid.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

func TestCountGetppid(t *testing.T) {
	tr := loadTracer(t)
	bin := getppidBinary(t)
	const n = 200000
	nr, _ := SyscallNumber(ArchX86_64, "getppid")
	var count, others int
	recs, lost := traceCommand(t, tr, exec.Command(bin, strconv.Itoa(n)), func(ev *Event) bool {
		if ev.Syscall != nil && ev.Syscall.Nr == nr && Arch(ev.Header.Arch) == ArchX86_64 {
			count++
			return false
		}
		others++
		return true
	})
	if lost != 0 {
		t.Errorf("lost %d records", lost)
	}
	if count != n {
		t.Errorf("%d getppid records, want %d", count, n)
	}
	t.Logf("%d getppid records, %d others (%d kept)", count, others, len(recs))
}

// A syscall that seccomp fails never reaches sys_enter; it must still be
// recorded, with its path read at sys_exit.
func TestSeccompDenied(t *testing.T) {
	tr := loadTracer(t)
	bin := getppidBinary(t)
	const n = 10
	recs, lost := traceCommand(t, tr, exec.Command(bin, strconv.Itoa(n), "seccomp"), nil)
	if lost != 0 {
		t.Errorf("lost %d records", lost)
	}
	var denied int
	var openDenied bool
	for _, r := range recs {
		if r.name == "getppid" && ErrnoName(r.ret) == "EPERM" {
			denied++
		}
		if r.name == "openat" && ErrnoName(r.ret) == "EACCES" && len(r.paths) == 1 && r.paths[0] == "/etc/hostname" &&
			r.flags&FlagLate != 0 {
			openDenied = true
		}
	}
	if denied != n {
		t.Errorf("%d denied getppid records, want %d", denied, n)
	}
	if !openDenied {
		t.Error("no record of the denied openat of /etc/hostname")
	}
}

// TestThroughput measures how fast records flow on a getppid flood. It runs
// only when DEPUTY_BPF_BENCH is set (to the number of syscalls).
func TestThroughput(t *testing.T) {
	s := os.Getenv("DEPUTY_BPF_BENCH")
	if s == "" {
		t.Skip("set DEPUTY_BPF_BENCH=<syscalls> to measure")
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	bin := getppidBinary(t)
	sandboxtest.RequireRoot(t)

	start := time.Now()
	if out, err := exec.Command(bin, s).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	bare := time.Since(start)

	tr := loadTracer(t)
	var count int
	start = time.Now()
	_, lost := traceCommand(t, tr, exec.Command(bin, s), func(ev *Event) bool {
		count++
		return false
	})
	traced := time.Since(start)
	st, _ := tr.Stats()
	t.Logf("%d syscalls: untraced %v, traced %v (%.2fx), %d records, %.0f records/s, lost %d, stats %+v",
		n, bare, traced, float64(traced)/float64(bare), count, float64(count)/traced.Seconds(), lost, st)
}
