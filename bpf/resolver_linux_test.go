package bpf

import "testing"

// ev builds a decoded path or syscall record for the resolver tests.
func ev(pid uint32, name string, ret int64, paths []string, args ...int64) *Event {
	nr, ok := SyscallNumber(ArchX86_64, name)
	if !ok {
		panic(name)
	}
	var pe PathEvent
	pe.Sys.Hdr.Kind = uint8(KindSyscall)
	if paths != nil {
		pe.Sys.Hdr.Kind = uint8(KindPath)
	}
	pe.Sys.Hdr.Arch = uint8(ArchX86_64)
	pe.Sys.Hdr.Pid = pid
	pe.Sys.Nr = nr
	pe.Sys.Ret = ret
	for i, a := range args {
		pe.Sys.Args[i] = uint64(a)
	}
	for i, p := range paths {
		pe.Data.Res[i] = int32(len(p) + 1)
		copy(pe.Data.Path[i][:], p+"\x00")
	}
	var e Event
	if err := Decode(rawOf(&pe), &e); err != nil {
		panic(err)
	}
	return &e
}

func forkEv(parent, child uint32) *Event {
	var f ForkEvent
	f.Hdr.Kind = uint8(KindFork)
	f.Hdr.Pid = parent
	f.ChildPid = child
	var e Event
	if err := Decode(rawOf(&f), &e); err != nil {
		panic(err)
	}
	return &e
}

func TestResolver(t *testing.T) {
	r := NewResolver("/work")
	check := func(e *Event, i int, want string, wantOK bool) {
		t.Helper()
		got, ok := r.Resolve(e, i)
		if got != want || ok != wantOK {
			t.Errorf("Resolve = %q, %v; want %q, %v", got, ok, want, wantOK)
		}
		r.Observe(e)
	}
	check(ev(1, "openat", 3, []string{"src/a.go"}, AtFDCWD), 0, "/work/src/a.go", true)
	check(ev(1, "openat", 4, []string{"/etc/../etc/passwd"}, AtFDCWD), 0, "/etc/passwd", true)
	check(ev(1, "openat", 5, []string{"/tmp"}, AtFDCWD, 0, 0x10000), 0, "/tmp", true)
	check(ev(1, "unlinkat", 0, []string{"x"}, 5), 0, "/tmp/x", true)
	check(ev(1, "unlinkat", 0, []string{"y"}, 9), 0, "y", false) // unknown dirfd
	check(ev(1, "renameat2", 0, []string{"a", "b"}, 5, 0, AtFDCWD), 1, "/work/b", true)
	check(ev(1, "symlinkat", 0, []string{"../target", "l"}, 0, 5), 0, "../target", true)
	check(ev(1, "chdir", 0, []string{"sub"}), 0, "/work/sub", true)
	check(ev(1, "stat", -2, []string{"nope"}), 0, "/work/sub/nope", true)

	// fchdir to fd 5, dup2 5 -> 7, close 5: fd 7 still names /tmp.
	r.Observe(ev(1, "fchdir", 0, nil, 5))
	check(ev(1, "mkdir", 0, []string{"d"}), 0, "/tmp/d", true)
	r.Observe(ev(1, "dup2", 7, nil, 5, 7))
	r.Observe(ev(1, "close", 0, nil, 5))
	check(ev(1, "mkdirat", 0, []string{"e"}, 5), 0, "e", false)
	check(ev(1, "mkdirat", 0, []string{"e"}, 7), 0, "/tmp/e", true)

	// A fork copies cwd and fds; the child's chdir does not move the parent.
	r.Observe(forkEv(1, 2))
	r.Observe(ev(2, "chdir", 0, []string{"/"}))
	check(ev(2, "openat", 3, []string{"f"}, 7), 0, "/tmp/f", true)
	check(ev(2, "open", 8, []string{"g"}), 0, "/g", true)
	check(ev(1, "open", 8, []string{"g"}), 0, "/tmp/g", true)

	// O_CLOEXEC fds are gone after a successful exec.
	check(ev(1, "openat", 9, []string{"/srv"}, AtFDCWD, 0, oCloexec), 0, "/srv", true)
	r.Observe(ev(1, "execve", 0, nil))
	check(ev(1, "openat", 10, []string{"h"}, 9), 0, "h", false)
}
