package cgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain fails the run if the tests leak fds or child processes: a leaked cgroup fd pins
// the cgroup, a leaked child keeps a group populated.
func TestMain(m *testing.M) {
	// os/exec's pipes start the runtime's netpoller (an epoll fd and an eventfd) on first
	// use; start it now so that it is not counted as a leak.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before := openFDs()
	code := m.Run()
	if code == 0 {
		if after := openFDs(); len(after) > len(before) {
			fmt.Fprintf(os.Stderr, "leaked fds: before %v, after %v\n", before, after)
			code = 1
		}
		if kids := children(); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "leaked child processes: %v\n", kids)
			code = 1
		}
	}
	os.Exit(code)
}

func openFDs() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		t, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		out = append(out, e.Name()+"->"+t)
	}
	return out
}

func children() []string {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []string
	for _, p := range tasks {
		b, _ := os.ReadFile(p)
		out = append(out, strings.Fields(string(b))...)
	}
	return out
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root: creates cgroups (CI=true makes this skip a failure)")
		}
		t.Skip("needs root: creates cgroups")
	}
}

var testSeq atomic.Int64

// newManager returns a Manager on a root private to this test, removed at the end.
func newManager(t *testing.T) *Manager {
	t.Helper()
	requireRoot(t)
	root := fmt.Sprintf("deputy-test-%d-%d", os.Getpid(), testSeq.Add(1))
	m, err := New(root)
	if errors.Is(err, ErrNotSupported) && os.Getenv("CI") != "true" {
		t.Skipf("cgroups: %v", err)
	}
	if err != nil {
		t.Fatalf("New(%q): %v", root, err)
	}
	t.Logf("%s", m.Describe())
	t.Cleanup(func() {
		if _, err := m.CleanupStale(); err != nil {
			t.Errorf("CleanupStale: %v", err)
		}
		if err := m.removeRoot(); err != nil {
			t.Errorf("remove root: %v", err)
		}
	})
	return m
}

func create(t *testing.T, m *Manager, l Limits) *Group {
	t.Helper()
	g, err := m.Create(fmt.Sprintf("exec-%d", testSeq.Add(1)), l)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Delete(); err != nil {
			t.Errorf("Delete: %v", err)
		}
	})
	return g
}

// start runs argv in g the way the daemon does: cloned into the cgroup2 group, held on a
// pipe until AddProc has moved it into the v1 groups, then released.
func start(t *testing.T, g *Group, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", `read x; exec "$@"`, "sh"}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", argv, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if err := g.AddProc(cmd.Process.Pid); err != nil {
		t.Fatalf("AddProc: %v", err)
	}
	if _, err := io.WriteString(w, "go\n"); err != nil {
		t.Fatalf("release child: %v", err)
	}
	w.Close()
	return cmd
}

func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

func procsOf(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func waitEmptyT(t *testing.T, g *Group) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := g.WaitEmpty(ctx); err != nil {
		t.Fatalf("WaitEmpty: %v", err)
	}
}

func TestNewDetectsMode(t *testing.T) {
	m := newManager(t)
	if m.Mode() != Unified && m.Mode() != Hybrid {
		t.Fatalf("Mode() = %v", m.Mode())
	}
	if !strings.HasPrefix(m.Describe(), m.Mode().String()+":") {
		t.Errorf("Describe() = %q", m.Describe())
	}
	// A second Manager on an existing root (a restarted daemon) must work.
	if _, err := New(m.root); err != nil {
		t.Fatalf("New on existing root: %v", err)
	}
}

