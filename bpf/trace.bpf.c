//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * trace.bpf.c records every syscall and process lifecycle event of the tasks
 * in tracked cgroup2 groups (dpt_tracked) into the dpt_events ring buffer.
 * The record format and the enter/exit pairing scheme are documented in
 * events.h.
 *
 * Hooks: tp_btf on raw_syscalls:sys_enter/sys_exit and sched:sched_process_*.
 * BTF-enabled raw tracepoints are the cheapest per-event hooks available to us
 * (no perf ring or argument marshalling like classic tracepoints), see every
 * syscall of every task including those denied by seccomp (sys_exit only), and
 * need no kprobes, fentry or BPF-LSM, which are unavailable on hosts we target.
 * Kernels: tp_btf and bpf_get_current_task_btf need 5.11+, ringbuf 5.8+,
 * bpf_ktime_get_boot_ns 5.8+, bounded loops 5.3+; CO-RE adapts struct offsets.
 */
#include "vmlinux.h"
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_tracing.h"
#include "bpf/bpf_core_read.h"
#include "events.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* bpf2go -type needs the ABI types in the object's BTF, and clang only emits
 * BTF for types that a variable or function references. Never used. */
struct dpt_abi {
	struct dpt_syscall syscall;
	struct dpt_path_event path;
	struct dpt_execve_event execve;
	struct dpt_sockaddr_event sockaddr;
	struct dpt_fork_event fork;
	struct dpt_exec_event exec;
	struct dpt_exit_event exit;
	enum dpt_kind kind;
	enum dpt_arch arch;
	enum dpt_flag flag;
	enum dpt_class_kind class_kind;
	enum dpt_class_flag class_flag;
	enum dpt_stat stat;
};
const struct dpt_abi *dpt_abi_anchor __attribute__((unused));

/* arch/x86/include/asm/thread_info.h: a 32-bit syscall is in progress. */
#define TS_COMPAT 0x0002
/* arch/x86/include/uapi/asm/unistd.h */
#define X32_SYSCALL_BIT 0x40000000

/* Ring buffer wakeups cost an irq_work and a reader wakeup each; submitting
 * with BPF_RB_NO_WAKEUP and waking the reader only once this many bytes are
 * pending keeps that off the per-syscall path. The reader also polls on a
 * timer, so records below the mark are delivered within its flush interval.
 * Set by the loader. */
const volatile __u64 wakeup_bytes = 1 << 20;

/* Sized by the loader (Options.RingSize). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} dpt_events SEC(".maps");

/* cgroup2 id -> exec cookie. Filled by the daemon before the command's first
 * process is cloned into the cgroup, so no syscall escapes. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} dpt_tracked SEC(".maps");

/* cgroup2 id -> records dropped because the ring buffer was full. Per-CPU so
 * the increment never contends; the daemon creates the entry with Track. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} dpt_lost SEC(".maps");

/* (arch - 1) * DPT_NR_MAX + nr -> which pointer arguments to copy. Filled by
 * the loader from the Go syscall tables before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 3 * DPT_NR_MAX);
	__type(key, __u32);
	__type(value, struct dpt_class);
} dpt_classes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DPT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} dpt_stats SEC(".maps");

/* What sys_enter copied for sys_exit, per thread. */
struct inflight {
	__u32 nr;
	__u8 arch;
	__u8 kind;
	__u16 flags;
	__u64 args[6];
	union {
		struct dpt_paths paths;
		struct dpt_sockaddr_data sa;
	};
};

struct inflight_exec {
	__u32 nr;
	__u8 arch;
	__u8 kind;
	__u16 flags;
	__u64 args[6];
	struct dpt_execve_data data;
};

