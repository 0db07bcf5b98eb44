package daemon

import (
	"io"
	"log/slog"
	"testing"
	"time"
	"unsafe"

	"github.com/deputyhq/deputy/bpf"
	"github.com/deputyhq/deputy/daemon/audit"
)

// BenchmarkSyscallRecord measures the user-space half of the audit
// pipeline for the commonest event, a plain syscall: decode, convert to a
// record, append to the hash-chained log. The kernel half and the ring
// buffer are measured by scripts/bench.
func BenchmarkSyscallRecord(b *testing.B) {
	l, err := audit.Open(b.TempDir(), audit.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	a := &syscallAudit{log: l, slg: slog.New(slog.NewTextHandler(io.Discard, nil)), clock: func(ts uint64) time.Time { return time.Unix(0, int64(ts)) }}
	te := &tracedExec{base: audit.Record{PrincipalType: audit.PrincipalAgent, PrincipalID: "bench", UID: 1, ExecID: "e", CorrelationID: "c", Action: audit.ActionSyscall},
		resolver: bpf.NewResolver("/"), started: true}
	var sc bpf.Syscall
	sc.Hdr.Kind = uint8(bpf.KindSyscall)
	sc.Hdr.Arch = uint8(bpf.ArchX86_64)
	sc.Hdr.Pid, sc.Hdr.Tid, sc.Hdr.Ppid = 100, 100, 1
	copy(sc.Hdr.Comm[:], "flood")
	sc.Nr = 110 // getppid
	sc.Ret = 1
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&sc)), unsafe.Sizeof(sc))
	var ev bpf.Event
	var scratch recordScratch
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		sc.Hdr.Ts = uint64(i)
		if err := bpf.Decode(raw, &ev); err != nil {
			b.Fatal(err)
		}
		r, ok := a.convert(te, &ev, &scratch)
		if !ok {
			b.Fatal("dropped")
		}
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
