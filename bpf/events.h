/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * events.h is THE kernel -> user event ABI of Deputy's syscall tracer. Every
 * record in the dpt_events ring buffer is one of the dpt_*_event structs below;
 * the Go types are generated from them by bpf2go (-type), never mirrored by
 * hand. All structs are naturally aligned with explicit padding so that C and
 * Go agree on the layout, and every record starts with struct dpt_hdr, whose
 * first byte (kind) says which struct it is.
 *
 * One syscall = one record. A syscall is emitted at sys_exit with its return
 * value; its six argument registers are read from pt_regs at sys_exit (x86
 * syscalls do not modify them; execve, whose exit runs in the new image, is the
 * exception and is captured at sys_enter). Data behind pointers (paths, argv,
 * sockaddrs) is copied at sys_enter into a per-thread in-flight entry and
 * attached at sys_exit, so a path-taking syscall is still a single, larger
 * record. Syscalls that never return (exit, exit_group) are emitted at
 * sys_enter with DPT_F_NORETURN. A syscall denied by seccomp (RET_ERRNO/TRAP)
 * never reaches sys_enter but does reach sys_exit: it is emitted too, with its
 * data read at sys_exit (DPT_F_LATE). The child side of fork/clone, which
 * "returns" 0 without having entered, is not emitted; the child appears as a
 * DPT_EV_FORK record instead. rt_sigreturn/sigreturn restore the interrupted
 * context's registers (orig_ax = -1), so their number and arguments come from
 * sys_enter and ret is the restored ax. A syscall skipped by a ptracer is
 * reported with nr 0xffffffff.
 *
 * Path resolution (done in user space, see Resolver): paths are copied as the
 * process passed them, possibly relative. To make them absolute the reader
 * keeps per-process state built from these records: the cwd (initial cwd of the
 * sandbox's first process, then successful chdir paths and fchdir fds), and an
 * fd -> path table (successful open/openat/openat2/creat return an fd in ret;
 * dup/dup2/dup3/fcntl(F_DUPFD) copy entries; close removes them). The dirfd of
 * *at syscalls is in args[] (AT_FDCWD is -100; for i386 tasks args are 32-bit
 * values and must be sign-extended). Forks copy the table (without CLONE_FILES
 * / CLONE_FS a copy, with them a share).
 *
 * Strings are NUL-terminated; bytes after the NUL are undefined (ring buffer
 * memory is not cleared). *_res fields hold the result of the copy:
 * > 0 bytes copied including the NUL, < 0 a negative errno (-EFAULT for a bad
 * pointer), 0 nothing was copied (no such argument, or the copy was skipped).
 */
#ifndef DPT_EVENTS_H
#define DPT_EVENTS_H

#define DPT_COMM_LEN 16
/* Longer paths are truncated (res == DPT_PATH_LEN, last byte NUL). */
#define DPT_PATH_LEN 256
/* argv is a flat buffer of NUL-terminated strings. At most DPT_ARGV_MAX
 * arguments of at most DPT_ARG_LEN bytes each are copied, while they fit. */
#define DPT_ARGV_LEN 4096
#define DPT_ARG_LEN 1024
#define DPT_ARGV_MAX 64
/* sizeof(struct sockaddr_un) is 110; every other family fits too. */
#define DPT_SOCKADDR_LEN 112
/* Syscall numbers at or above this have no class entry (plain records). */
#define DPT_NR_MAX 1024

/* Record kinds (dpt_hdr.kind). */
enum dpt_kind {
	DPT_EV_SYSCALL = 1,  /* struct dpt_syscall */
	DPT_EV_PATH = 2,     /* struct dpt_path_event */
	DPT_EV_EXECVE = 3,   /* struct dpt_execve_event */
	DPT_EV_SOCKADDR = 4, /* struct dpt_sockaddr_event */
	DPT_EV_FORK = 5,     /* struct dpt_fork_event */
	DPT_EV_EXEC = 6,     /* struct dpt_exec_event */
	DPT_EV_EXIT = 7,     /* struct dpt_exit_event */
};

/* Syscall ABI of the record (dpt_hdr.arch); selects the syscall number table. */
enum dpt_arch {
	DPT_ARCH_X86_64 = 1,
	DPT_ARCH_I386 = 2, /* 32-bit syscall (int 0x80, sysenter, compat syscall) */
	DPT_ARCH_X32 = 3,  /* x32 ABI: nr had __X32_SYSCALL_BIT, which is stripped */
};

/* dpt_hdr.flags */
enum dpt_flag {
	DPT_F_NORETURN = 1 << 0,   /* emitted at sys_enter: exit/exit_group; ret is 0 */
	DPT_F_LATE = 1 << 1,       /* no sys_enter copy: data read at sys_exit */
	DPT_F_NODATA = 1 << 2,     /* pointer data was not captured at all */
	DPT_F_TRUNC = 1 << 3,      /* argv did not fit (more args or longer) */
	DPT_F_THREAD = 1 << 4,     /* fork: the child is a thread (same tgid) */
	DPT_F_GROUP_DEAD = 1 << 5, /* exit: last thread of the thread group */
};

/* Common header of every record. pid/tid/ppid are in the initial pid
 * namespace. ts is CLOCK_BOOTTIME in ns (bpf_ktime_get_boot_ns). cgroup_id and
 * cookie are the tracked cgroup2 id and the daemon's cookie for it. */
struct dpt_hdr {
	__u8 kind;   /* enum dpt_kind */
	__u8 arch;   /* enum dpt_arch; 0 for process records */
	__u16 flags; /* enum dpt_flag */
	__u32 pid;   /* tgid */
	__u32 tid;
	__u32 ppid; /* real_parent's tgid */
	__u32 uid;
	__u32 gid;
	__u64 ts;
	__u64 cgroup_id;
	__u64 cookie;
	__u8 comm[DPT_COMM_LEN];
};

/* A syscall without pointer data (and the head of those with). */
struct dpt_syscall {
	struct dpt_hdr hdr;
	__u64 args[6];
	__s64 ret; /* negative errno on failure */
	__u32 nr;  /* in the table of hdr.arch */
	__u32 reserved;
};

/* Up to two path arguments, in argument order. */
struct dpt_paths {
	__s32 res[2];
	__u8 path[2][DPT_PATH_LEN];
};

struct dpt_path_event {
	struct dpt_syscall sys;
	struct dpt_paths data;
};

/* execve/execveat: the path argument and argv (envp is not copied: secrets). */
struct dpt_execve_data {
	__s32 path_res;
	__u16 argc;     /* number of strings in argv */
	__u16 argv_len; /* bytes used in argv */
	__u8 path[DPT_PATH_LEN];
	__u8 argv[DPT_ARGV_LEN];
};

struct dpt_execve_event {
	struct dpt_syscall sys;
	struct dpt_execve_data data;
};

/* connect/bind/sendto/sendmsg: the destination or local address. */
struct dpt_sockaddr_data {
	__s32 res; /* 0 copied, < 0 negative errno, 1 no address (NULL) */
	__u32 len; /* bytes in addr */
	__u8 addr[DPT_SOCKADDR_LEN];
};

struct dpt_sockaddr_event {
	struct dpt_syscall sys;
	struct dpt_sockaddr_data data;
};

/* sched_process_fork: hdr describes the parent, except that cgroup_id and
 * cookie are the child's (a CLONE_INTO_CGROUP child of an untracked parent is
 * how the first process of a sandbox appears). */
struct dpt_fork_event {
	struct dpt_hdr hdr;
	__u32 child_pid; /* tgid */
	__u32 child_tid;
};

/* sched_process_exec: a successful exec, in the new image (hdr.comm is the new
 * one). filename is the path the kernel opened (bprm->filename). */
struct dpt_exec_event {
	struct dpt_hdr hdr;
	__u32 old_tid; /* differs from hdr.tid when a non-leader thread exec'ed */
	__s32 filename_res;
	__u8 filename[DPT_PATH_LEN];
};

/* sched_process_exit: one per thread. */
struct dpt_exit_event {
	struct dpt_hdr hdr;
	__s32 exit_code; /* wait(2) status: code << 8 | signal */
	__u32 reserved;
};

/*
 * dpt_classes is filled by user space before the programs are attached: entry
 * (arch - 1) * DPT_NR_MAX + nr says which pointer data a syscall carries and
 * in which argument. Syscalls without an entry (kind DPT_CLS_PLAIN) produce
 * plain dpt_syscall records.
 */
enum dpt_class_kind {
	DPT_CLS_PLAIN = 0,
	DPT_CLS_PATH = 1,     /* arg[0], arg[1]: path argument indexes or DPT_ARG_NONE */
	DPT_CLS_EXEC = 2,     /* arg[0]: path, arg[1]: argv */
	DPT_CLS_SOCKADDR = 3, /* arg[0]: sockaddr pointer, arg[1]: its length */
	DPT_CLS_MSGHDR = 4,   /* arg[0]: struct msghdr pointer (msg_name is copied) */
	DPT_CLS_NORETURN = 5, /* exit, exit_group: emitted at sys_enter */
	DPT_CLS_SIGRETURN = 6, /* [rt_]sigreturn: sys_exit sees nr -1, use sys_enter's */
};

#define DPT_ARG_NONE 0xff

enum dpt_class_flag {
	DPT_CLS_F_FORK = 1 << 0, /* clone family: drop the child's ret == 0 exit */
};

struct dpt_class {
	__u8 kind; /* enum dpt_class_kind */
	__u8 flags; /* enum dpt_class_flag */
	__u8 arg[2];
};

/* Indexes of the dpt_stats per-CPU counters. */
enum dpt_stat {
	DPT_STAT_INFLIGHT_FULL = 0, /* sys_enter copy could not be stored */
	DPT_STAT_LATE = 1,          /* data-carrying exit without an enter copy */
	DPT_STAT_LOST = 2,          /* ring buffer full, all cgroups */
	DPT_STAT_MAX = 4,
};

#endif /* DPT_EVENTS_H */
