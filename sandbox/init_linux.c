// The init helper: the daemon's own binary re-executed as
// `deputyd __deputy_init`, as `runc init` is runc. Like runc's nsexec, it
// runs from an ELF constructor, before the Go runtime starts: the process
// is single-threaded, so every per-thread attribute set here (credentials,
// no_new_privs, Landlock, seccomp) holds for the whole process, and the
// command starts in a few hundred microseconds instead of the 15 ms a Go
// runtime and its package initializers take.
//
// It only carries out decisions: the daemon validated the spec, compiled
// the seccomp filter and the Landlock rights (initspec_linux.go). Every
// failure goes back to the daemon on the sync pipe as a JSON line with the
// step, a kind and a message (initerror.go), and the helper exits 255.

#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/seccomp.h>

// Kernel interfaces newer than some build hosts' headers.
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#define DEPUTY_MOUNT_ATTR_RDONLY 0x1
#define DEPUTY_MOUNT_ATTR_NOSUID 0x2
#define DEPUTY_MOUNT_ATTR_NODEV 0x4
#define DEPUTY_MOUNT_ATTR_NOEXEC 0x8
#define DEPUTY_LANDLOCK_RULE_PATH_BENEATH 1

struct deputy_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};
struct deputy_landlock_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};
struct deputy_landlock_path_beneath_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

// Wire format: see initspec_linux.go; the numbers must match its tags.
#define SPEC_MAGIC "DEPUTY\0\1"
#define SPEC_MAGIC_LEN 8
#define SPEC_MAX (16 << 20)
enum {
	SPEC_ARGV = 1, SPEC_ENV, SPEC_PROGRAM, SPEC_CWD, SPEC_UID, SPEC_GID,
	SPEC_LOOPBACK, SPEC_READONLY, SPEC_HIDDEN, SPEC_TMPBYTES, SPEC_PROC,
	SPEC_LANDLOCK, SPEC_LANDLOCK_RULE, SPEC_RLIMIT_NOFILE, SPEC_RLIMIT_CORE,
	SPEC_SECCOMP, SPEC_CWD_ROOT, SPEC_ALLOW_NO_SECCOMP,
};

struct strlist {
	char **v;
	size_t n, cap;
};

struct llrule {
	uint64_t access;
	const char *path;
};

struct spec {
	struct strlist argv, env, readonly, hidden, cwd_roots;
	const char *program, *cwd;
	uint64_t uid, gid, tmp_bytes, nofile, core;
	int has_uid, has_gid, has_nofile, loopback, proc, landlock, allow_no_seccomp;
	uint64_t ll_handled, ll_scoped, ll_filemask;
	struct llrule *rules;
	size_t nrules, caprules;
	const unsigned char *seccomp;
	size_t seccomp_len;
};

static int sync_fd = -1;

// json_string writes s as a JSON string body into out (at most cap bytes,
// always terminated).
static void json_string(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	for (; *s && o + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
}

static void write_all(int fd, const char *buf, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, buf, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		buf += w;
		n -= (size_t)w;
	}
}

// fail reports the failed step to the daemon and ends the helper. kind is
// one of initerror.go's ErrorKind values.
__attribute__((noreturn, format(printf, 3, 4)))
static void fail(const char *step, const char *kind, const char *fmt, ...)
{
	char msg[4096], esc[8192], line[8448];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_string(esc, sizeof esc, msg);
	int n = snprintf(line, sizeof line, "{\"type\":\"error\",\"error\":{\"step\":\"%s\",\"kind\":\"%s\",\"msg\":\"%s\"}}\n", step, kind, esc);
	if (n > (int)sizeof line - 1)
		n = (int)sizeof line - 1;
	if (sync_fd >= 0)
		write_all(sync_fd, line, (size_t)n);
	else
		write_all(2, line, (size_t)n);
	_exit(255);
}

// errstr is strerror in the lower case Go uses for the same errors, so
// that messages read the same whichever side produced them.
static const char *errstr(int err)
{
	static char buf[256];
	snprintf(buf, sizeof buf, "%s", strerror(err));
	buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}

