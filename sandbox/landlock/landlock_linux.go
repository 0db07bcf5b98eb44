package landlock

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// Rights, as the kernel numbers them (include/uapi/linux/landlock.h).
const (
	accessRead = unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	accessExec = accessRead | unix.LANDLOCK_ACCESS_FS_EXECUTE
	// accessWrite deliberately leaves out MakeChar and MakeBlock (device
	// nodes) and IoctlDev: no agent needs them.
	accessWrite = accessRead | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_SYM |
		unix.LANDLOCK_ACCESS_FS_REFER | unix.LANDLOCK_ACCESS_FS_TRUNCATE
	// accessFileOnly are the rights that apply to a non-directory; the
	// kernel refuses directory rights on a file rule.
	accessFileOnly = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE |
		unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	// scopes: an agent cannot signal, or connect to an abstract Unix socket
	// of, anything outside its own domain (ABI 6).
	scopes = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
)

// handledFS returns the filesystem rights a kernel with Landlock ABI abi can
// handle: every right it knows, so that whatever no rule grants is denied.
// Network rights (ABI 4) are not handled: network confinement comes from the
// network namespace, and for network: host the profile asked for the host's
// network.
func handledFS(abi int) uint64 {
	switch {
	case abi >= 5:
		return 1<<16 - 1 // through IOCTL_DEV
	case abi >= 3:
		return 1<<15 - 1 // through TRUNCATE
	case abi == 2:
		return 1<<14 - 1 // through REFER
	case abi == 1:
		return 1<<13 - 1
	}
	return 0
}

// ABI returns the kernel's Landlock ABI version, 0 when Landlock is absent
// or disabled. The kernel's answer cannot change while we run, so it is
// asked once, not on every exec (Compile).
var ABI = sync.OnceValue(func() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0
	}
	return int(v)
})

// Check reports whether the kernel can enforce everything Deputy relies on.
func Check() error {
	if abi := ABI(); abi < RequiredABI {
		return fmt.Errorf("%w: kernel Landlock ABI %d, need %d (refer, truncate, device ioctl, signal scoping)", ErrNotSupported, abi, RequiredABI)
	}
	return nil
}

// Compile turns base plus r into the ruleset the init helper enforces. The
// daemon decides every right here; the helper only opens the paths (after
// building its mounts, since /tmp, /dev/shm and /proc are the exec's own)
// and hands them to the kernel. Without BestEffort a kernel below
// RequiredABI is an error; with it the rights are cut to what the kernel
// knows, and nil means there is nothing to enforce.
func Compile(r Rules) (*Ruleset, error) {
	abi := ABI()
	if !r.BestEffort && abi < RequiredABI {
		return nil, Check()
	}
	if abi == 0 {
		return nil, nil
	}
	rs := &Ruleset{HandledFS: handledFS(abi), FileMask: accessFileOnly}
	if abi >= 6 {
		rs.Scoped = scopes
	}
	for _, l := range []struct {
		paths  []string
		access uint64
	}{
		{Base.Read, accessRead}, {Base.Write, accessWrite}, {Base.Exec, accessExec},
		{r.Read, accessRead}, {r.Write, accessWrite}, {r.Exec, accessExec},
	} {
		for _, p := range l.paths {
			rs.Rules = append(rs.Rules, PathRule{Path: p, Access: l.access & rs.HandledFS})
		}
	}
	return rs, nil
}
