//go:build linux

package seccomp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// childEnv selects a child mode when the test binary re-executes itself: installing seccomp is irreversible, so
// it happens in a subprocess and never in the test process.
const childEnv = "_DEPUTY_SECCOMP_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(runChild(mode))
	}
	before := openFDs()
	code := m.Run()
	for fd, target := range openFDs() {
		if _, ok := before[fd]; !ok && code == 0 {
			fmt.Fprintf(os.Stderr, "leaked file descriptor %s -> %s\n", fd, target)
			code = 1
		}
	}
	os.Exit(code)
}

// openFDs maps this process's open fds to their targets, leaving out the Go runtime's netpoller, which the
// testing package's timers open lazily and keep.
func openFDs() map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	fds := make(map[string]string, len(ents))
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]" {
			continue
		}
		fds[e.Name()] = target
	}
	return fds
}

// requireSeccomp skips when the kernel cannot install filters, and fails instead in CI, where it must.
func requireSeccomp(t *testing.T) {
	t.Helper()
	if err := Supported(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("seccomp filter mode required in CI: %v", err)
		}
		t.Skipf("kernel feature missing: seccomp filter mode: %v", err)
	}
}

// compileForInstall compiles the default policy, skipping (failing in CI) where Compile is unavailable, such as
// a CGO_ENABLED=0 build.
func compileForInstall(t *testing.T) *Filter {
	t.Helper()
	f, err := Compile(Policy{})
	if errors.Is(err, ErrNotSupported) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Compile required in CI: %v", err)
		}
		t.Skipf("Compile unavailable in this build: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// runInChild re-executes the test binary in mode with the program on stdin and returns its state and output.
func runInChild(t *testing.T, mode string, prog []byte) (*os.ProcessState, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stdin = bytes.NewReader(prog)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run child %s: %v", mode, err)
	}
	return cmd.ProcessState, out.String()
}

func TestInstall(t *testing.T) {
	requireSeccomp(t)
	f := compileForInstall(t)
	state, out := runInChild(t, "install", f.Bytes())
	t.Logf("child output:\n%s", out)
	if !state.Success() {
		t.Fatalf("child: %v", state)
	}
}

func TestInstallRequiresNoNewPrivs(t *testing.T) {
	requireSeccomp(t)
	f := compileForInstall(t)
	state, out := runInChild(t, "no-nnp", f.Bytes())
	if !state.Success() {
		t.Fatalf("child: %v\n%s", state, out)
	}
}

func TestInstallKillsX32(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("x32 is an x86_64 ABI")
	}
	requireSeccomp(t)
	f := compileForInstall(t)
	state, out := runInChild(t, "x32", f.Bytes())
	ws, ok := state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("child: %v, want killed by SIGSYS\n%s", state, out)
	}
}

