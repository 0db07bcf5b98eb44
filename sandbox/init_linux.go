package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/deputyhq/deputy/sandbox/landlock"
	"github.com/deputyhq/deputy/sandbox/seccomp"
)

// InitArg is argv[1] of the re-executed daemon binary in init-helper mode,
// as `runc init` is for runc.
const InitArg = "__deputy_init"

// Environment variables that carry the helper's inherited fd numbers (as
// runc's _LIBCONTAINER_*): the spec pipe (read until EOF) and the sync pipe
// (errors back to the daemon; close-on-exec, so EOF means execve happened).
const (
	envSpecFD  = "_DEPUTY_SPECFD"
	envSyncFD  = "_DEPUTY_SYNCFD"
	envNetNSFD = "_DEPUTY_NETNSFD" // the agent's network namespace to join, if any
)

// IsInit reports whether this process was started as the init helper.
func IsInit() bool { return len(os.Args) > 1 && os.Args[1] == InitArg }

// Init is the init helper's whole life: it confines itself and executes the
// command, or reports why it could not and exits 255. It never returns.
// cmd/deputyd calls it from init(), before main and before any goroutine of
// the program starts, on the main thread.
func Init() {
	// Landlock (before ABI 8), seccomp without TSYNC, credentials set by raw
	// syscalls and no_new_privs are per-thread state. Everything from here to
	// execve must happen on this one thread, and execve from it too, or the
	// command could start on a thread that was never confined.
	runtime.LockOSThread()

	syncPipe, err := inheritedFile(envSyncFD, "sync")
	if err != nil {
		// No channel to the daemon: all we can do is exit loudly.
		fmt.Fprintf(os.Stderr, "deputy init: %v\n", err)
		os.Exit(255)
	}
	ierr := initSandbox(syncPipe)
	if ierr == nil {
		ierr = &InitError{Step: "execve", Kind: KindSetup, Msg: "returned without error"}
	}
	_ = json.NewEncoder(syncPipe).Encode(syncMsg{Type: "error", Error: ierr})
	os.Exit(255)
}

func inheritedFile(env, name string) (*os.File, error) {
	fd, err := strconv.Atoi(os.Getenv(env))
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s pipe: bad fd %q in %s", name, os.Getenv(env), env)
	}
	return os.NewFile(uintptr(fd), name), nil
}

func fail(step string, kind ErrorKind, err error) *InitError {
	return &InitError{Step: step, Kind: kind, Msg: err.Error()}
}