#define SETUP "setup"
#define NOT_FOUND "not_found"
#define PERMISSION "permission"
#define INVALID "invalid"

static int inherited_fd(const char *env)
{
	const char *v = getenv(env);
	if (v == NULL || *v == 0)
		return -1;
	char *end;
	long fd = strtol(v, &end, 10);
	if (*end != 0 || fd < 3 || fd > INT_MAX)
		return -2;
	return (int)fd;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (q == NULL)
		fail("spec", SETUP, "out of memory");
	return q;
}

static void push(struct strlist *l, char *s)
{
	if (l->n + 2 > l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = xrealloc(l->v, l->cap * sizeof *l->v);
	}
	l->v[l->n++] = s;
	l->v[l->n] = NULL; // argv and envp must be NULL-terminated
}

static unsigned char *read_spec(int fd, size_t *len)
{
	size_t cap = 64 << 10, n = 0;
	unsigned char *buf = xrealloc(NULL, cap);
	for (;;) {
		if (n == cap) {
			if (cap >= SPEC_MAX)
				fail("spec", SETUP, "spec exceeds %d bytes", SPEC_MAX);
			cap *= 2;
			buf = xrealloc(buf, cap);
		}
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail("spec", SETUP, "read spec: read: %s", errstr(errno));
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*len = n;
	return buf;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return v;
}

// parse_spec decodes the wire form in place: each string is terminated by
// overwriting the first byte of the following record's header, after that
// header has been read.
static void parse_spec(unsigned char *buf, size_t len, struct spec *s)
{
	if (len == 0)
		fail("spec", SETUP, "daemon sent no spec"); // it gave up on this exec
	if (len < SPEC_MAGIC_LEN || memcmp(buf, SPEC_MAGIC, SPEC_MAGIC_LEN) != 0)
		fail("spec", SETUP, "decode spec: bad magic (helper and daemon binaries differ?)");
	// One spare byte so the last string can be terminated too.
	buf = xrealloc(buf, len + 1);
	size_t off = SPEC_MAGIC_LEN;
	char *pending = NULL; // string awaiting its terminator
	size_t pending_len = 0;
	while (off < len) {
		if (len - off < 6)
			fail("spec", SETUP, "decode spec: truncated record header at byte %zu", off);
		uint16_t tag;
		uint32_t n;
		memcpy(&tag, buf + off, 2);
		memcpy(&n, buf + off + 2, 4);
		if (pending) {
			pending[pending_len] = 0;
			pending = NULL;
		}
		off += 6;
		if (n > len - off)
			fail("spec", SETUP, "decode spec: record %u of %u bytes overruns the spec", tag, n);
		unsigned char *p = buf + off;
		off += n;
		char *str = (char *)p;
		int is_str = 1;
		switch (tag) {
		case SPEC_ARGV: push(&s->argv, str); break;
		case SPEC_ENV: push(&s->env, str); break;
		case SPEC_PROGRAM: s->program = str; break;
		case SPEC_CWD: s->cwd = str; break;
		case SPEC_READONLY: push(&s->readonly, str); break;
		case SPEC_HIDDEN: push(&s->hidden, str); break;
		case SPEC_CWD_ROOT: push(&s->cwd_roots, str); break;
		case SPEC_LANDLOCK_RULE:
			if (n < 8)
				fail("spec", SETUP, "decode spec: short landlock rule");
			if (s->nrules == s->caprules) {
				s->caprules = s->caprules ? 2 * s->caprules : 64;
				s->rules = xrealloc(s->rules, s->caprules * sizeof *s->rules);
			}
			if (memchr(p + 8, 0, n - 8) != NULL)
				fail("spec", SETUP, "decode spec: landlock rule holds a NUL byte");
			s->rules[s->nrules].access = get_u64(p);
			s->rules[s->nrules++].path = str + 8;
			pending = str;
			pending_len = n;
			continue;
		case SPEC_SECCOMP:
			s->seccomp = p;
			s->seccomp_len = n;
			is_str = 0;
			break;
		default:
			is_str = 0;
			if (tag == SPEC_LANDLOCK) {
				if (n != 24)
					fail("spec", SETUP, "decode spec: landlock record of %u bytes", n);
				s->landlock = 1;
				s->ll_handled = get_u64(p);
				s->ll_scoped = get_u64(p + 8);
				s->ll_filemask = get_u64(p + 16);
				break;
			}
			if (n != 8)
				fail("spec", SETUP, "decode spec: unknown record %u of %u bytes", tag, n);
			uint64_t v = get_u64(p);
			switch (tag) {
			case SPEC_UID: s->uid = v; s->has_uid = 1; break;
			case SPEC_GID: s->gid = v; s->has_gid = 1; break;
			case SPEC_LOOPBACK: s->loopback = v != 0; break;
			case SPEC_TMPBYTES: s->tmp_bytes = v; break;
			case SPEC_PROC: s->proc = v != 0; break;
			case SPEC_RLIMIT_NOFILE: s->nofile = v; s->has_nofile = 1; break;
			case SPEC_RLIMIT_CORE: s->core = v; break;
			case SPEC_ALLOW_NO_SECCOMP: s->allow_no_seccomp = v != 0; break;
			default: fail("spec", SETUP, "decode spec: unknown record %u", tag);
			}
		}
		if (is_str) {
			if (memchr(p, 0, n) != NULL)
				fail("spec", SETUP, "decode spec: record %u holds a NUL byte", tag);
			pending = str;
			pending_len = n;
		}
	}
	if (pending)
		pending[pending_len] = 0;
	// The daemon validated the spec; these are the checks that must hold
	// whatever it sent, because the helper is still root here.
	if (s->argv.n == 0 || s->argv.v[0][0] == 0)
		fail("spec", INVALID, "invalid sandbox spec (argv): empty command");
	if (s->cwd == NULL || s->cwd[0] != '/')
		fail("spec", INVALID, "invalid sandbox spec (cwd): no absolute cwd");
	if (!s->has_uid || !s->has_gid || s->uid == 0 || s->gid == 0 || s->uid > UINT32_MAX - 1 || s->gid > UINT32_MAX - 1)
		fail("spec", INVALID, "invalid sandbox spec (identity): refusing to run as uid %llu gid %llu: agents never run as root",
		     (unsigned long long)s->uid, (unsigned long long)s->gid);
	if (s->seccomp_len == 0 && !s->allow_no_seccomp)
		fail("spec", INVALID, "invalid sandbox spec (seccomp): no seccomp filter: refusing to run unfiltered");
	if (s->seccomp_len % sizeof(struct sock_filter) != 0 || s->seccomp_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
		fail("spec", INVALID, "invalid sandbox spec (seccomp): program of %zu bytes", s->seccomp_len);
	if (s->env.v == NULL) // an empty environment is still a NULL-terminated array
		s->env.v = xrealloc(NULL, sizeof *s->env.v), s->env.v[0] = NULL;
}

static int within(const char *p, const char *dir)
{
	size_t n = strlen(dir);
	if (strcmp(dir, "/") == 0)
		return 1;
	return strncmp(p, dir, n) == 0 && (p[n] == 0 || p[n] == '/');
}

// bind_readonly makes p and every mount below it read-only, nosuid and
// nodev. mount_setattr with AT_RECURSIVE covers submounts atomically, which
// a per-mount MS_REMOUNT loop would race with.
static void bind_readonly(const char *p)
{
	struct stat st;
	// Fail closed. A missing protected path could be created by an agent
	// with write access to its parent (the daemon creates them at start); a
	// symlink would make the mount protect whatever it points to.
	if (lstat(p, &st) != 0)
		fail("mount", SETUP, "protected path %s: lstat %s: %s", p, p, errstr(errno));
	if (S_ISLNK(st.st_mode))
		fail("mount", SETUP, "protected path %s is a symlink; protect its target instead", p);
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) != 0)
		fail("mount", SETUP, "bind %s: mount: %s", p, errstr(errno));
	struct deputy_mount_attr attr = {.attr_set = DEPUTY_MOUNT_ATTR_RDONLY | DEPUTY_MOUNT_ATTR_NOSUID | DEPUTY_MOUNT_ATTR_NODEV};
	if (syscall(SYS_mount_setattr, AT_FDCWD, p, AT_RECURSIVE | AT_SYMLINK_NOFOLLOW, &attr, sizeof attr) != 0)
		fail("mount", SETUP, "make %s read-only: mount_setattr: %s", p, errstr(errno));
}