/* tid -> in-flight copy. LRU and preallocated: inserting never allocates, and
 * an entry orphaned by an Untrack mid-syscall ages out. An evicted entry only
 * degrades that record to a sys_exit copy (DPT_F_LATE). Exec entries are big
 * and rare, so they get their own smaller map. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct inflight);
} dpt_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct inflight_exec);
} dpt_inflight_exec SEC(".maps");

/* Staging areas: the entries are too big for the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inflight);
} dpt_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct inflight_exec);
} dpt_scratch_exec SEC(".maps");

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&dpt_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

/* Never lose silently: every failed reserve is counted against its cgroup. */
static __always_inline void count_lost(__u64 cgid)
{
	__u64 *v = bpf_map_lookup_elem(&dpt_lost, &cgid);

	stat_inc(DPT_STAT_LOST);
	if (v) {
		/* Per-CPU, but a preemptible kernel may run us twice on one CPU. */
		__sync_fetch_and_add(v, 1);
		return;
	}
	__u64 one = 1;
	bpf_map_update_elem(&dpt_lost, &cgid, &one, BPF_NOEXIST);
}

/*
 * bpf_ringbuf_query(AVAIL_DATA) reads the consumer position, a cache line the
 * reader on another CPU keeps writing: with bpf_stats it was about 150 ns of
 * a plain record's 550. So only records whose timestamp has bits 10-15 clear
 * (about one in 64 at high rates, none of them chosen by the traced program)
 * look; the reader is then woken a few dozen records past wakeup_bytes, and
 * polls on a timer anyway. A per-CPU counter would cost its own memory
 * access on every record. Forced wakeups (the records an exec's end waits
 * for) are never delayed.
 */
