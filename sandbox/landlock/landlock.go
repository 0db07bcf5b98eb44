// Package landlock turns an agent's filesystem allowlist into Landlock rules
// (see Compile), which the init helper enforces on itself. It fails closed: a kernel whose
// Landlock ABI cannot enforce every right Deputy relies on is an error,
// unless the caller explicitly asks for best effort.
package landlock

import "errors"

// RequiredABI is the Landlock ABI Deputy needs for full enforcement:
// v2 (refer: no renaming or linking files out of a granted tree), v3
// (truncate), v5 (ioctl on devices) and v6 (signal and abstract-socket
// scoping: an agent cannot signal or connect to anything outside its
// domain).
const RequiredABI = 6

// ErrNotSupported means the kernel lacks the Landlock support that full
// enforcement needs.
var ErrNotSupported = errors.New("landlock not supported")

// Rules is an allowlist of absolute paths. A path that does not exist is
// skipped: Landlock rules attach to inodes.
type Rules struct {
	// Read grants reading files and listing directories.
	Read []string
	// Write grants reading plus creating, writing, truncating, renaming and
	// removing beneath the path.
	Write []string
	// Exec grants reading and executing.
	Exec []string
	// BestEffort enforces what the kernel offers instead of refusing.
	BestEffort bool
}

// Base is the minimal set every sandbox gets so that ordinary dynamically
// linked programs start: the loader and libraries, name-service and locale
// data, a few harmless devices, the exec's own /proc, and its private /tmp
// and /dev/shm (tmpfs mounts that live and die with the exec).
var Base = Rules{
	Read: []string{
		"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/lib32", "/usr/libx32",
		"/usr/share/zoneinfo", "/usr/share/locale", "/usr/share/terminfo", "/usr/share/i18n",
		"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/timezone", "/etc/hostname",
		"/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/host.conf",
		"/etc/resolv.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols", "/etc/locale.alias",
		"/etc/terminfo", "/etc/inputrc", "/etc/alternatives",
		"/dev/urandom", "/dev/random",
		"/proc",
	},
	Write: []string{
		"/dev/null", "/dev/zero", "/dev/full",
		"/tmp", "/dev/shm",
	},
	Exec: []string{
		// The kernel opens a dynamic program's ELF interpreter with exec
		// permission, so Landlock must allow executing it; libraries are
		// mmap()ed, which needs only read.
		"/lib64/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/lib/ld-linux-aarch64.so.1",
		"/usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
	},
}

// Ruleset is a compiled allowlist, ready for landlock_create_ruleset and
// landlock_add_rule.
type Ruleset struct {
	// HandledFS are the filesystem rights the ruleset governs: any of them
	// not granted by a rule is denied.
	HandledFS uint64
	// Scoped are the IPC scopes (signals, abstract Unix sockets) confined
	// to the domain.
	Scoped uint64
	// FileMask are the rights that apply to a non-directory; a rule on a
	// file keeps only these.
	FileMask uint64
	// Rules grant rights beneath paths. A path missing in the sandbox is
	// skipped: a rule needs an inode.
	Rules []PathRule
}

// PathRule grants Access beneath Path.
type PathRule struct {
	Path   string
	Access uint64
}