// initSandbox applies the confinement in a fixed order. Each step says why
// it is where it is. It returns only on failure (or if execve returns).
func initSandbox(syncPipe *os.File) *InitError {
	// 1. The spec. The daemon writes it only after it has placed this
	// process in its cgroup v1 controllers (on v2 the clone already did), so
	// blocking here means no command instruction ever runs outside its
	// limits.
	specFile, err := inheritedFile(envSpecFD, "spec")
	if err != nil {
		return fail("spec", KindSetup, err)
	}
	var spec Spec
	data, err := io.ReadAll(io.LimitReader(specFile, 16<<20))
	specFile.Close()
	if err != nil {
		return fail("spec", KindSetup, fmt.Errorf("read spec: %w", err))
	}
	if len(data) == 0 {
		// The daemon closed the pipe without a spec: it gave up on this exec.
		return fail("spec", KindSetup, errors.New("daemon sent no spec"))
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return fail("spec", KindSetup, fmt.Errorf("decode spec: %w", err))
	}
	if err := spec.Validate(); err != nil {
		return fail("spec", KindInvalid, err)
	}
	// Compile nothing here: the filter arrives as a finished program, so the
	// helper only has to install it (and a golden test covers the program).
	var filter *seccomp.Filter
	if len(spec.Seccomp) > 0 {
		if filter, err = seccomp.FilterFromBytes(spec.Seccomp); err != nil {
			return fail("seccomp", KindSetup, err)
		}
	}

	// 1b. The agent's network namespace (loopback only), joined before
	// anything else; the daemon then created no namespace for this exec.
	if os.Getenv(envNetNSFD) != "" {
		ns, err := inheritedFile(envNetNSFD, "netns")
		if err != nil {
			return fail("network", KindSetup, err)
		}
		err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
		ns.Close()
		if err != nil {
			return fail("network", KindSetup, fmt.Errorf("join the agent's network namespace: %w", os.NewSyscallError("setns", err)))
		}
	}

	// 2. Mounts, while still root in the new mount namespace: the protected
	// paths become read-only, secrets are covered, /tmp and /proc are
	// private. Landlock later narrows what is reachable at all; the
	// read-only mounts stop what Landlock does not cover (chmod, chown,
	// utimes, xattrs) even where a grant overlaps.
	if err := setupMounts(&spec.Mounts); err != nil {
		return fail("mount", KindSetup, err)
	}

	// 3. Hostname of the private UTS namespace, so logs inside name the exec.
	if err := unix.Sethostname([]byte("deputy")); err != nil {
		return fail("hostname", KindSetup, os.NewSyscallError("sethostname", err))
	}

	// 3b. Loopback, while we still have CAP_NET_ADMIN in the new network
	// namespace.
	if spec.Loopback {
		if err := loopbackUp(); err != nil {
			return fail("network", KindSetup, err)
		}
	}

	// 4. Rlimits, while we may still raise them (an unprivileged process can
	// only lower them).
	if err := setRlimits(spec.Rlimits); err != nil {
		return fail("rlimit", KindSetup, err)
	}

	// 5. no_new_privs on this thread: a setuid or file-capability binary can
	// never regain privileges, and Landlock and seccomp can be enforced
	// without relying on CAP_SYS_ADMIN. It is inherited across execve.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail("no_new_privs", KindSetup, os.NewSyscallError("prctl", err))
	}

	// 6. Landlock on this thread, while still root: paths are opened for the
	// ruleset with the daemon's rights, so a grant the agent itself could not
	// open still becomes a rule. The domain is inherited by the command at
	// execve from this thread, and by everything it starts.
	if !spec.Landlock.Disabled {
		rules := landlock.Rules{Read: spec.Landlock.Read, Write: spec.Landlock.Write, Exec: spec.Landlock.Exec, BestEffort: spec.Landlock.BestEffort}
		if err := landlock.RestrictThread(rules); err != nil {
			return fail("landlock", KindSetup, err)
		}
	}

	// 7. Credentials: drop supplementary groups first (they would keep
	// root's groups), then gid, then uid (after which we could not change
	// gid). All three saved ids too, so there is no way back.
	if err := dropPrivileges(spec.UID, spec.GID); err != nil {
		return fail("credentials", KindSetup, err)
	}
	// Changing credentials clears the parent-death signal; set it again so
	// the command dies with the daemon even before the daemon's cleanup.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fail("pdeathsig", KindSetup, os.NewSyscallError("prctl", err))
	}

	// 8. The working directory, as the agent, so its own permissions and
	// Landlock decide.
	if err := unix.Chdir(spec.Cwd); err != nil {
		kind := KindInvalid
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			kind = KindPermission
		}
		return fail("cwd", kind, fmt.Errorf("chdir %s: %w", spec.Cwd, err))
	}
	// chdir followed symlinks: check where it really led, with the rules
	// the daemon applied to the requested path.
	if wd, err := unix.Getwd(); err != nil {
		return fail("cwd", KindInvalid, fmt.Errorf("getcwd after chdir %s: %w", spec.Cwd, err))
	} else if err := CwdAllowed(wd, spec.Landlock.Read, spec.Landlock.Write, spec.Landlock.Exec); err != nil {
		return fail("cwd", KindInvalid, fmt.Errorf("cwd %s resolves to %s: %w", spec.Cwd, wd, err))
	}

	// 9. Find the program the way a shell would, inside the sandbox, unless
	// the daemon's command rules already judged one file: then exactly that
	// one runs, or nothing.
	path, ierr := spec.Program, (*InitError)(nil)
	if path != "" {
		ierr = checkExecutable(path)
	} else {
		path, ierr = lookPath(spec.Argv[0], spec.Env)
	}
	if ierr != nil {
		return ierr
	}

	// 10. Close every descriptor but stdio and the sync pipe at execve.
	// CVE-2024-21626 (runc) leaked a host directory fd into the container;
	// marking all of them close-on-exec rules that out for any fd we forgot.
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fail("close fds", KindSetup, os.NewSyscallError("close_range", err))
	}

	// 11. Tell the daemon we are about to execute; from here only execve
	// (or its failure) follows.
	if err := json.NewEncoder(syncPipe).Encode(syncMsg{Type: "exec"}); err != nil {
		return fail("sync", KindSetup, err)
	}

	// 12. Seccomp last: the filter denies syscalls the setup above needs
	// (mount, setns, prctl variants), so it must come after them, and on
	// this thread only (no TSYNC) since execve follows on this thread.
	if filter != nil {
		if err := filter.Install(); err != nil {
			return fail("seccomp", KindSetup, err)
		}
	}

	// 13. execve from this same locked thread. It only returns on failure.
	err = unix.Exec(path, spec.Argv, spec.Env)
	kind := KindSetup
	switch {
	case errors.Is(err, unix.ENOENT):
		kind = KindNotFound
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		kind = KindPermission
	}
	return fail("execve", kind, fmt.Errorf("execve %s: %w", path, err))
}