static __always_inline void submit(void *rec, bool force)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	const struct dpt_hdr *h = rec;

	if (force)
		flags = BPF_RB_FORCE_WAKEUP;
	else if (!(h->ts & 0xfc00) && bpf_ringbuf_query(&dpt_events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(rec, flags);
}

static __always_inline __u64 *tracked(__u64 *cgid)
{
	*cgid = bpf_get_current_cgroup_id();
	return bpf_map_lookup_elem(&dpt_tracked, cgid);
}

/*
 * On x86_64 a 32-bit task's syscalls arrive with i386 numbers and i386
 * argument registers. The kernel marks such a syscall with TS_COMPAT in
 * thread_info.status for its duration (and across the first return of an exec
 * into a 32-bit image). x32 syscalls carry X32_SYSCALL_BIT in the number.
 */
static __always_inline __u8 syscall_arch(struct task_struct *task, long id, __u32 *nr)
{
	if (id >= 0 && (id & X32_SYSCALL_BIT)) {
		*nr = id & ~X32_SYSCALL_BIT;
		return DPT_ARCH_X32;
	}
	*nr = (__u32)id;
	if (task->thread_info.status & TS_COMPAT)
		return DPT_ARCH_I386;
	return DPT_ARCH_X86_64;
}

static __always_inline struct dpt_class *class_of(__u8 arch, __u32 nr)
{
	if (nr >= DPT_NR_MAX || arch < DPT_ARCH_X86_64 || arch > DPT_ARCH_X32)
		return 0;
	__u32 idx = (arch - 1) * DPT_NR_MAX + nr;
	return bpf_map_lookup_elem(&dpt_classes, &idx);
}

static __always_inline void read_args(struct pt_regs *regs, __u8 arch, __u64 *a)
{
	if (arch == DPT_ARCH_I386) {
		/* i386 ABI: ebx, ecx, edx, esi, edi, ebp; 32-bit values. */
		a[0] = (__u32)regs->bx;
		a[1] = (__u32)regs->cx;
		a[2] = (__u32)regs->dx;
		a[3] = (__u32)regs->si;
		a[4] = (__u32)regs->di;
		a[5] = (__u32)regs->bp;
		return;
	}
	/* x86_64 syscall ABI: rdi, rsi, rdx, r10, r8, r9. */
	a[0] = regs->di;
	a[1] = regs->si;
	a[2] = regs->dx;
	a[3] = regs->r10;
	a[4] = regs->r8;
	a[5] = regs->r9;
}

/* A constant-index switch keeps the verifier away from variable stack reads. */
static __always_inline __u64 arg_at(const __u64 *a, __u8 i)
{
	switch (i) {
	case 0: return a[0];
	case 1: return a[1];
	case 2: return a[2];
	case 3: return a[3];
	case 4: return a[4];
	case 5: return a[5];
	}
	return 0;
}

static __always_inline void fill_hdr(struct dpt_hdr *h, __u8 kind, __u8 arch, __u16 flags,
				     __u64 cgid, __u64 cookie, struct task_struct *task)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u64 ug = bpf_get_current_uid_gid();

	h->kind = kind;
	h->arch = arch;
	h->flags = flags;
	h->pid = pt >> 32;
	h->tid = (__u32)pt;
	h->ppid = BPF_CORE_READ(task, real_parent, tgid);
	h->uid = (__u32)ug;
	h->gid = ug >> 32;
	h->ts = bpf_ktime_get_boot_ns();
	h->cgroup_id = cgid;
	h->cookie = cookie;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline void capture_paths(struct dpt_paths *d, const struct dpt_class *c, const __u64 *a)
{
	__u8 a0 = c->arg[0], a1 = c->arg[1];

	d->res[0] = 0;
	d->path[0][0] = 0;
	d->res[1] = 0;
	d->path[1][0] = 0;
	if (a0 < 6)
		d->res[0] = bpf_probe_read_user_str(d->path[0], DPT_PATH_LEN, (void *)arg_at(a, a0));
	if (a1 < 6)
		d->res[1] = bpf_probe_read_user_str(d->path[1], DPT_PATH_LEN, (void *)arg_at(a, a1));
}

static __always_inline void capture_sockaddr(struct dpt_sockaddr_data *d, __u64 ptr, __u64 len)
{
	d->len = 0;
	if (!ptr) {
		d->res = 1;
		return;
	}
	/* socklen_t is 32-bit; a negative length is the kernel's EINVAL. */
	__u32 l = (__u32)len;
	if (l > DPT_SOCKADDR_LEN)
		l = DPT_SOCKADDR_LEN;
	d->res = bpf_probe_read_user(d->addr, l, (void *)ptr);
	if (!d->res)
		d->len = l;
}

/* sendmsg: the address is msg_name/msg_namelen at the start of the msghdr. */
static __always_inline void capture_msghdr(struct dpt_sockaddr_data *d, __u64 msg, __u8 arch)
{
	__u64 name = 0, namelen = 0;

	if (arch == DPT_ARCH_I386) {
		__u32 m[2]; /* struct compat_msghdr { compat_uptr_t msg_name; int msg_namelen; ... } */
		if (bpf_probe_read_user(m, sizeof(m), (void *)msg)) {
			d->res = -14; /* EFAULT */
			d->len = 0;
			return;
		}
		name = m[0];
		namelen = m[1];
	} else {
		__u64 m[2]; /* struct user_msghdr { void *msg_name; int msg_namelen; ... } */
		if (bpf_probe_read_user(m, sizeof(m), (void *)msg)) {
			d->res = -14;
			d->len = 0;
			return;
		}
		name = m[0];
		namelen = (__u32)m[1];
	}
	capture_sockaddr(d, name, namelen);
}

static __always_inline void capture_data(struct inflight *e, const struct dpt_class *c, const __u64 *a, __u8 arch)
{
	switch (c->kind) {
	case DPT_CLS_PATH:
		capture_paths(&e->paths, c, a);
		break;
	case DPT_CLS_SOCKADDR:
		capture_sockaddr(&e->sa, arg_at(a, c->arg[0]), arg_at(a, c->arg[1]));
		break;
	case DPT_CLS_MSGHDR:
		capture_msghdr(&e->sa, arg_at(a, c->arg[0]), arch);
		break;
	}
}

/* Copies the execve path and up to DPT_ARGV_MAX argv strings. Returns flags. */
static __always_inline __u16 capture_execve(struct dpt_execve_data *d, const struct dpt_class *c,
					    const __u64 *a, __u8 arch)
{
	__u64 argv = arg_at(a, c->arg[1]);
	__u32 off = 0, argc = 0;
	__u16 flags = 0;
	int i;

	d->path[0] = 0;
	d->path_res = bpf_probe_read_user_str(d->path, DPT_PATH_LEN, (void *)arg_at(a, c->arg[0]));
	for (i = 0; i < DPT_ARGV_MAX; i++) {
		__u64 p = 0;

		if (arch == DPT_ARCH_I386) {
			__u32 p32;
			if (bpf_probe_read_user(&p32, sizeof(p32), (void *)(argv + 4 * i)))
				break;
			p = p32;
		} else if (bpf_probe_read_user(&p, sizeof(p), (void *)(argv + 8 * i))) {
			break;
		}
		if (!p)
			break;
		if (off > DPT_ARGV_LEN - DPT_ARG_LEN) {
			flags |= DPT_F_TRUNC;
			break;
		}
		long n = bpf_probe_read_user_str(&d->argv[off & (DPT_ARGV_LEN - 1)], DPT_ARG_LEN, (void *)p);
		if (n <= 0)
			break;
		if (n == DPT_ARG_LEN)
			flags |= DPT_F_TRUNC;
		off += n;
		argc++;
	}
	if (i == DPT_ARGV_MAX)
		flags |= DPT_F_TRUNC;
	d->argc = argc;
	d->argv_len = off;
	return flags;
}

/* args: as saved at sys_enter, or NULL to read them from regs. */
static __always_inline int emit_plain(struct pt_regs *regs, const __u64 *args, __u8 arch, __u32 nr, long ret,
				      __u16 flags, __u64 cgid, __u64 cookie, struct task_struct *task)
{
	struct dpt_syscall *r = bpf_ringbuf_reserve(&dpt_events, sizeof(*r), 0);

	if (!r) {
		count_lost(cgid);
		return 0;
	}
	fill_hdr(&r->hdr, DPT_EV_SYSCALL, arch, flags, cgid, cookie, task);
	if (args)
		__builtin_memcpy(r->args, args, sizeof(r->args));
	else
		read_args(regs, arch, r->args);
	r->ret = ret;
	r->nr = nr;
	r->reserved = 0;
	submit(r, false);
	return 0;
}

/*
 * sys_enter only does work for syscalls whose class says they carry pointer
 * data (copied now, before the kernel or another thread can change it much)
 * or never return. The class lookup comes first: it is an inlined array
 * access, so untracked tasks pay almost nothing for the other syscalls.
 */
SEC("tp_btf/sys_enter")
int BPF_PROG(dpt_sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 nr, zero = 0;
	__u8 arch = syscall_arch(task, id, &nr);
	struct dpt_class *c = class_of(arch, nr);
	__u64 cgid, *cookie, a[6];

	if (!c || c->kind == DPT_CLS_PLAIN)
		return 0;
	cookie = tracked(&cgid);
	if (!cookie)
		return 0;

	if (c->kind == DPT_CLS_NORETURN)
		return emit_plain(regs, 0, arch, nr, 0, DPT_F_NORETURN, cgid, *cookie, task);

	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	read_args(regs, arch, a);
	if (c->kind == DPT_CLS_EXEC) {
		struct inflight_exec *e = bpf_map_lookup_elem(&dpt_scratch_exec, &zero);
		if (!e)
			return 0;
		e->nr = nr;
		e->arch = arch;
		e->kind = c->kind;
		__builtin_memcpy(e->args, a, sizeof(a));
		e->flags = capture_execve(&e->data, c, a, arch);
		if (bpf_map_update_elem(&dpt_inflight_exec, &tid, e, BPF_ANY))
			stat_inc(DPT_STAT_INFLIGHT_FULL);
		return 0;
	}

	struct inflight *e = bpf_map_lookup_elem(&dpt_scratch, &zero);
	if (!e)
		return 0;
	e->nr = nr;
	e->arch = arch;
	e->kind = c->kind;
	e->flags = 0;
	__builtin_memcpy(e->args, a, sizeof(a));
	capture_data(e, c, a, arch);
	if (bpf_map_update_elem(&dpt_inflight, &tid, e, BPF_ANY))
		stat_inc(DPT_STAT_INFLIGHT_FULL);
	return 0;
}

static __always_inline int exit_execve(struct pt_regs *regs, struct dpt_class *c, __u8 arch, __u32 nr,
				       long ret, __u64 cgid, __u64 cookie, struct task_struct *task)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight_exec *e = bpf_map_lookup_elem(&dpt_inflight_exec, &tid);
	struct dpt_execve_event *r;

	if (e && e->nr != nr)
		e = 0; /* stale: left by a thread whose exit we missed */
	/* Keep clang from re-deriving "e != NULL" from the nr comparison,
	 * which the verifier cannot follow. */
	barrier_var(e);
	r = bpf_ringbuf_reserve(&dpt_events, sizeof(*r), 0);
	if (!r) {
		count_lost(cgid);
		if (e)
			bpf_map_delete_elem(&dpt_inflight_exec, &tid);
		return 0;
	}
	if (e) {
		/* Arguments as they were at sys_enter: a successful exec's exit
		 * runs with the new image's registers (and maybe another ABI). */
		fill_hdr(&r->sys.hdr, DPT_EV_EXECVE, e->arch, e->flags, cgid, cookie, task);
		__builtin_memcpy(r->sys.args, e->args, sizeof(r->sys.args));
		bpf_probe_read_kernel(&r->data, sizeof(r->data), &e->data);
		bpf_map_delete_elem(&dpt_inflight_exec, &tid);
	} else {
		__u16 flags = DPT_F_LATE;
		stat_inc(DPT_STAT_LATE);
		read_args(regs, arch, r->sys.args);
		if (ret == 0) {
			/* The old image's memory is gone. */
			flags |= DPT_F_NODATA;
			r->data.path_res = 0;
			r->data.path[0] = 0;
			r->data.argc = 0;
			r->data.argv_len = 0;
		} else {
			flags |= capture_execve(&r->data, c, r->sys.args, arch);
		}
		fill_hdr(&r->sys.hdr, DPT_EV_EXECVE, arch, flags, cgid, cookie, task);
	}
	r->sys.ret = ret;
	r->sys.nr = nr;
	r->sys.reserved = 0;
	submit(r, false);
	return 0;
}

