//go:build linux && cgo

package seccomp

import (
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// nativeAuditArch is the AUDIT_ARCH_* value the kernel puts in seccomp_data.arch for native syscalls.
func nativeAuditArch(t *testing.T) uint32 {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64":
		return auditArchX86_64
	case "arm64":
		return auditArchAArch64
	}
	t.Skipf("no audit arch known for %s", runtime.GOARCH)
	return 0
}

// sysnr resolves a syscall number the way Compile does, fallbacks included.
func sysnr(t *testing.T, name string) int32 {
	t.Helper()
	nr, err := libseccomp.GetSyscallFromName(name)
	if err != nil {
		arch, _ := libseccomp.GetNativeArch()
		fb, ok := fallbackNr[arch][name]
		if !ok {
			t.Fatalf("resolve %s: %v", name, err)
		}
		nr = fb
	}
	return int32(nr)
}

func compileOrFatal(t *testing.T, p Policy) []byte {
	t.Helper()
	f, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", p, err)
	}
	return f.Bytes()
}

type verdict uint32

const (
	allow  = verdict(retAllow)
	eperm  = verdict(retErrno | uint32(unix.EPERM))
	enosys = verdict(retErrno | uint32(unix.ENOSYS))
	kill   = verdict(retKillProcess)
)

// call is one synthetic syscall and the verdict the filter must return for it.
type call struct {
	name string
	arch uint32 // 0: native
	nr   int32  // used when name is empty
	args [6]uint64
	want verdict
}

func check(t *testing.T, prog []byte, calls []call) {
	t.Helper()
	native := nativeAuditArch(t)
	for _, c := range calls {
		d := seccompData{arch: c.arch, nr: c.nr, args: c.args, ip: 0x401000}
		if d.arch == 0 {
			d.arch = native
		}
		if c.name != "" {
			d.nr = sysnr(t, c.name)
		}
		got, err := runBPF(prog, d)
		if err != nil {
			t.Fatalf("%s %#x: %v", c.name, c.args, err)
		}
		if verdict(got) != c.want {
			t.Errorf("%s(nr %#x, arch %#x, args %#x) = %s, want %s",
				c.name, d.nr, d.arch, c.args[:3], describeRet(got), describeRet(uint32(c.want)))
		}
	}
}

func TestCompileDefault(t *testing.T) {
	prog := compileOrFatal(t, Policy{})
	t.Logf("default filter: %d instructions", len(prog)/insnSize)

	const (
		sigchld   = 17
		forkFlags = unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID | sigchld
		// What glibc's pthread_create passes.
		threadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD |
			unix.CLONE_SYSVSEM | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
		addrNoRandomize = 0x0040000
		perLinux32      = 0x0008
	)
	calls := []call{
		{name: "getpid", want: allow},
		{name: "read", want: allow},
		{name: "execve", want: allow},
		{name: "mount", want: eperm},
		{name: "open_tree_attr", want: eperm},
		{name: "io_uring_setup", want: eperm},
		{name: "clone", args: [6]uint64{forkFlags}, want: allow},
		{name: "clone", args: [6]uint64{threadFlags}, want: allow},
		{name: "clone", args: [6]uint64{unix.CLONE_VM | unix.CLONE_VFORK | sigchld}, want: allow},
		{name: "clone", args: [6]uint64{forkFlags | unix.CLONE_NEWUSER}, want: eperm},
		// The kernel ignores the upper 32 bits of the flags; the filter must not be fooled by them either.
		{name: "clone", args: [6]uint64{1<<32 | unix.CLONE_NEWUSER}, want: eperm},
		{name: "clone3", want: enosys},
		{name: "ioctl", args: [6]uint64{0, unix.TIOCSTI}, want: eperm},
		// The kernel truncates cmd to unsigned int, so this reaches TIOCSTI too.
		{name: "ioctl", args: [6]uint64{0, 0x1_0000_5412}, want: eperm},
		{name: "ioctl", args: [6]uint64{0, 0xffffffff_00005412}, want: eperm},
		{name: "ioctl", args: [6]uint64{0, unix.TIOCLINUX}, want: eperm},
		{name: "ioctl", args: [6]uint64{0, unix.TCGETS}, want: allow},
		{name: "ioctl", args: [6]uint64{0, unix.TIOCGWINSZ}, want: allow},
		{name: "personality", args: [6]uint64{perLinux32}, want: eperm},
		{name: "personality", args: [6]uint64{addrNoRandomize}, want: eperm},
		{name: "personality", args: [6]uint64{0}, want: allow},
		{name: "personality", args: [6]uint64{0xffffffff}, want: allow},
	}
	for _, flag := range []uint64{unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
		unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP, unix.CLONE_NEWTIME} {
		calls = append(calls, call{name: "clone", args: [6]uint64{forkFlags | flag}, want: eperm})
	}
	// Every unconditional default entry that exists on this arch is refused with its documented errno.
	for _, e := range DefaultDeny() {
		if e.rules != nil || sysnr(t, e.Syscall) < 0 {
			continue
		}
		want := eperm
		if e.Action == ActionENOSYS {
			want = enosys
		}
		calls = append(calls, call{name: e.Syscall, want: want})
	}
	check(t, prog, calls)

	// Random personas: denied exactly when the low 32 bits are neither 0 nor all ones.
	rng := rand.New(rand.NewPCG(1, 2))
	var personas []call
	for range 500 {
		v := rng.Uint64()
		if rng.IntN(4) == 0 {
			v &= 0xffffffff_00000000 // upper bits only: the kernel sees 0
		}
		want := eperm
		if low := uint32(v); low == 0 || low == 0xffffffff {
			want = allow
		}
		personas = append(personas, call{name: "personality", args: [6]uint64{v}, want: want})
	}
	check(t, prog, personas)
}