// runChild is the subprocess side. It returns the exit code; output explains failures.
func runChild(mode string) int {
	// Seccomp without TSYNC and the checks below must all run on one thread, as in the init helper.
	runtime.LockOSThread()
	prog, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Println("read program:", err)
		return 2
	}
	f, err := FilterFromBytes(prog)
	if err != nil {
		fmt.Println(err)
		return 2
	}
	// A KILL_PROCESS verdict dumps core by default; keep test directories clean.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		fmt.Println("setrlimit:", err)
		return 2
	}

	switch mode {
	case "no-nnp":
		if err := f.Install(); err == nil || !strings.Contains(err.Error(), "no_new_privs") {
			fmt.Println("Install without no_new_privs:", err)
			return 1
		}
		return 0
	case "install", "x32":
	default:
		fmt.Println("unknown child mode", mode)
		return 2
	}

	// A thread that exists before Install must stay unfiltered: the filter is per thread without TSYNC.
	other := make(chan syscall.Errno)
	probe := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		<-probe
		other <- ioUringSetup()
	}()

	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("prctl(PR_SET_NO_NEW_PRIVS):", err)
		return 2
	}
	if err := f.Install(); err != nil {
		fmt.Println(err)
		return 2
	}

	if mode == "x32" {
		// getpid through the x32 ABI: killed by the filter whether or not the kernel has CONFIG_X86_X32_ABI.
		_, _, errno := unix.RawSyscall(x32SyscallBit|unix.SYS_GETPID, 0, 0, 0)
		fmt.Println("x32 getpid returned:", errno)
		return 1
	}

	// Each probe is chosen to fail with a different errno when unfiltered, so a passing check proves the filter
	// acted and a broken filter cannot change the system (bad fds, missing paths, invalid flag mixes).
	raw := func(nr uintptr, args ...uintptr) syscall.Errno {
		var a [6]uintptr
		copy(a[:], args)
		_, _, errno := unix.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		return errno
	}
	const (
		// CLONE_THREAD without CLONE_SIGHAND is EINVAL before any process is created.
		badClone        = unix.CLONE_THREAD | unix.CLONE_NEWUSER
		ioctlFD         = ^uintptr(0) // -1: EBADF if the request gets past the filter
		sysOpenTreeAttr = 467
	)
	checks := []struct {
		name string
		got  syscall.Errno
		want syscall.Errno
	}{
		{"getpid", raw(unix.SYS_GETPID), 0},
		{"unshare(CLONE_NEWUSER)", errnoOf(unix.Unshare(unix.CLONE_NEWUSER)), unix.EPERM},
		{"mount", errnoOf(unix.Mount("none", "/nonexistent-deputy-test", "tmpfs", 0, "")), unix.EPERM},
		{"io_uring_setup", ioUringSetup(), unix.EPERM},
		{"clone(CLONE_NEWUSER)", raw(unix.SYS_CLONE, badClone), unix.EPERM},
		{"clone(1<<32|CLONE_NEWUSER)", raw(unix.SYS_CLONE, 1<<32|badClone), unix.EPERM},
		{"clone(CLONE_THREAD)", raw(unix.SYS_CLONE, unix.CLONE_THREAD), unix.EINVAL},
		{"clone3", raw(unix.SYS_CLONE3, 0, 0), unix.ENOSYS},
		{"ioctl(TIOCSTI)", raw(unix.SYS_IOCTL, ioctlFD, unix.TIOCSTI, 0), unix.EPERM},
		{"ioctl(1<<32|TIOCSTI)", raw(unix.SYS_IOCTL, ioctlFD, 1<<32|unix.TIOCSTI, 0), unix.EPERM},
		{"ioctl(TCGETS)", raw(unix.SYS_IOCTL, ioctlFD, unix.TCGETS, 0), unix.EBADF},
		{"personality(query)", raw(unix.SYS_PERSONALITY, 0xffffffff), 0},
		{"personality(ADDR_NO_RANDOMIZE)", raw(unix.SYS_PERSONALITY, 0x0040000), unix.EPERM},
		{"open_tree_attr", raw(sysOpenTreeAttr, ioctlFD, 0, 0, 0, 0), unix.EPERM},
		{"setns", raw(unix.SYS_SETNS, ioctlFD, 0), unix.EPERM},
		{"bpf", raw(unix.SYS_BPF, 0, 0, 0), unix.EPERM},
	}
	failed := 0
	for _, c := range checks {
		status := "ok"
		if c.got != c.want {
			status = "FAIL"
			failed++
		}
		fmt.Printf("%-4s %-32s errno %d (%v), want %d (%v)\n", status, c.name, c.got, c.got, c.want, c.want)
	}

	close(probe)
	if errno := <-other; errno == unix.EPERM {
		fmt.Println("FAIL thread created before Install is filtered: io_uring_setup gave EPERM")
		failed++
	} else {
		fmt.Printf("ok   thread created before Install is unfiltered: io_uring_setup gave %v\n", errno)
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// ioUringSetup calls io_uring_setup(0, NULL): EINVAL or EFAULT unfiltered, EPERM filtered.
func ioUringSetup() syscall.Errno {
	var params [120]byte
	_, _, errno := unix.RawSyscall(unix.SYS_IO_URING_SETUP, 0, uintptr(unsafe.Pointer(&params)), 0)
	return errno
}

func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}
