package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options are the parent-side settings of a launch: what must exist before
// the helper runs a single instruction.
type Options struct {
	// Helper is the daemon's own binary, re-executed in init mode. Empty
	// means /proc/self/exe.
	Helper string
	// CgroupFD, when >= 0, is a cgroup2 directory fd: the helper is cloned
	// straight into it (CLONE_INTO_CGROUP), so it never runs outside it.
	CgroupFD int
	// HostNetwork shares the host's network namespace. Otherwise the exec
	// joins NetNS (see NewNetNS) when set, or gets a network namespace of
	// its own.
	HostNetwork bool
	NetNS       *os.File
	// Placed runs after the helper exists and before it receives its spec:
	// the daemon puts the pid into cgroup v1 controllers here. The helper
	// blocks on the spec, so nothing runs before Placed returns.
	Placed func(pid int) error
	// SetupTimeout bounds how long the helper may take to reach execve.
	SetupTimeout time.Duration
}

// Process is a running command. Its stdio are pipes the daemon owns.
type Process struct {
	Pid    int
	Stdin  *os.File // write end; close it for EOF
	Stdout *os.File // read end
	Stderr *os.File // read end

	cmd *exec.Cmd
	// mu guards pidfd: Wait closes it while another goroutine may signal.
	mu    sync.Mutex
	pidfd int
}

// Start launches the init helper with the namespaces and cgroup in place at
// clone time, hands it the spec, and returns once the command has been
// executed (or with the helper's precise *InitError).
func Start(spec *Spec, opts Options) (*Process, error) {
	if err := spec.Validate(); err != nil {
		return nil, &InitError{Step: "spec", Kind: KindInvalid, Msg: err.Error()}
	}
	wire, err := encodeSpec(spec)
	if err != nil {
		return nil, &InitError{Step: "spec", Kind: KindSetup, Msg: err.Error()}
	}
	helper := opts.Helper
	if helper == "" {
		helper = "/proc/self/exe"
	}
	timeout := opts.SetupTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}

	var parentEnds, childEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		return r, w, err
	}
	stdinR, stdinW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	stdoutR, stdoutW, err := pipe()
	if err != nil {
		closeAll([]*os.File{stdinR, stdinW})
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	stderrR, stderrW, err := pipe()
	if err != nil {
		closeAll([]*os.File{stdinR, stdinW, stdoutR, stdoutW})
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	specR, specW, err := pipe()
	if err != nil {
		closeAll([]*os.File{stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW})
		return nil, fmt.Errorf("spec pipe: %w", err)
	}
	syncR, syncW, err := pipe()
	if err != nil {
		closeAll([]*os.File{stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW, specR, specW})
		return nil, fmt.Errorf("sync pipe: %w", err)
	}
	parentEnds = []*os.File{stdinW, stdoutR, stderrR, specW, syncR}
	childEnds = []*os.File{stdinR, stdoutW, stderrW, specR, syncW}

	cloneflags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if !opts.HostNetwork && opts.NetNS == nil {
		cloneflags |= unix.CLONE_NEWNET
	}
	extra := []*os.File{specR, syncW}
	env := []string{envSpecFD + "=3", envSyncFD + "=4"}
	if !opts.HostNetwork && opts.NetNS != nil {
		extra = append(extra, opts.NetNS)
		env = append(env, envNetNSFD+"=5")
	}
	pidfd := -1
	cmd := &exec.Cmd{
		Path:   helper,
		Args:   []string{"deputyd", InitArg},
		Stdin:  stdinR,
		Stdout: stdoutW,
		Stderr: stderrW,
		// ExtraFiles start at fd 3.
		ExtraFiles: extra,
		// The helper's own environment: only its fd numbers. The
		// command's environment travels in the spec.
		Env: env,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: cloneflags,
			// Own session and process group: signals to the group reach the
			// whole command, none of the daemon.
			Setsid: true,
			// Dies with the daemon. The helper sets it again after changing
			// credentials, which clears it.
			Pdeathsig: syscall.SIGKILL,
			PidFD:     &pidfd,
		},
	}
	if opts.CgroupFD >= 0 {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = opts.CgroupFD
	}
	if err := cmd.Start(); err != nil {
		closeAll(parentEnds)
		closeAll(childEnds)
		return nil, &InitError{Step: "clone", Kind: KindSetup, Msg: err.Error()}
	}
	closeAll(childEnds)
	p := &Process{Pid: cmd.Process.Pid, Stdin: stdinW, Stdout: stdoutR, Stderr: stderrR, cmd: cmd, pidfd: pidfd}
	abort := func(err error) (*Process, error) {
		p.Kill()
		_ = cmd.Wait()
		closeAll([]*os.File{stdinW, stdoutR, stderrR, specW, syncR})
		p.closePidfd()
		return nil, err
	}

	if opts.Placed != nil {
		if err := opts.Placed(p.Pid); err != nil {
			return abort(&InitError{Step: "cgroup", Kind: KindSetup, Msg: err.Error()})
		}
	}
	_, err = specW.Write(wire)
	specW.Close()
	if err != nil {
		return abort(&InitError{Step: "spec", Kind: KindSetup, Msg: fmt.Sprintf("send spec: %v", err)})
	}

	_ = syncR.SetReadDeadline(time.Now().Add(timeout))
	execing, ierr, err := readSync(syncR)
	syncR.Close()
	if err != nil {
		return abort(&InitError{Step: "sync", Kind: KindSetup, Msg: err.Error()})
	}
	if ierr != nil {
		return abort(ierr)
	}
	if !execing {
		// EOF without the marker: the helper died before it could report.
		p.Kill()
		werr := cmd.Wait()
		closeAll([]*os.File{stdinW, stdoutR, stderrR})
		p.closePidfd()
		return nil, &InitError{Step: "init", Kind: KindSetup, Msg: fmt.Sprintf("helper exited before execve: %v", werr)}
	}
	return p, nil
}

