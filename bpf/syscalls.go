package bpf

import "strconv"

// Arch is the syscall ABI of a record (events.h enum dpt_arch); it selects
// the syscall number table.
type Arch uint8

// Syscall ABIs of an x86_64 kernel.
const (
	ArchX86_64 Arch = 1
	ArchI386   Arch = 2 // 32-bit syscalls: int 0x80, sysenter, 32-bit processes
	ArchX32    Arch = 3 // x32 ABI; numbers below 512 are x86_64's
)

func (a Arch) String() string {
	switch a {
	case ArchX86_64:
		return "x86_64"
	case ArchI386:
		return "i386"
	case ArchX32:
		return "x32"
	}
	return "arch" + strconv.Itoa(int(a))
}

// SyscallName returns the name of syscall nr in arch's table ("openat"), or
// "" if the number is unknown.
func SyscallName(arch Arch, nr uint32) string {
	t := table(arch)
	if arch == ArchX32 && nr >= 512 {
		// x32-only entry points (x32_rt_sigaction, ...) are not tabled.
		return ""
	}
	if int(nr) < len(t) {
		return t[nr]
	}
	return ""
}

// SyscallArgs is how many argument registers syscall nr of arch uses: the
// others hold whatever the caller left there, and recording them would only
// mislead. 6 where the kernel has no metadata, and for i386 (its compat
// syscalls have no tracepoint formats to count from).
func SyscallArgs(arch Arch, nr uint32) int {
	if (arch == ArchX86_64 || arch == ArchX32) && int(nr) < len(syscallArgs64) {
		return int(syscallArgs64[nr])
	}
	return 6
}

// SyscallNumber is the inverse of SyscallName.
func SyscallNumber(arch Arch, name string) (uint32, bool) {
	for nr, n := range table(arch) {
		if n != "" && n == name {
			return uint32(nr), true
		}
	}
	return 0, false
}

func table(arch Arch) []string {
	switch arch {
	case ArchX86_64, ArchX32:
		return syscalls64[:]
	case ArchI386:
		return syscalls32[:]
	}
	return nil
}

// Kernel-internal restart codes. They reach sys_exit when a signal interrupts
// a syscall; the kernel then restarts it or turns them into EINTR.
var restartNames = map[int64]string{
	512: "ERESTARTSYS",
	513: "ERESTARTNOINTR",
	514: "ERESTARTNOHAND",
	515: "ENOIOCTLCMD",
	516: "ERESTART_RESTARTBLOCK",
}

// ErrnoName names the error in a syscall return value: ErrnoName(-2) is
// "ENOENT". It returns "" for values that are not errors (ret >= 0, or below
// -4095, the kernel's MAX_ERRNO, as mmap addresses can be) and "E<n>" for
// unnamed error numbers.
func ErrnoName(ret int64) string {
	if ret >= 0 || ret < -4095 {
		return ""
	}
	e := -ret
	if int(e) < len(errnoNames) && errnoNames[e] != "" {
		return errnoNames[e]
	}
	if n, ok := restartNames[e]; ok {
		return n
	}
	return "E" + strconv.FormatInt(e, 10)
}