static __always_inline int exit_data(struct pt_regs *regs, struct dpt_class *c, __u8 arch, __u32 nr,
				     long ret, __u64 cgid, __u64 cookie, struct task_struct *task)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight *e = bpf_map_lookup_elem(&dpt_inflight, &tid);
	__u16 flags = 0;
	__u64 a[6];
	__u8 kind = c->kind;

	if (e && (e->nr != nr || e->arch != arch))
		e = 0; /* stale */
	barrier_var(e); /* see exit_execve */
	if (e) {
		__builtin_memcpy(a, e->args, sizeof(a));
	} else {
		/* Denied by seccomp before sys_enter, or the copy was evicted. */
		flags = DPT_F_LATE;
		stat_inc(DPT_STAT_LATE);
		read_args(regs, arch, a);
	}

	if (kind == DPT_CLS_PATH) {
		struct dpt_path_event *r = bpf_ringbuf_reserve(&dpt_events, sizeof(*r), 0);
		if (!r)
			goto lost;
		if (e)
			bpf_probe_read_kernel(&r->data, sizeof(r->data), &e->paths);
		else
			capture_paths(&r->data, c, a);
		fill_hdr(&r->sys.hdr, DPT_EV_PATH, arch, flags, cgid, cookie, task);
		__builtin_memcpy(r->sys.args, a, sizeof(a));
		r->sys.ret = ret;
		r->sys.nr = nr;
		r->sys.reserved = 0;
		submit(r, false);
	} else {
		struct dpt_sockaddr_event *r = bpf_ringbuf_reserve(&dpt_events, sizeof(*r), 0);
		if (!r)
			goto lost;
		if (e)
			bpf_probe_read_kernel(&r->data, sizeof(r->data), &e->sa);
		else if (kind == DPT_CLS_MSGHDR)
			capture_msghdr(&r->data, arg_at(a, c->arg[0]), arch);
		else
			capture_sockaddr(&r->data, arg_at(a, c->arg[0]), arg_at(a, c->arg[1]));
		fill_hdr(&r->sys.hdr, DPT_EV_SOCKADDR, arch, flags, cgid, cookie, task);
		__builtin_memcpy(r->sys.args, a, sizeof(a));
		r->sys.ret = ret;
		r->sys.nr = nr;
		r->sys.reserved = 0;
		submit(r, false);
	}
	if (e)
		bpf_map_delete_elem(&dpt_inflight, &tid);
	return 0;