// hide covers p: a directory with an empty read-only tmpfs, anything else
// (a file, a socket such as /dev/log) with /dev/null. Symlinks are
// followed, so the target is what gets covered.
static void hide(const char *p)
{
	struct stat st;
	if (stat(p, &st) != 0) {
		if (errno == ENOENT)
			return;
		fail("mount", SETUP, "hide %s: stat %s: %s", p, p, errstr(errno));
	}
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=000") != 0)
			fail("mount", SETUP, "hide %s: mount: %s", p, errstr(errno));
		return;
	}
	if (mount("/dev/null", p, NULL, MS_BIND, NULL) != 0)
		fail("mount", SETUP, "hide %s: mount: %s", p, errstr(errno));
	struct deputy_mount_attr attr = {.attr_set = DEPUTY_MOUNT_ATTR_RDONLY | DEPUTY_MOUNT_ATTR_NOSUID |
						     DEPUTY_MOUNT_ATTR_NODEV | DEPUTY_MOUNT_ATTR_NOEXEC};
	if (syscall(SYS_mount_setattr, AT_FDCWD, p, AT_SYMLINK_NOFOLLOW, &attr, sizeof attr) != 0)
		fail("mount", SETUP, "hide %s read-only: mount_setattr: %s", p, errstr(errno));
}

