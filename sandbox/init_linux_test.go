package sandbox

import (
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runHelper starts this test binary as the init helper (init_linux.c's
// constructor takes over before any Go code), hands it wire as its spec and
// netns as its network namespace fd, and returns what it reported.
func runHelper(t *testing.T, wire []byte, netns *os.File) *InitError {
	t.Helper()
	specR, specW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/proc/self/exe", InitArg)
	cmd.ExtraFiles = []*os.File{specR, syncW}
	cmd.Env = []string{envSpecFD + "=3", envSyncFD + "=4"}
	if netns != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, netns)
		cmd.Env = append(cmd.Env, envNetNSFD+"=5")
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	specR.Close()
	syncW.Close()
	_, _ = specW.Write(wire)
	specW.Close()
	_ = syncR.SetReadDeadline(time.Now().Add(10 * time.Second))
	execing, ierr, err := readSync(syncR)
	syncR.Close()
	werr := cmd.Wait()
	if err != nil {
		t.Fatalf("read sync pipe: %v (stderr %q)", err, stderr.String())
	}
	if execing || ierr == nil {
		t.Fatalf("helper reported no error (execing=%v, exit %v, stderr %q)", execing, werr, stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 255 {
		t.Errorf("helper exit status %d, want 255", code)
	}
	return ierr
}

// validWire is a spec that parses; what it is run with decides how far the
// helper gets.
func validWire(t *testing.T) []byte {
	t.Helper()
	s := &Spec{Argv: []string{"true"}, Cwd: "/tmp", UID: 65534, GID: 65534, Env: []string{"PATH=/bin"},
		Landlock: Landlock{Disabled: true}, AllowNoSeccomp: true}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	wire, err := encodeSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

func record(tag uint16, payload []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, tag)
	b = binary.NativeEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

// TestHelperRejectsBadSpecs feeds the C parser hostile and broken input: it
// must name the problem, exit 255 and never get as far as running anything.
// It needs no privileges: every case fails before the first privileged step.
func TestHelperRejectsBadSpecs(t *testing.T) {
	valid := validWire(t)
	with := func(recs ...[]byte) []byte {
		b := append([]byte(nil), valid...)
		for _, r := range recs {
			b = append(b, r...)
		}
		return b
	}
	minimal := func(recs ...[]byte) []byte {
		b := []byte(specMagic)
		for _, r := range recs {
			b = append(b, r...)
		}
		return b
	}
	argv, cwd := record(tagArgv, []byte("true")), record(tagCwd, []byte("/tmp"))
	uid, gid := record(tagUID, u64(65534)), record(tagGID, u64(65534))
	cases := []struct {
		name, kind, want string
		wire             []byte
	}{
		{"empty", "setup", "daemon sent no spec", nil},
		{"bad magic", "setup", "bad magic", []byte("{\"argv\":[\"true\"]}")},
		{"truncated header", "setup", "truncated record header", append(append([]byte(nil), valid...), 1, 0, 0)},
		{"overrun", "setup", "overruns the spec", with([]byte{byte(tagEnv), 0, 0xff, 0xff, 0, 0})},
		{"unknown tag", "setup", "unknown record 999", with(record(999, u64(1)))},
		{"NUL in a string", "setup", "holds a NUL byte", with(record(tagEnv, []byte("A=1\x00B=2")))},
		{"NUL in a landlock path", "setup", "landlock rule holds a NUL byte", with(record(tagLandlockRule, append(u64(1), "/usr\x00/etc"...)))},
		{"short number", "setup", "unknown record", with(record(tagUID, []byte{1, 2}))},
		{"no argv", "invalid", "empty command", minimal(cwd, uid, gid, record(tagAllowNoSeccomp, u64(1)))},
		{"relative cwd", "invalid", "no absolute cwd", minimal(argv, record(tagCwd, []byte("tmp")), uid, gid, record(tagAllowNoSeccomp, u64(1)))},
		{"root", "invalid", "agents never run as root", minimal(argv, cwd, record(tagUID, u64(0)), gid, record(tagAllowNoSeccomp, u64(1)))},
		{"no gid", "invalid", "agents never run as root", minimal(argv, cwd, uid, record(tagAllowNoSeccomp, u64(1)))},
		{"unfiltered", "invalid", "refusing to run unfiltered", minimal(argv, cwd, uid, gid)},
		{"ragged filter", "invalid", "program of 12 bytes", minimal(argv, cwd, uid, gid, record(tagSeccomp, make([]byte, 12)))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ierr := runHelper(t, c.wire, nil)
			if ierr.Step != "spec" || string(ierr.Kind) != c.kind || !strings.Contains(ierr.Msg, c.want) {
				t.Errorf("got %+v, want step spec, kind %s, message containing %q", ierr, c.kind, c.want)
			}
		})
	}
}

// TestHelperParsesValidSpec shows a valid spec gets past parsing: the first
// step after it, joining the network namespace, is given a pipe instead of
// a namespace and must fail with its own message.
func TestHelperParsesValidSpec(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ierr := runHelper(t, validWire(t), r)
	if ierr.Step != "network" || !strings.Contains(ierr.Msg, "join the agent's network namespace: setns: invalid argument") {
		t.Errorf("got %+v, want the setns failure", ierr)
	}
}