lost:
	count_lost(cgid);
	if (e)
		bpf_map_delete_elem(&dpt_inflight, &tid);
	return 0;
}

/* One record per syscall, emitted when it returns. */
SEC("tp_btf/sys_exit")
int BPF_PROG(dpt_sys_exit, struct pt_regs *regs, long ret)
{
	__u64 cgid, *cookie = tracked(&cgid);

	if (!cookie)
		return 0;

	struct task_struct *task = bpf_get_current_task_btf();
	long id = regs->orig_ax;
	__u32 nr;

	if (id == -1) {
		/* [rt_]sigreturn restored orig_ax = -1 from the signal frame
		 * (so that the interrupted syscall is not restarted). */
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		struct inflight *e = bpf_map_lookup_elem(&dpt_inflight, &tid);
		if (e && e->kind == DPT_CLS_SIGRETURN) {
			emit_plain(regs, e->args, e->arch, e->nr, ret, 0, cgid, *cookie, task);
			bpf_map_delete_elem(&dpt_inflight, &tid);
			return 0;
		}
	}
	__u8 arch = syscall_arch(task, id, &nr);
	struct dpt_class *c = class_of(arch, nr);
	__u8 kind = c ? c->kind : DPT_CLS_PLAIN;

	/* A new fork/clone child "returns" 0 through sys_exit without having
	 * entered; it is reported by sched_process_fork instead. */
	if (c && (c->flags & DPT_CLS_F_FORK) && ret == 0)
		return 0;

	if (kind == DPT_CLS_EXEC)
		return exit_execve(regs, c, arch, nr, ret, cgid, *cookie, task);
	if (kind == DPT_CLS_PATH || kind == DPT_CLS_SOCKADDR || kind == DPT_CLS_MSGHDR)
		return exit_data(regs, c, arch, nr, ret, cgid, *cookie, task);

	/* An exec into an image of the other ABI returns with the new ABI's
	 * TS_COMPAT state, so its number is looked up in the wrong table. */
	if (arch == DPT_ARCH_X86_64 || arch == DPT_ARCH_I386) {
		__u8 other = arch == DPT_ARCH_I386 ? DPT_ARCH_X86_64 : DPT_ARCH_I386;
		struct dpt_class *o = class_of(other, nr);
		if (o && o->kind == DPT_CLS_EXEC) {
			__u32 tid = (__u32)bpf_get_current_pid_tgid();
			if (bpf_map_lookup_elem(&dpt_inflight_exec, &tid))
				return exit_execve(regs, o, other, nr, ret, cgid, *cookie, task);
		}
	}
	return emit_plain(regs, 0, arch, nr, ret, 0, cgid, *cookie, task);
}

