// Package daemontest runs the real deputyd for integration tests: built
// from this checkout, started as root on a private socket, state and
// profile directory, and driven through the real deputy CLI as real uids.
// Nothing is mocked; tests assert on the state of the world.
package daemontest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
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

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds deputyd and deputy once per test process into a
// world-readable directory, so that agents' peer uids can run the CLI.
//
// DEPUTY_TEST_BIN_DIR names a directory of prebuilt binaries instead, for
// running a compiled test binary (go test -c) on a machine without Go.
func Binaries(t testing.TB) (deputyd, deputy string) {
	t.Helper()
	if dir := os.Getenv("DEPUTY_TEST_BIN_DIR"); dir != "" {
		return filepath.Join(dir, "deputyd"), filepath.Join(dir, "deputy")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "deputy-bin-")
		if buildErr != nil {
			return
		}
		if buildErr = os.Chmod(binDir, 0o755); buildErr != nil {
			return
		}
		// The tests run what ships: scripts/build is the one recipe.
		root := moduleRoot()
		cmd := exec.Command(filepath.Join(root, "scripts", "build"), binDir)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("scripts/build %s: %v\n%s", binDir, err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build binaries: %v", buildErr)
	}
	return filepath.Join(binDir, "deputyd"), filepath.Join(binDir, "deputy")
}

// RemoveBinaries deletes what Binaries built; call it from TestMain after
// m.Run.
func RemoveBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// RemoveCgroupRoots removes the cgroup root directories this test process's
// daemons used (deputy-test-<pid> in every hierarchy). A daemon removes its
// exec groups but keeps its root, as a real one keeps "deputy"; without
// this every test run would leave one behind. Only empty directories go:
// a leftover exec group makes the rmdir fail, and the tests that check for
// leftovers report it. Call it from TestMain after m.Run.
func RemoveCgroupRoots() {
	name := fmt.Sprintf("deputy-test-%d", os.Getpid())
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + name)
	for _, d := range append(dirs, "/sys/fs/cgroup/"+name) { // hybrid hierarchies, pure v2
		_ = os.Remove(d)
	}
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Daemon is a running deputyd.
type Daemon struct {
	Dir      string // private root of this daemon's files
	Socket   string
	State    string
	Profiles string
	Config   string
	Deputy   string // path of the CLI

	deputyd string
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
}

// Options configure Start.
type Options struct {
	// Profiles maps file names to YAML.
	Profiles map[string]string
	// Config is extra YAML appended to the generated config (socket,
	// profiles and state are always set).
	Config string
}

// Start starts deputyd and waits until its socket serves. The daemon is
// stopped (SIGTERM) when the test ends.
func Start(t testing.TB, o Options) *Daemon {
	t.Helper()
	sandboxtest.RequireRoot(t)
	deputyd, deputy := Binaries(t)
	dir, err := os.MkdirTemp("", "deputyd-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &Daemon{
		Dir:      dir,
		Socket:   filepath.Join(dir, "run", "deputy.sock"),
		State:    filepath.Join(dir, "state"),
		Profiles: filepath.Join(dir, "profiles"),
		Config:   filepath.Join(dir, "deputyd.yaml"),
		Deputy:   deputy,
		log:      &syncBuffer{},
		exited:   make(chan struct{}),
	}
	if err := os.MkdirAll(d.Profiles, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range o.Profiles {
		d.WriteProfile(t, name, body)
	}
	cfg := fmt.Sprintf("socket: %s\nprofiles: %s\nstate: %s\ncgroupRoot: deputy-test-%d\n%s", d.Socket, d.Profiles, d.State, os.Getpid(), o.Config)
	if err := os.WriteFile(d.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	d.deputyd = deputyd
	d.start(t)
	t.Cleanup(func() { d.Stop(t) })
	return d
}

// start launches the daemon process and waits for its socket.
func (d *Daemon) start(t testing.TB) {
	t.Helper()
	d.exited = make(chan struct{})
	d.cmd = exec.Command(d.deputyd, "--config", d.Config, "--log-level", "debug")
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start deputyd: %v", err)
	}
	exited := d.exited
	go func() { d.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			break
		}
		select {
		case <-d.exited:
			t.Fatalf("deputyd exited at start: %v\n%s", d.cmd.ProcessState, d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("deputyd did not create its socket within 15s\n%s", d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the daemon with SIGKILL, as a crash would, and waits for it.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// Restart starts the daemon again on the same config, state and profiles,
// after Stop or Kill.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	<-d.exited
	d.start(t)
}

// WriteProfile writes a profile file into the daemon's directory.
func (d *Daemon) WriteProfile(t testing.TB, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.Profiles, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Log returns everything the daemon printed so far.
func (d *Daemon) Log() string { return d.log.String() }

// Signal sends sig to the daemon.
func (d *Daemon) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal deputyd: %v", err)
	}
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Daemon) Stop(t testing.TB) {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("deputyd did not stop within 20s of SIGTERM\n%s", d.Log())
	}
}

// Exited is closed when the daemon process has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// Result is how a CLI invocation ended.
type Result struct {
	Stdout, Stderr string
	Code           int
	Elapsed        time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.Code, r.Stdout, r.Stderr)
}

// Run runs the deputy CLI as uid (its gid = uid) with args, feeding stdin.
func (d *Daemon) Run(t testing.TB, uid uint32, stdin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := d.Command(ctx, uid, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(began)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("run deputy %v: %v", args, err)
	}
	return r
}

// Exec runs `deputy exec -- argv...` as uid.
func (d *Daemon) Exec(t testing.TB, uid uint32, stdin string, argv ...string) Result {
	t.Helper()
	return d.Run(t, uid, stdin, append([]string{"exec", "--"}, argv...)...)
}

// Command prepares the CLI as uid without running it.
func (d *Daemon) Command(ctx context.Context, uid uint32, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.Deputy, args...)
	cmd.Env = []string{"DEPUTY_SOCKET=" + d.Socket, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	return cmd
}

// EnsureUser creates a local system user with the given uid unless one
// exists, and removes it when the test ends if it created it.
func EnsureUser(t testing.TB, name string, uid int) {
	t.Helper()
	if u, err := user.Lookup(name); err == nil {
		if u.Uid != strconv.Itoa(uid) {
			t.Fatalf("user %s exists with uid %s, want %d", name, u.Uid, uid)
		}
		return
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--uid", strconv.Itoa(uid), "--user-group", name).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
}

// ProcessesOf lists the pids whose real uid is uid, zombies included.
func ProcessesOf(uid uint32) []int { return processesOf(uid, true) }

// LiveProcessesOf is ProcessesOf without zombies: after the daemon itself is
// killed, its dead commands are reparented to the host's init, and reaping
// them is init's job.
func LiveProcessesOf(uid uint32) []int { return processesOf(uid, false) }

func processesOf(uid uint32, zombies bool) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		if !zombies && strings.Contains(string(data), "\nState:\tZ") {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f, ok := strings.CutPrefix(line, "Uid:"); ok {
				fields := strings.Fields(f)
				if len(fields) > 0 && fields[0] == strconv.FormatUint(uint64(uid), 10) {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// WaitNoProcesses waits up to d for uid to have no processes and returns
// the ones left.
func WaitNoProcesses(uid uint32, d time.Duration) []int { return waitNo(ProcessesOf, uid, d) }

// WaitNoLiveProcesses is WaitNoProcesses ignoring zombies.
func WaitNoLiveProcesses(uid uint32, d time.Duration) []int { return waitNo(LiveProcessesOf, uid, d) }

func waitNo(list func(uint32) []int, uid uint32, d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		left := list(uid)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
