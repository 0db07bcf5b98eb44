package bpf

import "testing"

func TestSyscallName(t *testing.T) {
	for _, tc := range []struct {
		arch Arch
		nr   uint32
		want string
	}{
		{ArchX86_64, 0, "read"},
		{ArchX86_64, 59, "execve"},
		{ArchX86_64, 110, "getppid"},
		{ArchX86_64, 257, "openat"},
		{ArchX86_64, 435, "clone3"},
		{ArchX86_64, 452, "fchmodat2"}, // from the post-6.1 supplement
		{ArchX32, 257, "openat"},
		{ArchI386, 5, "open"},
		{ArchI386, 11, "execve"},
		{ArchI386, 295, "openat"},
		{ArchI386, 102, "socketcall"},
		{ArchX86_64, 100000, ""},
		{Arch(9), 1, ""},
	} {
		if got := SyscallName(tc.arch, tc.nr); got != tc.want {
			t.Errorf("SyscallName(%v, %d) = %q, want %q", tc.arch, tc.nr, got, tc.want)
		}
		if tc.want == "" {
			continue
		}
		if nr, ok := SyscallNumber(tc.arch, tc.want); !ok || nr != tc.nr {
			t.Errorf("SyscallNumber(%v, %q) = %d, %v; want %d", tc.arch, tc.want, nr, ok, tc.nr)
		}
	}
}

func TestErrnoName(t *testing.T) {
	for ret, want := range map[int64]string{
		-1: "EPERM", -2: "ENOENT", -13: "EACCES", -11: "EAGAIN", -110: "ETIMEDOUT",
		-512: "ERESTARTSYS", -4000: "E4000", 0: "", 3: "", -4096: "",
	} {
		if got := ErrnoName(ret); got != want {
			t.Errorf("ErrnoName(%d) = %q, want %q", ret, got, want)
		}
	}
}

// Every classified name must exist in at least one table, or a typo would
// silently turn a path syscall into a plain one.
func TestClassNamesExist(t *testing.T) {
	for name := range classes {
		_, ok64 := SyscallNumber(ArchX86_64, name)
		_, ok32 := SyscallNumber(ArchI386, name)
		if !ok64 && !ok32 {
			t.Errorf("class for unknown syscall %q", name)
		}
	}
}

func TestClassTable(t *testing.T) {
	tab := classTable()
	at := func(arch Arch, name string) class {
		nr, ok := SyscallNumber(arch, name)
		if !ok {
			t.Fatalf("no %v %s", arch, name)
		}
		return tab[int(arch-1)*nrMax+int(nr)]
	}
	if c := at(ArchX86_64, "openat"); c.kind != clsPath || c.args != [2]uint8{1, argNone} {
		t.Errorf("x86_64 openat class = %+v", c)
	}
	if c := at(ArchI386, "open"); c.kind != clsPath || c.args[0] != 0 {
		t.Errorf("i386 open class = %+v", c)
	}
	if c := at(ArchI386, "execve"); c.kind != clsExec {
		t.Errorf("i386 execve class = %+v", c)
	}
	if c := at(ArchX86_64, "renameat2"); c.args != [2]uint8{1, 3} {
		t.Errorf("renameat2 class = %+v", c)
	}
	if c := at(ArchX86_64, "clone3"); c.flags != clsFlagFork || c.kind != clsPlain {
		t.Errorf("clone3 class = %+v", c)
	}
	if c := at(ArchX86_64, "exit_group"); c.kind != clsNoReturn {
		t.Errorf("exit_group class = %+v", c)
	}
	if c := at(ArchX86_64, "getppid"); c != (class{}) {
		t.Errorf("getppid class = %+v", c)
	}
	if c := at(ArchX32, "execve"); c != (class{}) {
		t.Errorf("x32 execve class = %+v, want plain", c)
	}
	for i, c := range tab {
		for _, a := range c.args {
			if c.kind != clsPlain && c.kind != clsNoReturn && a != argNone && a > 5 {
				t.Errorf("entry %d: argument index %d", i, a)
			}
		}
	}
}

func TestSplitArgv(t *testing.T) {
	got := SplitArgv(nil, []byte("/bin/sh\x00-c\x00echo hi\x00"), 3)
	if len(got) != 3 || got[0] != "/bin/sh" || got[1] != "-c" || got[2] != "echo hi" {
		t.Errorf("SplitArgv = %q", got)
	}
	if got := SplitArgv(nil, []byte("a\x00b"), 5); len(got) != 2 || got[1] != "b" {
		t.Errorf("SplitArgv unterminated = %q", got)
	}
	if got := SignExtendArg(ArchI386, 0xffffff9c); got != AtFDCWD {
		t.Errorf("SignExtendArg(i386, AT_FDCWD) = %d", got)
	}
	if got := SignExtendArg(ArchX86_64, 0xffffff9c); got != 0xffffff9c {
		t.Errorf("SignExtendArg(x86_64) = %d", got)
	}
}

func TestSyscallArgs(t *testing.T) {
	for _, tt := range []struct {
		arch Arch
		name string
		want int
	}{
		{ArchX86_64, "getppid", 0},
		{ArchX86_64, "close", 1},
		{ArchX86_64, "read", 3},
		{ArchX86_64, "openat", 4},
		{ArchX86_64, "execve", 3},
		{ArchX86_64, "mmap", 6},
		{ArchI386, "getppid", 6}, // no compat metadata: every register
	} {
		nr, ok := SyscallNumber(tt.arch, tt.name)
		if !ok {
			t.Fatalf("no syscall %s for arch %v", tt.name, tt.arch)
		}
		if got := SyscallArgs(tt.arch, nr); got != tt.want {
			t.Errorf("SyscallArgs(%v, %s) = %d, want %d", tt.arch, tt.name, got, tt.want)
		}
	}
	if got := SyscallArgs(ArchX86_64, 100000); got != 6 {
		t.Errorf("SyscallArgs of an unknown number = %d, want 6", got)
	}
}