/*
 * sched_process_fork runs in the parent after the child is fully set up, with
 * the child already in its cgroup (inherited, or CLONE_INTO_CGROUP). Looking
 * up the child's cgroup rather than the parent's reports the daemon's clone of
 * a sandbox's first process too.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(dpt_sched_fork, struct task_struct *parent, struct task_struct *child)
{
	__u64 cgid = BPF_CORE_READ(child, cgroups, dfl_cgrp, kn, id);
	__u64 *cookie = bpf_map_lookup_elem(&dpt_tracked, &cgid);
	struct dpt_fork_event *r;
	__u32 ctgid, cpid;

	if (!cookie)
		return 0;
	r = bpf_ringbuf_reserve(&dpt_events, sizeof(*r), 0);
	if (!r) {
		count_lost(cgid);
		return 0;
	}
	ctgid = BPF_CORE_READ(child, tgid);
	cpid = BPF_CORE_READ(child, pid);
	fill_hdr(&r->hdr, DPT_EV_FORK, 0, ctgid == BPF_CORE_READ(parent, tgid) ? DPT_F_THREAD : 0,
		 cgid, *cookie, bpf_get_current_task_btf());
	r->child_pid = ctgid;
	r->child_tid = cpid;
	submit(r, false);
	return 0;
}

/*
 * sched_process_exec runs inside a successful execve, after de_thread(): when
 * a non-leader thread exec'ed it now has the leader's pid, so its in-flight
 * execve copy is moved to the new tid for sys_exit to find.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(dpt_sched_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u64 cgid, *cookie = tracked(&cgid);
	struct dpt_exec_event *r;

	if (!cookie)
		return 0;

	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 old = (__u32)old_pid;
	if (old != tid) {
		struct inflight_exec *e = bpf_map_lookup_elem(&dpt_inflight_exec, &old);
		if (e) {
			bpf_map_update_elem(&dpt_inflight_exec, &tid, e, BPF_ANY);
			bpf_map_delete_elem(&dpt_inflight_exec, &old);
		}
	}

	r = bpf_ringbuf_reserve(&dpt_events, sizeof(*r), 0);
	if (!r) {
		count_lost(cgid);
		return 0;
	}
	fill_hdr(&r->hdr, DPT_EV_EXEC, 0, 0, cgid, *cookie, bpf_get_current_task_btf());
	r->old_tid = old;
	r->filename[0] = 0;
	r->filename_res = bpf_probe_read_kernel_str(r->filename, sizeof(r->filename), BPF_CORE_READ(bprm, filename));
	submit(r, false);
	return 0;
}

/*
 * sched_process_exit runs in do_exit() of every thread, after exit_code is
 * set and signal->live is decremented. Exit records wake the reader at once:
 * they end an exec's stream and the daemon waits for them.
 */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(dpt_sched_exit, struct task_struct *p)
{
	__u64 cgid, *cookie = tracked(&cgid);
	struct dpt_exit_event *r;

	if (!cookie)
		return 0;

	/* A thread killed inside a syscall never reaches sys_exit. */
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_delete_elem(&dpt_inflight, &tid);
	bpf_map_delete_elem(&dpt_inflight_exec, &tid);

	r = bpf_ringbuf_reserve(&dpt_events, sizeof(*r), 0);
	if (!r) {
		count_lost(cgid);
		return 0;
	}
	fill_hdr(&r->hdr, DPT_EV_EXIT, 0, BPF_CORE_READ(p, signal, live.counter) == 0 ? DPT_F_GROUP_DEAD : 0,
		 cgid, *cookie, bpf_get_current_task_btf());
	r->exit_code = BPF_CORE_READ(p, exit_code);
	r->reserved = 0;
	submit(r, true);
	return 0;
}