func setRlimits(r Rlimits) error {
	limits := []struct {
		name     string
		resource int
		value    uint64
	}{
		{"RLIMIT_CORE", unix.RLIMIT_CORE, r.Core},
		{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, r.NoFile},
	}
	for _, l := range limits {
		if l.value == 0 && l.resource != unix.RLIMIT_CORE {
			continue
		}
		rl := unix.Rlimit{Cur: l.value, Max: l.value}
		if err := unix.Setrlimit(l.resource, &rl); err != nil {
			return fmt.Errorf("setrlimit %s=%d: %w", l.name, l.value, err)
		}
	}
	return nil
}

// dropPrivileges changes the credentials of this thread only, by raw
// syscalls. The libc and Go wrappers change every thread of the process
// (glibc signals each one, which costs milliseconds in a Go runtime); only
// the thread that calls execve matters, and execve ends the others.
func dropPrivileges(uid, gid uint32) error {
	calls := []struct {
		name string
		nr   uintptr
		args [3]uintptr
	}{
		{"setgroups", unix.SYS_SETGROUPS, [3]uintptr{0, 0, 0}},
		{"setresgid", unix.SYS_SETRESGID, [3]uintptr{uintptr(gid), uintptr(gid), uintptr(gid)}},
		{"setresuid", unix.SYS_SETRESUID, [3]uintptr{uintptr(uid), uintptr(uid), uintptr(uid)}},
	}
	for _, c := range calls {
		if _, _, errno := unix.RawSyscall(c.nr, c.args[0], c.args[1], c.args[2]); errno != 0 {
			return os.NewSyscallError(c.name, errno)
		}
	}
	return nil
}

// lookPath resolves argv[0] against the command's own PATH, after
// confinement, so that "not found" means not reachable for the agent.
func lookPath(name string, env []string) (string, *InitError) {
	if strings.Contains(name, "/") {
		if err := checkExecutable(name); err != nil {
			return "", err
		}
		return name, nil
	}
	pathEnv := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	var denied *InitError
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // a relative PATH entry would depend on cwd: skip it
		}
		p := filepath.Join(dir, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if err.Kind == KindPermission && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", &InitError{Step: "lookup", Kind: KindNotFound, Msg: fmt.Sprintf("%s: command not found in PATH %s", name, pathEnv)}
}

func checkExecutable(p string) *InitError {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return &InitError{Step: "lookup", Kind: KindNotFound, Msg: fmt.Sprintf("%s: no such file", p)}
		}
		return &InitError{Step: "lookup", Kind: KindPermission, Msg: fmt.Sprintf("%s: %v", p, err)}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return &InitError{Step: "lookup", Kind: KindPermission, Msg: fmt.Sprintf("%s: is a directory", p)}
	}
	// access(X_OK) answers for this uid and, through Landlock, for this
	// sandbox: the same check execve will make.
	if err := unix.Faccessat(unix.AT_FDCWD, p, unix.X_OK, unix.AT_EACCESS); err != nil {
		return &InitError{Step: "lookup", Kind: KindPermission, Msg: fmt.Sprintf("%s: not executable in this sandbox (%v): is its directory in the profile's filesystem.exec?", p, err)}
	}
	return nil
}

// loopbackUp sets IFF_UP on "lo" of the current network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("ifreq lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of lo: %w", os.NewSyscallError("ioctl", err))
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", os.NewSyscallError("ioctl", err))
	}
	return nil
}
