// Package seccomp turns a profile's syscall policy into a compiled classic-BPF seccomp filter.
//
// The filter is compiled in the daemon with libseccomp (Compile) and handed to the init helper as bytes
// (Filter.Bytes, FilterFromBytes), as nsjail and bubblewrap do: the helper then needs no cgo and no libseccomp,
// and the compiled program can be golden-tested without root. The helper installs it as its very last step
// before execve (Filter.Install).
//
// The policy is a denylist (default action ALLOW), like Docker's and nsjail's defaults but stricter: it refuses
// the syscalls that reconfigure the kernel, the mount table or namespaces, that inspect other processes, or that
// widen the kernel attack surface (bpf, io_uring, userfaultfd, perf). Refusals return an errno rather than killing,
// so a command sees a clear "Operation not permitted" instead of dying from SIGSYS. Syscalls from a foreign ABI
// (i386 int 0x80, x32) kill the process: a native filter cannot reason about their numbers.
package seccomp

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNotSupported reports that this platform, kernel or libseccomp cannot build or install the filter.
var ErrNotSupported = errors.New("seccomp not supported")

// Policy is a profile's change to the default denylist. The zero Policy is the default policy.
type Policy struct {
	// Deny lists extra syscall names to refuse with EPERM. A name already denied by default with an argument
	// condition (clone, ioctl, personality) is then refused whatever its arguments.
	Deny []string
	// Allow lists names from the default denylist (DefaultDeny) that the profile lets through. Every default
	// entry for that name is dropped, so Allow "clone" also permits namespace-creating clones.
	Allow []string
}

// Action is what the filter does with a denied syscall.
type Action int

const (
	// ActionEPERM makes the syscall fail with EPERM, as if a capability were missing.
	ActionEPERM Action = iota + 1
	// ActionENOSYS makes the syscall fail with ENOSYS, as if the kernel did not have it, so that libc falls
	// back to an older syscall that the filter can inspect.
	ActionENOSYS
)