func TestCreatePlacesProcess(t *testing.T) {
	m := newManager(t)
	g := create(t, m, Limits{MemoryBytes: 32 << 20, PIDs: 5, CPU: 0.5})

	var st unix.Stat_t
	if err := unix.Stat(g.Path(), &st); err != nil {
		t.Fatal(err)
	}
	if g.ID() == 0 || g.ID() != st.Ino {
		t.Errorf("ID() = %d, inode of %s = %d", g.ID(), g.Path(), st.Ino)
	}
	// The limits are in the files before any process exists.
	checkLimits(t, m, g)

	cmd := start(t, g, "sleep", "30")
	pid := cmd.Process.Pid
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(g.Path(), m.v2Mount)
	if !slices.Contains(strings.Split(strings.TrimSpace(string(b)), "\n"), "0::"+rel) {
		t.Errorf("/proc/%d/cgroup = %q, want a line 0::%s", pid, b, rel)
	}
	if !slices.Contains(procsOf(t, g.Path()), strconv.Itoa(pid)) {
		t.Errorf("pid %d not in %s", pid, g.Path())
	}
	for _, c := range m.groupCtrls {
		if !slices.Contains(procsOf(t, g.limitDir(c)), strconv.Itoa(pid)) {
			t.Errorf("pid %d not in v1 %s group %s", pid, c, g.limitDir(c))
		}
	}
	if empty, err := g.Empty(); err != nil || empty {
		t.Errorf("Empty() = %v, %v with a process inside", empty, err)
	}

	if err := g.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if err := g.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}

	if err := g.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitEmptyT(t, g)
	if err := cmd.Wait(); err == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("wait after Kill: %v, want killed by SIGKILL", err)
	}
	if _, err := g.Stats(); err != nil {
		t.Errorf("Stats: %v", err)
	}

	dirs := append([]string{g.Path()}, g.v1Dirs()...)
	if err := g.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after Delete (%v)", d, err)
		}
	}
	if g.FD() != -1 {
		t.Errorf("FD() = %d after Delete", g.FD())
	}
	if err := g.Delete(); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func checkLimits(t *testing.T, m *Manager, g *Group) {
	t.Helper()
	want := map[string]string{}
	if m.Mode() == Unified {
		want[filepath.Join(g.Path(), "memory.max")] = "33554432"
		want[filepath.Join(g.Path(), "pids.max")] = "5"
		want[filepath.Join(g.Path(), "cpu.max")] = "50000 100000"
		if p := filepath.Join(g.Path(), "memory.swap.max"); exists(p) {
			want[p] = "0"
		}
	} else {
		want[filepath.Join(g.limitDir("memory"), "memory.limit_in_bytes")] = "33554432"
		want[filepath.Join(g.limitDir("pids"), "pids.max")] = "5"
		want[filepath.Join(g.limitDir("cpu"), "cpu.cfs_quota_us")] = "50000"
		want[filepath.Join(g.limitDir("cpu"), "cpu.cfs_period_us")] = "100000"
		if p := filepath.Join(g.limitDir("memory"), "memory.memsw.limit_in_bytes"); exists(p) {
			want[p] = "33554432"
		}
	}
	for p, v := range want {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if got := strings.TrimSpace(string(b)); got != v {
			t.Errorf("%s = %q, want %q", p, got, v)
		}
	}
}

func TestPIDsLimit(t *testing.T) {
	m := newManager(t)
	g := create(t, m, Limits{PIDs: 5})
	cmd := start(t, g, "sh", "-c", "for i in $(seq 20); do sleep 30 & done; wait")
	events := filepath.Join(g.limitDir("pids"), "pids.events")
	err := waitFor(10*time.Second, func() (bool, error) {
		ev, err := readKeyed(events)
		return ev["max"] > 0, err
	}, "wait for pids.events max > 0")
	if err != nil {
		t.Fatal(err)
	}
	if n := readInt(t, filepath.Join(g.limitDir("pids"), "pids.current")); n > 5 {
		t.Errorf("pids.current = %d, want <= 5", n)
	}
	if err := g.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitEmptyT(t, g)
	_ = cmd.Wait()
}

func TestMemoryLimitOOM(t *testing.T) {
	m := newManager(t)
	g := create(t, m, Limits{MemoryBytes: 32 << 20, PIDs: 16})
	// tail buffers its whole input while looking for the last line: 200M with no newline.
	cmd := start(t, g, "sh", "-c", "head -c 200M /dev/zero | tail -n 1 >/dev/null")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("200M under a 32M limit exited 0")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("memory hog still running after 30s")
	}
	oom, err := g.OOMKilled()
	if err != nil {
		t.Fatalf("OOMKilled: %v", err)
	}
	if !oom {
		t.Errorf("OOMKilled() = false after exceeding the limit")
	}
	u, err := g.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	t.Logf("usage: %+v", u)
	if u.MemoryPeakBytes > 33<<20 {
		t.Errorf("memory peak %d over the 32M limit", u.MemoryPeakBytes)
	}
}

func TestNoOOMWithoutPressure(t *testing.T) {
	m := newManager(t)
	g := create(t, m, Limits{MemoryBytes: 64 << 20})
	cmd := start(t, g, "true")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if oom, err := g.OOMKilled(); err != nil || oom {
		t.Errorf("OOMKilled() = %v, %v; want false", oom, err)
	}
	waitEmptyT(t, g)
}

func TestStatsCPU(t *testing.T) {
	m := newManager(t)
	g := create(t, m, Limits{CPU: 1})
	cmd := start(t, g, "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	u, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if u.CPUUser+u.CPUSystem == 0 {
		t.Errorf("Stats() = %+v, want some CPU time", u)
	}
}

