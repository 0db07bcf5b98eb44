//go:build linux

package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install loads the filter on the calling OS thread only, with seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog).
//
// It deliberately does not pass SECCOMP_FILTER_FLAG_TSYNC. The caller is the init helper: it has called
// runtime.LockOSThread, runs Install as its last step and calls execve from this same thread right after.
// execve keeps only the calling thread, so the command runs filtered and the helper's other Go runtime threads,
// which never run user code, vanish with the old image. TSYNC would filter those threads for the few microseconds
// they have left, gaining nothing, and would add a failure mode (it fails when another thread's filter stack has
// diverged). The flip side: a caller that lets its goroutine migrate between Install and execve would exec
// unfiltered, so the thread must stay locked.
//
// no_new_privs must already be set (the helper sets it before dropping credentials). Install checks it rather
// than relying on the kernel, which would waive the requirement for a caller with CAP_SYS_ADMIN and so make the
// filter's guarantees depend on the helper's capabilities.
//
// Install allocates nothing after decoding the program, so it is safe right before execve.
func (f *Filter) Install() error {
	if err := checkProgram(f.prog); err != nil {
		return err
	}
	// The byte slice is not guaranteed to be 4-byte aligned for struct sock_filter's u32; decode into a real
	// []unix.SockFilter instead of casting the pointer.
	insns := make([]unix.SockFilter, len(f.prog)/insnSize)
	for i := range insns {
		rec := f.prog[i*insnSize : (i+1)*insnSize]
		insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(rec[0:2]),
			Jt:   rec[2],
			Jf:   rec[3],
			K:    binary.NativeEndian.Uint32(rec[4:8]),
		}
	}
	prog := unix.SockFprog{Len: uint16(len(insns)), Filter: &insns[0]}

	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil {
		return fmt.Errorf("seccomp install: %w", os.NewSyscallError("prctl(PR_GET_NO_NEW_PRIVS)", err))
	}
	if nnp != 1 {
		return errors.New("seccomp install: no_new_privs is not set on this thread")
	}

	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog)))
	// The kernel copies the program during the call; keep it reachable until then.
	runtime.KeepAlive(insns)
	if errno != 0 {
		serr := os.NewSyscallError("seccomp(SECCOMP_SET_MODE_FILTER)", errno)
		if errno == unix.ENOSYS {
			return fmt.Errorf("seccomp install: %w: %w", ErrNotSupported, serr)
		}
		return fmt.Errorf("seccomp install: %w", serr)
	}
	return nil
}

// Supported reports whether the kernel can install the filters Compile builds: seccomp filter mode and the
// KILL_PROCESS (4.14) and ERRNO actions. The error wraps ErrNotSupported. For `deputy doctor` and tests.
func Supported() error {
	// PR_GET_SECCOMP fails with EINVAL when the kernel lacks CONFIG_SECCOMP.
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSupported, os.NewSyscallError("prctl(PR_GET_SECCOMP)", err))
	}
	for _, action := range []uint32{unix.SECCOMP_RET_KILL_PROCESS, unix.SECCOMP_RET_ERRNO} {
		a := action
		_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&a)))
		if errno != 0 {
			return fmt.Errorf("%w: action %#x: %w", ErrNotSupported, action,
				os.NewSyscallError("seccomp(SECCOMP_GET_ACTION_AVAIL)", errno))
		}
	}
	return nil
}
