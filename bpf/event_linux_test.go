package bpf

import (
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"
)

// rawOf returns the bytes of a record, as the ring buffer delivers them.
func rawOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// The layout is part of the ABI: pin the offsets the C side writes.
func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"hdr", unsafe.Sizeof(Header{}), 64},
		{"syscall", unsafe.Sizeof(Syscall{}), 128},
		{"path", unsafe.Sizeof(PathEvent{}), 128 + 8 + 512},
		{"sockaddr", unsafe.Sizeof(SockaddrEvent{}), 128 + 8 + 112},
		{"execve", unsafe.Sizeof(ExecveEvent{}), 128 + 8 + 256 + 4096},
		{"hdr.ts", unsafe.Offsetof(Header{}.Ts), 24},
		{"syscall.args", unsafe.Offsetof(Syscall{}.Args), 64},
		{"syscall.ret", unsafe.Offsetof(Syscall{}.Ret), 112},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestDecodePath(t *testing.T) {
	var in PathEvent
	in.Sys.Hdr.Kind = uint8(KindPath)
	in.Sys.Hdr.Arch = uint8(ArchX86_64)
	in.Sys.Hdr.Pid = 42
	copy(in.Sys.Hdr.Comm[:], "cat\x00")
	in.Sys.Nr = 257
	in.Sys.Ret = -2
	in.Sys.Args[0] = 0xffffffffffffff9c
	in.Data.Res[0] = int32(len("/etc/hostname") + 1)
	copy(in.Data.Path[0][:], "/etc/hostname\x00garbage")

	// Decode from a buffer that is deliberately not 8-byte aligned too.
	buf := make([]byte, len(rawOf(&in))+1)
	for _, raw := range [][]byte{rawOf(&in), buf[1:]} {
		copy(raw, rawOf(&in))
		var ev Event
		if err := Decode(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Kind() != KindPath || ev.Path == nil || ev.Syscall == nil || ev.Execve != nil {
			t.Fatalf("decoded %+v", ev)
		}
		if ev.Syscall.Name() != "openat" || ev.Syscall.Arg(0) != AtFDCWD || ErrnoName(ev.Syscall.Ret) != "ENOENT" {
			t.Errorf("syscall %s arg0 %d ret %d", ev.Syscall.Name(), ev.Syscall.Arg(0), ev.Syscall.Ret)
		}
		if p, ok := ev.Path.PathString(0); !ok || p != "/etc/hostname" {
			t.Errorf("path = %q, %v", p, ok)
		}
		if _, ok := ev.Path.PathString(1); ok {
			t.Error("second path reported")
		}
		if ev.Header.CommString() != "cat" || ev.Header.Pid != 42 {
			t.Errorf("header %+v", ev.Header)
		}
	}
}

func TestDecodeExecve(t *testing.T) {
	var in ExecveEvent
	in.Sys.Hdr.Kind = uint8(KindExecve)
	in.Sys.Hdr.Arch = uint8(ArchI386)
	in.Sys.Nr = 11
	argv := "/bin/sh\x00-c\x00true\x00"
	in.Data.PathRes = 8
	copy(in.Data.Path[:], "/bin/sh\x00")
	in.Data.Argc = 3
	in.Data.ArgvLen = uint16(len(argv))
	copy(in.Data.Argv[:], argv)
	var ev Event
	if err := Decode(rawOf(&in), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Syscall.Name() != "execve" {
		t.Errorf("name %q", ev.Syscall.Name())
	}
	if f, _ := ev.Execve.Filename(); f != "/bin/sh" {
		t.Errorf("filename %q", f)
	}
	if got := strings.Join(ev.Execve.ArgvStrings(nil), " "); got != "/bin/sh -c true" {
		t.Errorf("argv %q", got)
	}
}

func TestDecodeErrors(t *testing.T) {
	var ev Event
	if err := Decode(make([]byte, 10), &ev); err == nil {
		t.Error("short record decoded")
	}
	raw := make([]byte, 128)
	raw[0] = 99
	if err := Decode(raw, &ev); err == nil {
		t.Error("unknown kind decoded")
	}
	raw[0] = byte(KindPath) // a path record needs 648 bytes
	if err := Decode(raw, &ev); err == nil || ev.Header != nil {
		t.Errorf("truncated path record decoded: %v", err)
	}
	raw[0] = byte(KindExit)
	binary.LittleEndian.PutUint32(raw[64:], 9)
	if err := Decode(raw[:72], &ev); err != nil || ev.Exit == nil || ev.Exit.ExitCode != 9 {
		t.Errorf("exit record: %v %+v", err, ev.Exit)
	}
}

func TestDecodeNoAlloc(t *testing.T) {
	var in Syscall
	in.Hdr.Kind = uint8(KindSyscall)
	raw := rawOf(&in)
	var ev Event
	if n := testing.AllocsPerRun(100, func() { _ = Decode(raw, &ev) }); n != 0 {
		t.Errorf("Decode allocates %v times", n)
	}
}
