package bpf

// Syscall classes (events.h enum dpt_class_kind): which pointer arguments the
// tracer copies. Mirrored from events.h; events_linux.go asserts at compile
// time that the values match the generated ones.
const (
	clsPlain     = 0
	clsPath      = 1
	clsExec      = 2
	clsSockaddr  = 3
	clsMsghdr    = 4
	clsNoReturn  = 5
	clsSigreturn = 6

	clsFlagFork = 1 << 0

	argNone = 0xff

	// nrMax is DPT_NR_MAX: numbers at or above it have no class entry.
	nrMax = 1024
)

type class struct {
	kind  uint8
	flags uint8
	args  [2]uint8
}

func path1(i uint8) class    { return class{kind: clsPath, args: [2]uint8{i, argNone}} }
func path2(i, j uint8) class { return class{kind: clsPath, args: [2]uint8{i, j}} }

// classes maps syscall names of both tables to their class. Argument indexes
// are ABI positions (0 = first argument), identical for x86_64 and i386.
// Paths are copied for every syscall that resolves a path, including lookups
// (stat, access, readlink) whose ENOENT answers tell what a process probed.
var classes = map[string]class{
	// Files: open and create.
	"open": path1(0), "openat": path1(1), "openat2": path1(1), "creat": path1(0),
	"mknod": path1(0), "mknodat": path1(1), "mkdir": path1(0), "mkdirat": path1(1),
	"name_to_handle_at": path1(1),
	// Remove, rename, link.
	"unlink": path1(0), "unlinkat": path1(1), "rmdir": path1(0),
	"rename": path2(0, 1), "renameat": path2(1, 3), "renameat2": path2(1, 3),
	"link": path2(0, 1), "linkat": path2(1, 3),
	"symlink": path2(0, 1), "symlinkat": path2(0, 2), // target, then the new link
	// Metadata changes.
	"chmod": path1(0), "fchmodat": path1(1), "fchmodat2": path1(1),
	"chown": path1(0), "lchown": path1(0), "fchownat": path1(1),
	"chown32": path1(0), "lchown32": path1(0),
	"truncate": path1(0), "truncate64": path1(0),
	"utime": path1(0), "utimes": path1(0), "futimesat": path1(1),
	"utimensat": path1(1), "utimensat_time64": path1(1),
	"setxattr": path1(0), "lsetxattr": path1(0), "getxattr": path1(0), "lgetxattr": path1(0),
	"listxattr": path1(0), "llistxattr": path1(0), "removexattr": path1(0), "lremovexattr": path1(0),
	"setxattrat": path1(1), "getxattrat": path1(1), "listxattrat": path1(1), "removexattrat": path1(1),
	"file_getattr": path1(1), "file_setattr": path1(1),
	// Lookups.
	"stat": path1(0), "lstat": path1(0), "stat64": path1(0), "lstat64": path1(0),
	"oldstat": path1(0), "oldlstat": path1(0),
	"newfstatat": path1(1), "fstatat64": path1(1), "statx": path1(1),
	"access": path1(0), "faccessat": path1(1), "faccessat2": path1(1),
	"readlink": path1(0), "readlinkat": path1(1),
	"statfs": path1(0), "statfs64": path1(0),
	"inotify_add_watch": path1(1),
	// Process filesystem state (the resolver tracks cwd from chdir).
	"chdir": path1(0), "chroot": path1(0), "pivot_root": path2(0, 1),
	// Mounts and other privileged path users.
	"mount": path2(0, 1), "umount": path1(0), "umount2": path1(0),
	"open_tree": path1(1), "open_tree_attr": path1(1), "move_mount": path2(1, 3),
	"fspick": path1(1), "mount_setattr": path1(1),
	"swapon": path1(0), "swapoff": path1(0), "acct": path1(0), "uselib": path1(0),
	"quotactl": path1(1),
	// Programs.
	"execve":   {kind: clsExec, args: [2]uint8{0, 1}},
	"execveat": {kind: clsExec, args: [2]uint8{1, 2}},
	// Network addresses (AF_UNIX paths included).
	"connect": {kind: clsSockaddr, args: [2]uint8{1, 2}},
	"bind":    {kind: clsSockaddr, args: [2]uint8{1, 2}},
	"sendto":  {kind: clsSockaddr, args: [2]uint8{4, 5}},
	"sendmsg": {kind: clsMsghdr, args: [2]uint8{1, argNone}},
	// No sys_exit: emitted at sys_enter.
	"exit": {kind: clsNoReturn}, "exit_group": {kind: clsNoReturn},
	// sys_exit sees the restored context's orig_ax (-1).
	"rt_sigreturn": {kind: clsSigreturn}, "sigreturn": {kind: clsSigreturn},
	// The new child's sys_exit (ret 0) is not a syscall it made.
	"fork": {flags: clsFlagFork}, "vfork": {flags: clsFlagFork},
	"clone": {flags: clsFlagFork}, "clone3": {flags: clsFlagFork},
}

// classTable returns the dpt_classes array contents: index (arch-1)*nrMax+nr.
func classTable() []class {
	t := make([]class, 3*nrMax)
	for _, arch := range []Arch{ArchX86_64, ArchI386, ArchX32} {
		for nr, name := range table(arch) {
			c, ok := classes[name]
			if !ok || name == "" || nr >= nrMax {
				continue
			}
			if arch == ArchX32 {
				// x32 argv is an array of 32-bit pointers, which the
				// BPF side reads only for i386; x32 execs get plain
				// records. x32 is compiled out of most kernels.
				if c.kind == clsExec || nr >= 512 {
					continue
				}
			}
			t[int(arch-1)*nrMax+nr] = c
		}
	}
	return t
}
