package bpf

import "bytes"

// Kind is a record's type (events.h enum dpt_kind).
type Kind uint8

// Record kinds.
const (
	KindSyscall  Kind = 1 // *Syscall: a syscall without pointer data
	KindPath     Kind = 2 // *PathEvent: a syscall with up to two paths
	KindExecve   Kind = 3 // *ExecveEvent: execve/execveat with path and argv
	KindSockaddr Kind = 4 // *SockaddrEvent: connect/bind/sendto/sendmsg
	KindFork     Kind = 5 // *ForkEvent: a new process or thread
	KindExec     Kind = 6 // *ExecEvent: a successful exec, in the new image
	KindExit     Kind = 7 // *ExitEvent: a thread exited
)

func (k Kind) String() string {
	switch k {
	case KindSyscall:
		return "syscall"
	case KindPath:
		return "path"
	case KindExecve:
		return "execve"
	case KindSockaddr:
		return "sockaddr"
	case KindFork:
		return "fork"
	case KindExec:
		return "exec"
	case KindExit:
		return "exit"
	}
	return "kind?"
}

// Flag bits of a record header (events.h enum dpt_flag).
type Flag uint16

// Header flags.
const (
	FlagNoReturn  Flag = 1 << 0 // emitted at sys_enter (exit, exit_group); Ret is 0
	FlagLate      Flag = 1 << 1 // pointer data read at sys_exit (e.g. denied by seccomp)
	FlagNoData    Flag = 1 << 2 // pointer data not captured
	FlagTrunc     Flag = 1 << 3 // argv truncated
	FlagThread    Flag = 1 << 4 // fork: the child is a thread
	FlagGroupDead Flag = 1 << 5 // exit: the last thread of its process
)

// AtFDCWD is the dirfd value meaning "relative to the cwd" (AT_FDCWD).
const AtFDCWD = -100

// CString returns b up to its first NUL.
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// SplitArgv splits a flat buffer of NUL-terminated strings, appending to dst.
func SplitArgv(dst []string, buf []byte, argc int) []string {
	for i := 0; i < argc && len(buf) > 0; i++ {
		j := bytes.IndexByte(buf, 0)
		if j < 0 {
			dst = append(dst, string(buf))
			break
		}
		dst = append(dst, string(buf[:j]))
		buf = buf[j+1:]
	}
	return dst
}

// SignExtendArg returns a syscall argument as the int the process passed. For
// i386 records, arguments are 32-bit values zero-extended to 64 bits (a dirfd
// of AT_FDCWD arrives as 0xffffff9c).
func SignExtendArg(arch Arch, v uint64) int64 {
	if arch == ArchI386 {
		return int64(int32(uint32(v)))
	}
	return int64(v)
}
