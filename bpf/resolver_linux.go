package bpf

import (
	"path"
	"strings"
)

// Resolver turns the paths in records into absolute paths, from per-process
// state rebuilt out of the records themselves (see events.h): the cwd and a
// table of fds opened by path. Feed it every record of a cgroup, in ring
// buffer order, with Observe; ask Resolve for a path record's paths.
//
// Known limits: resolution is lexical (path.Clean), so ".." after a symlink
// is resolved the way the kernel would not; chroot and mount namespaces are
// not modelled (paths are as the process saw them); fds received over
// SCM_RIGHTS, inherited from the daemon, or opened by syscalls other than
// open/openat/openat2/creat/dup* are unknown, and paths relative to them
// are reported unresolved.
type Resolver struct {
	initialCwd string
	procs      map[uint32]*procState // by tgid: threads share cwd and fds
}

type procState struct {
	cwd string
	fds map[int64]fdEntry
}

type fdEntry struct {
	path    string
	cloexec bool
}

// Open-flag and fcntl values of x86 (both ABIs).
const (
	oCloexec      = 0x80000
	fDupfd        = 0
	fDupfdCloexec = 1030
)

// NewResolver returns a Resolver for a sandbox whose first process starts in
// cwd (an absolute path).
func NewResolver(cwd string) *Resolver {
	return &Resolver{initialCwd: cwd, procs: map[uint32]*procState{}}
}

func (r *Resolver) proc(pid uint32) *procState {
	p, ok := r.procs[pid]
	if !ok {
		p = &procState{cwd: r.initialCwd, fds: map[int64]fdEntry{}}
		r.procs[pid] = p
	}
	return p
}

// dirfdArg returns, for path argument i of syscall name, the index of the
// dirfd argument it is relative to: -1 for the cwd, -2 for a path that is
// not resolved (a symlink's target is stored as is).
func dirfdArg(name string, i int) int {
	switch name {
	case "openat", "openat2", "mknodat", "mkdirat", "unlinkat", "fchmodat", "fchmodat2",
		"fchownat", "futimesat", "utimensat", "utimensat_time64", "setxattrat", "getxattrat",
		"listxattrat", "removexattrat", "file_getattr", "file_setattr", "newfstatat",
		"fstatat64", "statx", "faccessat", "faccessat2", "readlinkat", "name_to_handle_at",
		"open_tree", "open_tree_attr", "fspick", "mount_setattr", "execveat":
		return 0
	case "renameat", "renameat2", "linkat", "move_mount":
		return 2 * i // olddirfd, newdirfd
	case "symlink":
		if i == 0 {
			return -2
		}
	case "symlinkat":
		if i == 0 {
			return -2
		}
		return 1
	}
	return -1
}

// Resolve returns path argument i of a path record as an absolute, cleaned
// path, and false if it was not copied or its base directory is unknown.
// Call it before Observe for the same record (Observe may change the cwd).
func (r *Resolver) Resolve(ev *Event, i int) (string, bool) {
	if ev.Path == nil {
		return "", false
	}
	p, ok := ev.Path.PathString(i)
	if !ok {
		return "", false
	}
	return r.resolve(ev.Header.Pid, ev.Syscall, p, dirfdArg(ev.Syscall.Name(), i))
}

func (r *Resolver) resolve(pid uint32, sc *Syscall, p string, dirfd int) (string, bool) {
	if dirfd == -2 {
		return p, true
	}
	if strings.HasPrefix(p, "/") {
		return path.Clean(p), true
	}
	st := r.proc(pid)
	base := st.cwd
	if dirfd >= 0 {
		if fd := int64(sc.IntArg(dirfd)); fd != AtFDCWD {
			e, ok := st.fds[fd]
			if !ok {
				return p, false
			}
			base = e.path
		}
	}
	if base == "" {
		return p, false
	}
	// An empty path (AT_EMPTY_PATH) names the dirfd itself.
	return path.Join(base, p), true
}

// Observe updates the process state from one record.
func (r *Resolver) Observe(ev *Event) {
	h := ev.Header
	switch ev.Kind() {
	case KindFork:
		if Flag(h.Flags)&FlagThread != 0 {
			return // threads share their process's state
		}
		parent, ok := r.procs[h.Pid]
		child := &procState{cwd: r.initialCwd, fds: map[int64]fdEntry{}}
		if ok {
			child.cwd = parent.cwd
			for fd, e := range parent.fds {
				child.fds[fd] = e
			}
		}
		r.procs[ev.Fork.ChildPid] = child
		return
	case KindExit:
		if Flag(h.Flags)&FlagGroupDead != 0 {
			delete(r.procs, h.Pid)
		}
		return
	}
	sc := ev.Syscall
	if sc == nil || sc.Ret < 0 {
		return
	}
	st := r.proc(h.Pid)
	switch name := sc.Name(); name {
	case "chdir":
		if p, ok := r.Resolve(ev, 0); ok {
			st.cwd = p
		}
	case "fchdir":
		if e, ok := st.fds[int64(sc.IntArg(0))]; ok {
			st.cwd = e.path
		}
	case "open", "openat", "openat2", "creat":
		p, ok := r.Resolve(ev, 0)
		if !ok {
			delete(st.fds, sc.Ret)
			return
		}
		var flags int64
		switch name {
		case "open":
			flags = int64(sc.IntArg(1))
		case "openat":
			flags = int64(sc.IntArg(2))
		}
		// openat2's flags are in struct open_how, which is not copied.
		st.fds[sc.Ret] = fdEntry{path: p, cloexec: flags&oCloexec != 0}
	case "close":
		delete(st.fds, int64(sc.IntArg(0)))
	case "close_range":
		lo, hi := sc.Args[0], sc.Args[1]
		for fd := range st.fds {
			if uint64(fd) >= lo && uint64(fd) <= hi {
				delete(st.fds, fd)
			}
		}
	case "dup":
		r.dup(st, int64(sc.IntArg(0)), sc.Ret, false)
	case "dup2":
		r.dup(st, int64(sc.IntArg(0)), int64(sc.IntArg(1)), false)
	case "dup3":
		r.dup(st, int64(sc.IntArg(0)), int64(sc.IntArg(1)), int64(sc.IntArg(2))&oCloexec != 0)
	case "fcntl", "fcntl64":
		if cmd := int64(sc.IntArg(1)); cmd == fDupfd || cmd == fDupfdCloexec {
			r.dup(st, int64(sc.IntArg(0)), sc.Ret, cmd == fDupfdCloexec)
		}
	case "execve", "execveat":
		for fd, e := range st.fds {
			if e.cloexec {
				delete(st.fds, fd)
			}
		}
	}
}

func (r *Resolver) dup(st *procState, from, to int64, cloexec bool) {
	if e, ok := st.fds[from]; ok {
		st.fds[to] = fdEntry{path: e.path, cloexec: cloexec}
		return
	}
	delete(st.fds, to)
}