// readSync reads the helper's messages until EOF.
func readSync(r io.Reader) (execing bool, ierr *InitError, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var m syncMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return false, nil, fmt.Errorf("bad message from helper: %w", err)
		}
		switch m.Type {
		case "exec":
			execing = true
		case "error":
			if m.Error == nil {
				m.Error = &InitError{Step: "init", Kind: KindSetup, Msg: "unspecified error"}
			}
			return execing, m.Error, nil
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil, errors.New("helper did not reach execve in time")
		}
		return false, nil, fmt.Errorf("read from helper: %w", err)
	}
	return execing, nil, nil
}

// Signal delivers sig to the command's process group. Through the pidfd for
// the leader, so a recycled pid can never be hit.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd >= 0 {
		if err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return os.NewSyscallError("pidfd_send_signal", err)
		}
	}
	// The rest of the group; the leader is also the group id.
	if err := unix.Kill(-p.Pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return os.NewSyscallError("kill", err)
	}
	return nil
}

// Kill sends SIGKILL to the leader. The leader is pid 1 of the exec's pid
// namespace, so the kernel then kills every other process in it.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd >= 0 {
		_ = unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
		return
	}
	_ = p.cmd.Process.Kill()
}

// Wait reaps the leader and returns its status.
func (p *Process) Wait() (*os.ProcessState, error) {
	err := p.cmd.Wait()
	p.closePidfd()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = nil
	}
	return p.cmd.ProcessState, err
}

// HandlesSignal reports whether the leader catches or ignores sig. The
// leader is the pid namespace's init, so the kernel drops signals it does
// not handle when they come from outside; the daemon uses this to emulate
// a default action.
func (p *Process) HandlesSignal(sig syscall.Signal) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		return false
	}
	return statusHasSignal(data, sig)
}

func (p *Process) closePidfd() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}