// String returns the errno name.
func (a Action) String() string {
	switch a {
	case ActionEPERM:
		return "EPERM"
	case ActionENOSYS:
		return "ENOSYS"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Entry is one documented rule of the default denylist.
type Entry struct {
	// Syscall is the syscall name as libseccomp and syscalls(2) spell it.
	Syscall string
	// Action is the errno returned when the rule matches.
	Action Action
	// When describes the argument condition; empty means every call is denied.
	When string
	// Why is the reason, for docs, `deputy doctor` and profile lint.
	Why string

	// rules are alternatives (OR), each a list of conditions (AND) on distinct arguments; nil means
	// unconditional. libseccomp refuses two conditions on one argument within a rule, hence the OR of ANDs.
	rules [][]cond
}

// cmpOp mirrors the libseccomp comparison operators used here, so that the table builds without cgo.
type cmpOp int

const (
	cmpMaskedEq cmpOp = iota + 1 // (arg & mask) == value
)

// cond is one argument comparison: (args[arg] & mask) == value for cmpMaskedEq.
type cond struct {
	arg   uint
	op    cmpOp
	mask  uint64
	value uint64
}

// Namespace flags for clone(2). Spelled out rather than taken from x/sys/unix so that this table builds on
// every platform.
const (
	cloneNewTime   = 0x00000080
	cloneNewNS     = 0x00020000
	cloneNewCgroup = 0x02000000
	cloneNewUTS    = 0x04000000
	cloneNewIPC    = 0x08000000
	cloneNewUser   = 0x10000000
	cloneNewPID    = 0x20000000
	cloneNewNet    = 0x40000000

	ioctlTIOCSTI   = 0x5412
	ioctlTIOCLINUX = 0x541c

	lower32Mask = 0xffffffff
)

// always builds an unconditional EPERM entry.
func always(name, why string) Entry {
	return Entry{Syscall: name, Action: ActionEPERM, Why: why}
}

// cloneFlag denies clone(2) when flags (arg0) contain flag. The kernel reads only the low 32 bits of the flags
// (lower_32_bits(clone_flags) in kernel/fork.c); a mask of just the flag bit matches whatever the upper bits hold.
func cloneFlag(flag uint64, flagName, why string) Entry {
	return Entry{
		Syscall: "clone", Action: ActionEPERM,
		When:  "flags & " + flagName,
		Why:   why,
		rules: [][]cond{{{arg: 0, op: cmpMaskedEq, mask: flag, value: flag}}},
	}
}

// ioctlCmd denies ioctl(2) for one request. The kernel declares cmd as unsigned int, so 0x100005412 reaches the
// TIOCSTI handler: comparing the whole 64-bit register would let that through, so only the low 32 bits are compared.
func ioctlCmd(cmd uint64, cmdName, why string) Entry {
	return Entry{
		Syscall: "ioctl", Action: ActionEPERM,
		When:  fmt.Sprintf("request & 0xffffffff == %s (%#x)", cmdName, cmd),
		Why:   why,
		rules: [][]cond{{{arg: 1, op: cmpMaskedEq, mask: lower32Mask, value: cmd}}},
	}
}

// personalityRules denies every persona other than 0 (PER_LINUX) and 0xffffffff (query). The kernel reads
// persona as unsigned int, and libseccomp allows one condition per argument per rule, so "not 0 and not all-ones"
// is written as: some bit i is 1 while bit i+1 (mod 32) is 0. A 32-bit value has such a pair exactly when it is
// neither all zeros nor all ones; 32 single-condition rules is the minimum for that set with masked compares.
// The upper 32 bits are masked out, as the kernel ignores them.
func personalityRules() [][]cond {
	rules := make([][]cond, 0, 32)
	for i := range uint(32) {
		j := (i + 1) % 32
		rules = append(rules, []cond{{
			arg: 0, op: cmpMaskedEq,
			mask:  1<<i | 1<<j,
			value: 1 << i,
		}})
	}
	return rules
}

// defaultDeny is the default denylist. It is never handed out; DefaultDeny returns a copy.
var defaultDeny = []Entry{
	// Mount table and root: a sandbox's filesystem view is fixed by the helper before seccomp.
	always("mount", "changes the mount table; the sandbox's view is fixed before exec"),
	always("umount2", "could uncover paths hidden by the sandbox's mounts"),
	always("pivot_root", "changes the root; the sandbox's root is fixed before exec"),
	always("chroot", "changes the root; classic escape with an open directory fd"),
	always("move_mount", "new mount API (5.2): same power as mount"),
	always("open_tree", "new mount API (5.2): clones mount trees"),
	always("open_tree_attr", "new mount API (6.15): clones mount trees with new attributes"),
	always("fsopen", "new mount API (5.2): creates filesystem contexts"),
	always("fsconfig", "new mount API (5.2): configures filesystem contexts"),
	always("fsmount", "new mount API (5.2): turns a context into a mount"),
	always("fspick", "new mount API (5.2): reconfigures existing superblocks"),
	always("mount_setattr", "changes mount flags such as read-only or idmapping"),

	// Namespaces: new user namespaces hand out a full capability set and expose much kernel attack surface.
	always("unshare", "creates namespaces; user namespaces are the usual first step of kernel exploits"),
	always("setns", "joins other namespaces through inherited or passed fds"),
	cloneFlag(cloneNewNS, "CLONE_NEWNS", "creates a mount namespace"),
	cloneFlag(cloneNewUTS, "CLONE_NEWUTS", "creates a UTS namespace"),
	cloneFlag(cloneNewIPC, "CLONE_NEWIPC", "creates an IPC namespace"),
	cloneFlag(cloneNewUser, "CLONE_NEWUSER", "creates a user namespace with a full capability set inside"),
	cloneFlag(cloneNewPID, "CLONE_NEWPID", "creates a PID namespace"),
	cloneFlag(cloneNewNet, "CLONE_NEWNET", "creates a network namespace"),
	cloneFlag(cloneNewCgroup, "CLONE_NEWCGROUP", "creates a cgroup namespace"),
	// CLONE_NEWTIME shares its bit with CSIGNAL in clone(2) and is only honoured by clone3 and unshare; the rule
	// costs nothing (exit signals >= 128 are invalid anyway) and keeps the list symmetric with unshare.
	cloneFlag(cloneNewTime, "CLONE_NEWTIME", "creates a time namespace (bit shared with the exit signal in clone)"),
	{
		Syscall: "clone3", Action: ActionENOSYS,
		Why: "its flags are in memory that seccomp cannot read; ENOSYS makes glibc fall back to clone, " +
			"whose flags the filter checks",
	},

	// Kernel attack surface with a long CVE record, rarely needed by commands.
	always("bpf", "loads eBPF programs and maps; large verifier attack surface"),
	always("perf_event_open", "performance counters; frequent source of kernel bugs and side channels"),
	always("userfaultfd", "lets an exploit stall kernel copies at will (race widening)"),
	always("io_uring_setup", "io_uring bypasses seccomp for its operations and has a long CVE record"),
	always("io_uring_enter", "io_uring: see io_uring_setup"),
	always("io_uring_register", "io_uring: see io_uring_setup"),
	always("keyctl", "kernel keyrings are not namespaced"),
	always("add_key", "kernel keyrings are not namespaced"),
	always("request_key", "kernel keyrings are not namespaced; can call out to user-space helpers"),

	// Other processes: reading or writing their memory or file descriptors.
	always("ptrace", "inspects and controls other processes; also a seccomp bypass on old kernels"),
	always("process_vm_readv", "reads another process's memory"),
	always("process_vm_writev", "writes another process's memory"),
	always("pidfd_getfd", "steals file descriptors from another process"),
	always("kcmp", "compares kernel objects of other processes; leaks kernel pointer ordering"),

	// Kernel and module loading.
	always("kexec_load", "loads a new kernel"),
	always("kexec_file_load", "loads a new kernel"),
	always("init_module", "loads kernel modules"),
	always("finit_module", "loads kernel modules"),
	always("delete_module", "unloads kernel modules"),
	always("create_module", "obsolete module loading"),
	always("get_kernel_syms", "obsolete; exposes kernel symbols"),
	always("query_module", "obsolete; exposes module information"),
	always("uselib", "obsolete a.out library loading"),

	// File handles bypass path-based checks (the 2014 "shocker" container escape).
	always("open_by_handle_at", "opens files by handle, bypassing the sandbox's mount view (shocker)"),
	always("name_to_handle_at", "produces handles for open_by_handle_at"),

	{
		Syscall: "personality", Action: ActionEPERM,
		When: "persona & 0xffffffff is neither 0 (PER_LINUX) nor 0xffffffff (query)",
		Why: "personality flags such as ADDR_NO_RANDOMIZE or READ_IMPLIES_EXEC weaken exploit mitigations; " +
			"the query and PER_LINUX stay allowed for libc and tools that probe it",
		rules: personalityRules(),
	},

	// Host-wide state.
	always("swapon", "host-wide swap configuration"),
	always("swapoff", "host-wide swap configuration"),
	always("reboot", "reboots the host"),
	always("acct", "host-wide process accounting"),
	always("syslog", "reads and clears the kernel log; leaks kernel addresses"),
	always("lookup_dcookie", "host-wide profiling interface"),
	always("quotactl", "filesystem quota administration"),
	always("quotactl_fd", "filesystem quota administration"),
	always("iopl", "raw I/O port access"),
	always("ioperm", "raw I/O port access"),
	always("vhangup", "hangs up the controlling terminal"),
	always("nfsservctl", "obsolete NFS server control"),
	always("settimeofday", "sets the host clock"),
	always("clock_settime", "sets the host clock"),
	always("clock_adjtime", "its read-only and setting modes live in a struct seccomp cannot read"),
	always("adjtimex", "its read-only and setting modes live in a struct seccomp cannot read"),
	always("sethostname", "changes the host name"),
	always("setdomainname", "changes the NIS domain name"),
	always("fanotify_init", "filesystem-wide event monitoring and permission decisions"),
	always("ustat", "obsolete; exposes host filesystem statistics"),
	always("sysfs", "obsolete; exposes host filesystem types"),
	always("_sysctl", "obsolete binary sysctl interface"),

	// TIOCSTI injects input into the terminal: a sandboxed command could type commands into the user's shell
	// (CVE-2017-5226 in bubblewrap, CVE-2016-7545 in SELinux sandbox).
	ioctlCmd(ioctlTIOCSTI, "TIOCSTI", "injects keystrokes into a terminal the sandbox shares with its caller"),
	ioctlCmd(ioctlTIOCLINUX, "TIOCLINUX", "virtual console control; can inject input via selection paste"),
}

// DefaultDeny returns the default denylist, one Entry per rule, in the order the filter is built.
func DefaultDeny() []Entry {
	out := make([]Entry, len(defaultDeny))
	for i, e := range defaultDeny {
		out[i] = e
		out[i].rules = slices.Clone(e.rules)
	}
	return out
}

// check validates a Policy without resolving names: names must be non-empty, not repeated and not both allowed
// and denied, and Allow must name default entries. Unknown names are reported by Compile, which needs libseccomp.
func (p Policy) check() error {
	inDefault := make(map[string]bool, len(defaultDeny))
	for _, e := range defaultDeny {
		inDefault[e.Syscall] = true
	}
	seen := make(map[string]string)
	for _, list := range []struct {
		field string
		names []string
	}{{"deny", p.Deny}, {"allow", p.Allow}} {
		for _, name := range list.names {
			if name == "" {
				return fmt.Errorf("seccomp %s: empty syscall name", list.field)
			}
			if prev, ok := seen[name]; ok {
				if prev == list.field {
					return fmt.Errorf("seccomp %s: syscall %q listed twice", list.field, name)
				}
				return fmt.Errorf("seccomp: syscall %q is both denied and allowed", name)
			}
			seen[name] = list.field
			if list.field == "allow" && !inDefault[name] {
				return fmt.Errorf("seccomp allow: syscall %q is not in the default denylist", name)
			}
		}
	}
	return nil
}
