package sandbox

import (
	"encoding/binary"
	"fmt"

	"github.com/deputyhq/deputy/sandbox/landlock"
)

// The spec crosses to the init helper in a small tag-length-value format
// that the helper's C code (init_linux.c, which runs before the Go runtime
// would start) parses without a JSON library: a magic string, then records
// of a native-endian uint16 tag, a uint32 length and the payload. Strings
// are raw bytes (Validate has ruled out NUL bytes), numbers uint64. The tag
// numbers must match the SPEC_* values in init_linux.c.
const specMagic = "DEPUTY\x00\x01"

const (
	tagArgv           = 1  // repeated, in order
	tagEnv            = 2  // repeated, KEY=VALUE
	tagProgram        = 3  // exact file to execute, else argv[0] is looked up
	tagCwd            = 4  //
	tagUID            = 5  //
	tagGID            = 6  //
	tagLoopback       = 7  // bring up lo
	tagReadOnly       = 8  // repeated: protected paths, bound read-only
	tagHidden         = 9  // repeated: covered paths
	tagTmpBytes       = 10 // size of the private /tmp and /dev/shm; 0: none
	tagProc           = 11 // mount a fresh /proc
	tagLandlock       = 12 // handled fs rights, scopes, file-only mask: three uint64
	tagLandlockRule   = 13 // repeated: uint64 rights, then the path
	tagRlimitNoFile   = 14 //
	tagRlimitCore     = 15 //
	tagSeccomp        = 16 // struct sock_filter array
	tagCwdRoot        = 17 // repeated: directories a resolved cwd may be under
	tagAllowNoSeccomp = 18 // only for tests of earlier layers
)

// maxSpecBytes bounds what the helper reads; the daemon's own request
// limits keep real specs far below it.
const maxSpecBytes = 16 << 20

type specWriter struct{ b []byte }

func (w *specWriter) header(tag uint16, n int) {
	w.b = binary.NativeEndian.AppendUint16(w.b, tag)
	w.b = binary.NativeEndian.AppendUint32(w.b, uint32(n))
}

func (w *specWriter) bytes(tag uint16, p []byte) { w.header(tag, len(p)); w.b = append(w.b, p...) }
func (w *specWriter) str(tag uint16, s string)   { w.header(tag, len(s)); w.b = append(w.b, s...) }

func (w *specWriter) strs(tag uint16, list []string) {
	for _, s := range list {
		w.str(tag, s)
	}
}

func (w *specWriter) u64(tag uint16, vals ...uint64) {
	w.header(tag, 8*len(vals))
	for _, v := range vals {
		w.b = binary.NativeEndian.AppendUint64(w.b, v)
	}
}

func (w *specWriter) flag(tag uint16, on bool) {
	if on {
		w.u64(tag, 1)
	}
}

// encodeSpec compiles the Landlock rules of a validated spec for this
// kernel and returns the helper's wire form.
func encodeSpec(s *Spec) ([]byte, error) {
	w := &specWriter{b: append(make([]byte, 0, 4096), specMagic...)}
	w.strs(tagArgv, s.Argv)
	w.strs(tagEnv, s.Env)
	if s.Program != "" {
		w.str(tagProgram, s.Program)
	}
	w.str(tagCwd, s.Cwd)
	w.u64(tagUID, uint64(s.UID))
	w.u64(tagGID, uint64(s.GID))
	w.flag(tagLoopback, s.Loopback)
	w.strs(tagReadOnly, s.Mounts.ReadOnly)
	w.strs(tagHidden, s.Mounts.Hidden)
	w.u64(tagTmpBytes, uint64(max(s.Mounts.TmpBytes, 0)))
	w.flag(tagProc, s.Mounts.Proc)
	if !s.Landlock.Disabled {
		rs, err := landlock.Compile(landlock.Rules{Read: s.Landlock.Read, Write: s.Landlock.Write, Exec: s.Landlock.Exec, BestEffort: s.Landlock.BestEffort})
		if err != nil {
			return nil, fmt.Errorf("landlock: %w", err)
		}
		if rs != nil {
			w.u64(tagLandlock, rs.HandledFS, rs.Scoped, rs.FileMask)
			for _, r := range rs.Rules {
				w.header(tagLandlockRule, 8+len(r.Path))
				w.b = binary.NativeEndian.AppendUint64(w.b, r.Access)
				w.b = append(w.b, r.Path...)
			}
		}
	}
	// The resolved working directory must stay where the daemon's check of
	// the requested one allowed it (see CwdAllowed).
	w.strs(tagCwdRoot, cwdRoots(s.Landlock.Read, s.Landlock.Write, s.Landlock.Exec))
	if s.Rlimits.NoFile != 0 {
		w.u64(tagRlimitNoFile, s.Rlimits.NoFile)
	}
	w.u64(tagRlimitCore, s.Rlimits.Core)
	if len(s.Seccomp) > 0 {
		w.bytes(tagSeccomp, s.Seccomp)
	}
	w.flag(tagAllowNoSeccomp, s.AllowNoSeccomp)
	if len(w.b) > maxSpecBytes {
		return nil, fmt.Errorf("spec of %d bytes exceeds the helper's limit of %d", len(w.b), maxSpecBytes)
	}
	return w.b, nil
}