func TestCompileForeignABIs(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("i386 and x32 are x86_64 ABIs")
	}
	prog := compileOrFatal(t, Policy{})
	check(t, prog, []call{
		// i386 via int 0x80 on x86_64: numbers differ (20 is getpid, 21 mount, 120 clone), so all are killed.
		{arch: auditArchI386, nr: 20, want: kill},
		{arch: auditArchI386, nr: 21, want: kill},
		{arch: auditArchI386, nr: 120, want: kill},
		// x32: x86_64 audit arch with __X32_SYSCALL_BIT; 39 is getpid, 165 mount; 0x40000200 starts the x32-only range.
		{nr: x32SyscallBit | 39, want: kill},
		{nr: x32SyscallBit | 165, want: kill},
		{nr: x32SyscallBit | 0x200, want: kill},
		{nr: -1, want: allow}, // the kernel answers ENOSYS itself
		{arch: 0x12345678, nr: 39, want: kill},
	})
}

func TestCompileOverrides(t *testing.T) {
	t.Run("allow", func(t *testing.T) {
		prog := compileOrFatal(t, Policy{Allow: []string{"mount", "clone", "personality", "ioctl"}})
		check(t, prog, []call{
			{name: "mount", want: allow},
			{name: "clone", args: [6]uint64{unix.CLONE_NEWUSER}, want: allow},
			{name: "personality", args: [6]uint64{0x0040000}, want: allow},
			{name: "ioctl", args: [6]uint64{0, unix.TIOCSTI}, want: allow},
			{name: "umount2", want: eperm},
			{name: "clone3", want: enosys},
		})
	})
	t.Run("deny", func(t *testing.T) {
		prog := compileOrFatal(t, Policy{Deny: []string{"getppid", "ioctl", "mount", "iopl"}})
		check(t, prog, []call{
			{name: "getppid", want: eperm},
			{name: "ioctl", args: [6]uint64{0, unix.TCGETS}, want: eperm},
			{name: "ioctl", args: [6]uint64{0, unix.TIOCSTI}, want: eperm},
			{name: "mount", want: eperm},
			{name: "getpid", want: allow},
		})
	})
	t.Run("unknown deny", func(t *testing.T) {
		_, err := Compile(Policy{Deny: []string{"getpid", "no_such_syscall"}})
		if err == nil || !strings.Contains(err.Error(), `"no_such_syscall"`) {
			t.Fatalf("Compile: got %v, want an error naming no_such_syscall", err)
		}
	})
	t.Run("allow not default", func(t *testing.T) {
		_, err := Compile(Policy{Allow: []string{"getpid"}})
		if err == nil || !strings.Contains(err.Error(), `"getpid"`) {
			t.Fatalf("Compile: got %v, want an error naming getpid", err)
		}
	})
}

func TestCompileRoundTrip(t *testing.T) {
	f, err := Compile(Policy{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := FilterFromBytes(f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if string(g.Bytes()) != string(f.Bytes()) {
		t.Fatal("round trip changed the program")
	}
	// Compilation is deterministic, so the daemon can cache and compare filters.
	h, err := Compile(Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if string(h.Bytes()) != string(f.Bytes()) {
		t.Fatal("two compilations of one policy differ")
	}
}