func TestCleanupStale(t *testing.T) {
	m := newManager(t)
	g, err := m.Create("exec-stale", Limits{PIDs: 10})
	if err != nil {
		t.Fatal(err)
	}
	cmd := start(t, g, "sh", "-c", "sleep 60 & sleep 60")
	dirs := append([]string{g.Path()}, g.v1Dirs()...)
	// The daemon "crashes": the group and its processes are left behind.
	g.Close()

	m2, err := New(m.root)
	if err != nil {
		t.Fatal(err)
	}
	n, err := m2.CleanupStale()
	if err != nil {
		t.Fatalf("CleanupStale: %v", err)
	}
	if n != 1 {
		t.Errorf("CleanupStale removed %d groups, want 1", n)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after CleanupStale (%v)", d, err)
		}
	}
	if err := cmd.Wait(); err == nil {
		t.Errorf("stale process exited cleanly, want killed")
	}
}

func TestConcurrentGroups(t *testing.T) {
	m := newManager(t)
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			g, err := m.Create(fmt.Sprintf("exec-c%d", i), Limits{PIDs: 4, MemoryBytes: 16 << 20})
			if err == nil {
				err = g.Delete()
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	runtime.GC()
}

func TestCreateRejects(t *testing.T) {
	m := newManager(t)
	if _, err := m.Create("a/b", Limits{}); err == nil {
		t.Error("Create(a/b): want error")
	}
	if _, err := m.Create("x", Limits{PIDs: -1}); err == nil {
		t.Error("Create with negative pids: want error")
	}
	g := create(t, m, Limits{})
	if _, err := m.Create(g.Name(), Limits{}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Create of an existing name: %v, want ErrExist", err)
	}
}

// TestKillFallback exercises the kill loop used on kernels without cgroup.kill (< 5.14).
func TestKillFallback(t *testing.T) {
	m := newManager(t)
	m.hasKill = false
	g := create(t, m, Limits{PIDs: 20})
	cmd := start(t, g, "sh", "-c", "for i in 1 2 3 4 5; do sleep 30 & done; wait")
	if err := waitFor(5*time.Second, func() (bool, error) {
		return len(procsOf(t, g.Path())) >= 6, nil
	}, "wait for 6 processes"); err != nil {
		t.Fatal(err)
	}
	if err := g.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitEmptyT(t, g)
	_ = cmd.Wait()
}

// TestV1Freezer exercises the v1 freezer used on hybrid kernels without cgroup.freeze.
func TestV1Freezer(t *testing.T) {
	m := newManager(t)
	if _, ok := m.v1["freezer"]; !ok || m.Mode() != Hybrid {
		t.Skip("needs a hybrid host with a v1 freezer")
	}
	m.hasFreeze = false
	m.groupCtrls = append(m.groupCtrls, "freezer")
	if err := mkdirAll(filepath.Join(m.v1["freezer"], m.root)); err != nil {
		t.Fatal(err)
	}
	g := create(t, m, Limits{})
	cmd := start(t, g, "sleep", "30")
	if !slices.Contains(procsOf(t, g.limitDir("freezer")), strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("pid not in the v1 freezer group")
	}
	if err := g.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if err := g.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	m.hasKill = false
	if err := g.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	waitEmptyT(t, g)
	_ = cmd.Wait()
}

// TestDeleteKillsProcessOnlyInV1 covers the one way a process can be in an
// exec's v1 groups but not its cgroup2 group (root moved it there):
// cgroup.kill misses it, so Delete must find it when the v1 group is busy.
func TestDeleteKillsProcessOnlyInV1(t *testing.T) {
	m := newManager(t)
	if m.Mode() != Hybrid || len(m.groupCtrls) == 0 {
		t.Skipf("needs hybrid cgroups (v1 controllers beside cgroup2), mode is %s", m.Mode())
	}
	g := create(t, m, Limits{PIDs: 5})
	cmd := start(t, g, "sleep", "30")
	pid := strconv.Itoa(cmd.Process.Pid)
	// Move it to the cgroup2 root: it stays in the exec's v1 groups only.
	if err := os.WriteFile(filepath.Join(m.v2Mount, "cgroup.procs"), []byte(pid), 0o644); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(procsOf(t, g.Path()), pid) || !slices.Contains(procsOf(t, g.limitDir(m.groupCtrls[0])), pid) {
		t.Fatalf("setup: pid %s should be in the v1 group only", pid)
	}
	if err := g.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := cmd.Wait(); err == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("wait after Delete: %v, want killed by SIGKILL", err)
	}
	for _, d := range g.v1Dirs() {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there after Delete (%v)", d, err)
		}
	}
}