// setup_mounts builds the exec's mount namespace, which clone created, so
// nothing here is visible on the host.
static void setup_mounts(const struct spec *s)
{
	// Stop propagation both ways first: without this, a shared root mount
	// would copy every mount below into the host's namespace.
	if (mount("", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		fail("mount", SETUP, "make / private: mount: %s", errstr(errno));
	// Protected paths first, while the host's tree is still what we see:
	// one under /tmp is then covered by the private /tmp, as it should be.
	for (size_t i = 0; i < s->readonly.n; i++)
		bind_readonly(s->readonly.v[i]);
	// Private, size-limited scratch space. /dev/shm too: otherwise "move
	// to another filesystem" would land in the host's shared memory.
	if (s->tmp_bytes > 0) {
		char opts[64];
		snprintf(opts, sizeof opts, "mode=1777,size=%llu", (unsigned long long)s->tmp_bytes);
		const char *dirs[] = {"/tmp", "/dev/shm"};
		for (int i = 0; i < 2; i++)
			if (mount("tmpfs", dirs[i], "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0)
				fail("mount", SETUP, "mount tmpfs on %s: mount: %s", dirs[i], errstr(errno));
	}
	// A /proc that matches the new pid namespace: the agent sees only its
	// own processes and no host process's /proc/<pid>/root or fd links.
	if (s->proc && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
		fail("mount", SETUP, "mount proc on /proc: mount: %s", errstr(errno));
	// Hidden paths go last so that they also cover anything inside a
	// read-only tree.
	for (size_t i = 0; i < s->hidden.n; i++)
		hide(s->hidden.v[i]);
}

static void loopback_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		fail("network", SETUP, "socket: %s", errstr(errno));
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0)
		fail("network", SETUP, "get flags of lo: ioctl: %s", errstr(errno));
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
		fail("network", SETUP, "bring up lo: ioctl: %s", errstr(errno));
	close(fd);
}

static void set_rlimits(const struct spec *s)
{
	struct rlimit core = {s->core, s->core};
	if (setrlimit(RLIMIT_CORE, &core) != 0)
		fail("rlimit", SETUP, "setrlimit RLIMIT_CORE=%llu: %s", (unsigned long long)s->core, errstr(errno));
	if (s->has_nofile) {
		struct rlimit nofile = {s->nofile, s->nofile};
		if (setrlimit(RLIMIT_NOFILE, &nofile) != 0)
			fail("rlimit", SETUP, "setrlimit RLIMIT_NOFILE=%llu: %s", (unsigned long long)s->nofile, errstr(errno));
	}
}

// restrict_landlock opens each granted path (after the mounts, so /tmp,
// /dev/shm and /proc are the exec's own) and enforces the ruleset. Paths
// are opened while still root, so a grant the agent itself could not open
// still becomes a rule.
static void restrict_landlock(const struct spec *s)
{
	struct deputy_landlock_ruleset_attr attr = {.handled_access_fs = s->ll_handled, .scoped = s->ll_scoped};
	int rfd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (rfd < 0)
		fail("landlock", SETUP, "build landlock ruleset: landlock_create_ruleset: %s", errstr(errno));
	for (size_t i = 0; i < s->nrules; i++) {
		const char *p = s->rules[i].path;
		int fd = open(p, O_PATH | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue; // a rule needs an inode
			fail("landlock", SETUP, "open %s: %s", p, errstr(errno));
		}
		struct stat st;
		if (fstat(fd, &st) != 0)
			fail("landlock", SETUP, "stat %s: %s", p, errstr(errno));
		struct deputy_landlock_path_beneath_attr pb = {.allowed_access = s->rules[i].access, .parent_fd = fd};
		if (!S_ISDIR(st.st_mode))
			pb.allowed_access &= s->ll_filemask;
		if (syscall(SYS_landlock_add_rule, rfd, DEPUTY_LANDLOCK_RULE_PATH_BENEATH, &pb, 0) != 0)
			fail("landlock", SETUP, "build landlock ruleset: add rule for %s: landlock_add_rule: %s", p, errstr(errno));
		close(fd);
	}
	if (syscall(SYS_landlock_restrict_self, rfd, 0) != 0)
		fail("landlock", SETUP, "enforce landlock ruleset: landlock_restrict_self: %s", errstr(errno));
	close(rfd);
}

// check_executable answers for this uid and, through Landlock, for this
// sandbox: the same checks execve will make. It returns 0, or fails.
// When soft, a failure is returned (1: permission) instead, for lookups.
static int check_executable(const char *p, int soft, char *why, size_t whylen)
{
	struct stat st;
	if (stat(p, &st) != 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR) {
			if (soft)
				return 2;
			fail("lookup", NOT_FOUND, "%s: no such file", p);
		}
		snprintf(why, whylen, "%s: stat %s: %s", p, p, errstr(e));
	} else if (S_ISDIR(st.st_mode)) {
		snprintf(why, whylen, "%s: is a directory", p);
	} else if (syscall(SYS_faccessat2, AT_FDCWD, p, X_OK, AT_EACCESS) != 0) {
		snprintf(why, whylen, "%s: not executable in this sandbox (%s): is its directory in the profile's filesystem.exec?", p, errstr(errno));
	} else {
		return 0;
	}
	if (soft)
		return 1;
	fail("lookup", PERMISSION, "%s", why);
}

// look_path resolves argv[0] against the command's own PATH, after
// confinement, so that "not found" means not reachable for the agent.
static const char *look_path(const char *name, const struct strlist *env)
{
	static char why[PATH_MAX + 256], denied[PATH_MAX + 256];
	if (strchr(name, '/') != NULL) {
		check_executable(name, 0, why, sizeof why);
		return name;
	}
	const char *path = "/usr/local/bin:/usr/bin:/bin";
	for (size_t i = 0; i < env->n; i++)
		if (strncmp(env->v[i], "PATH=", 5) == 0)
			path = env->v[i] + 5;
	denied[0] = 0;
	const char *dir = path;
	for (;;) {
		const char *end = strchr(dir, ':');
		size_t n = end ? (size_t)(end - dir) : strlen(dir);
		while (n > 1 && dir[n - 1] == '/')
			n--;
		// A relative entry would depend on cwd: skip it.
		if (n > 0 && dir[0] == '/') {
			char *p = xrealloc(NULL, n + strlen(name) + 2);
			sprintf(p, "%.*s/%s", (int)n, n == 1 ? "" : dir, name);
			int r = check_executable(p, 1, why, sizeof why);
			if (r == 0)
				return p;
			if (r == 1 && denied[0] == 0)
				snprintf(denied, sizeof denied, "%s", why);
			free(p);
		}
		if (end == NULL)
			break;
		dir = end + 1;
	}
	if (denied[0])
		fail("lookup", PERMISSION, "%s", denied);
	fail("lookup", NOT_FOUND, "%s: command not found in PATH %s", name, path);
}

static void install_seccomp(const struct spec *s)
{
	// The kernel waives no_new_privs for CAP_SYS_ADMIN; require it anyway,
	// so the filter never depends on what the helper still holds.
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		fail("seccomp", SETUP, "seccomp install: no_new_privs is not set");
	struct sock_filter *insns = xrealloc(NULL, s->seccomp_len);
	memcpy(insns, s->seccomp, s->seccomp_len); // aligned for the kernel's u32 reads
	struct sock_fprog prog = {.len = (unsigned short)(s->seccomp_len / sizeof *insns), .filter = insns};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		fail("seccomp", SETUP, "seccomp install: seccomp(SECCOMP_SET_MODE_FILTER): %s", errstr(errno));
}

// deputy_init is the helper's whole life: it confines itself in a fixed
// order, each step saying why it is where it is, and executes the command.
static void deputy_init(void)
{
	sync_fd = inherited_fd("_DEPUTY_SYNCFD");
	if (sync_fd < 0) {
		sync_fd = -1; // no channel to the daemon: all we can do is fail loudly
		fail("init", SETUP, "sync pipe: bad fd in _DEPUTY_SYNCFD");
	}
	// 1. The spec. The daemon writes it only after it has placed this
	// process in its cgroup v1 controllers (on v2 the clone already did),
	// so blocking here means no command instruction runs outside its limits.
	int spec_fd = inherited_fd("_DEPUTY_SPECFD");
	if (spec_fd < 0)
		fail("spec", SETUP, "spec pipe: bad fd in _DEPUTY_SPECFD");
	size_t len;
	unsigned char *buf = read_spec(spec_fd, &len);
	close(spec_fd);
	struct spec s;
	memset(&s, 0, sizeof s);
	parse_spec(buf, len, &s);

	// 1b. The agent's network namespace (loopback only), joined before
	// anything else; the daemon then created no namespace for this exec.
	int ns_fd = inherited_fd("_DEPUTY_NETNSFD");
	if (ns_fd == -2)
		fail("network", SETUP, "netns: bad fd in _DEPUTY_NETNSFD");
	if (ns_fd >= 0) {
		if (setns(ns_fd, CLONE_NEWNET) != 0)
			fail("network", SETUP, "join the agent's network namespace: setns: %s", errstr(errno));
		close(ns_fd);
	}

	// 2. Mounts, while still root in the new mount namespace: the
	// protected paths become read-only, secrets are covered, /tmp and /proc
	// are private. Landlock later narrows what is reachable at all; the
	// read-only mounts stop what Landlock does not cover (chmod, chown,
	// utimes, xattrs) even where a grant overlaps.
	setup_mounts(&s);

	// 3. Hostname of the private UTS namespace, so logs inside name it.
	if (sethostname("deputy", 6) != 0)
		fail("hostname", SETUP, "sethostname: %s", errstr(errno));

	// 3b. Loopback, while we still have CAP_NET_ADMIN in the new network
	// namespace.
	if (s.loopback)
		loopback_up();

	// 4. Rlimits, while we may still raise them.
	set_rlimits(&s);

	// 5. no_new_privs: a setuid or file-capability binary can never regain
	// privileges, and Landlock and seccomp are enforced without relying on
	// CAP_SYS_ADMIN. It is inherited across execve.
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail("no_new_privs", SETUP, "prctl: %s", errstr(errno));

	// 6. Landlock, while still root (see restrict_landlock). The domain is
	// inherited by the command and everything it starts.
	if (s.landlock)
		restrict_landlock(&s);

	// 7. Credentials: supplementary groups first (they would keep root's),
	// then gid, then uid (after which gid could not change). All saved ids
	// too, so there is no way back. Raw syscalls: this process has one
	// thread, so glibc's all-threads broadcast would only cost time.
	if (syscall(SYS_setgroups, 0, NULL) != 0)
		fail("credentials", SETUP, "setgroups: %s", errstr(errno));
	if (syscall(SYS_setresgid, (gid_t)s.gid, (gid_t)s.gid, (gid_t)s.gid) != 0)
		fail("credentials", SETUP, "setresgid: %s", errstr(errno));
	if (syscall(SYS_setresuid, (uid_t)s.uid, (uid_t)s.uid, (uid_t)s.uid) != 0)
		fail("credentials", SETUP, "setresuid: %s", errstr(errno));
	// Changing credentials clears the parent-death signal; set it again so
	// the command dies with the daemon even before the daemon's cleanup.
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
		fail("pdeathsig", SETUP, "prctl: %s", errstr(errno));

	// 8. The working directory, as the agent, so its own permissions and
	// Landlock decide.
	if (chdir(s.cwd) != 0) {
		int e = errno;
		fail("cwd", (e == EACCES || e == EPERM) ? PERMISSION : INVALID, "chdir %s: %s", s.cwd, errstr(e));
	}
	// chdir followed symlinks: check where it really led, with the rules
	// the daemon applied to the requested path (sandbox.CwdAllowed).
	char wd[PATH_MAX];
	if (getcwd(wd, sizeof wd) == NULL || wd[0] != '/')
		fail("cwd", INVALID, "getcwd after chdir %s: %s", s.cwd, errstr(errno));
	if (within(wd, "/proc"))
		fail("cwd", INVALID, "cwd %s resolves to %s: cwd %s: a working directory under /proc is not allowed", s.cwd, wd, wd);
	int allowed = 0;
	for (size_t i = 0; i < s.cwd_roots.n && !allowed; i++)
		allowed = within(wd, s.cwd_roots.v[i]);
	if (!allowed)
		fail("cwd", INVALID, "cwd %s resolves to %s: cwd %s is outside the profile's filesystem paths", s.cwd, wd, wd);

	// 9. Find the program the way a shell would, inside the sandbox, unless
	// the daemon's command rules already judged one file: then exactly that
	// one runs, or nothing.
	char why[PATH_MAX + 256];
	const char *path = s.program;
	if (path != NULL)
		check_executable(path, 0, why, sizeof why);
	else
		path = look_path(s.argv.v[0], &s.env);

	// 10. Close every descriptor but stdio and the sync pipe at execve.
	// CVE-2024-21626 (runc) leaked a host directory fd into the container;
	// marking all of them close-on-exec rules that out for any fd we forgot.
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
		fail("close fds", SETUP, "close_range: %s", errstr(errno));

	// 11. Tell the daemon we are about to execute; from here only execve
	// (or its failure) follows. EOF (the pipe is close-on-exec) then means
	// the command is running.
	static const char marker[] = "{\"type\":\"exec\"}\n";
	if (write(sync_fd, marker, sizeof marker - 1) != (ssize_t)(sizeof marker - 1))
		fail("sync", SETUP, "write: %s", errstr(errno));

	// 12. Seccomp last: the filter denies syscalls the setup above needs
	// (mount, setns, prctl variants).
	if (s.seccomp_len > 0)
		install_seccomp(&s);

	// 13. execve. It only returns on failure.
	execve(path, s.argv.v, s.env.v);
	int e = errno;
	fail("execve", e == ENOENT ? NOT_FOUND : (e == EACCES || e == EPERM) ? PERMISSION : SETUP,
	     "execve %s: %s", path, errstr(e));
}

// glibc passes argc and argv to ELF constructors. Any binary that links
// this package becomes the helper when started with this argv[1], and no
// Go code ever runs in it.
__attribute__((constructor)) static void deputy_init_dispatch(int argc, char **argv)
{
	if (argc > 1 && argv != NULL && strcmp(argv[1], "__deputy_init") == 0) {
		deputy_init();
		_exit(255); // not reached: deputy_init executes or fails
	}
}
