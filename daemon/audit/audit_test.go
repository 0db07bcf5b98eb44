package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain fails the package on leaked goroutines (a Log's flusher) and file descriptors.
func TestMain(m *testing.M) {
	// The runtime opens its netpoller's fds (epoll, eventfd) on first use; do that before taking the baseline.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	goroutines := runtime.NumGoroutine()
	fds := countFDs()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) && (runtime.NumGoroutine() > goroutines || countFDs() > fds) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > goroutines {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "leaked goroutines: %d > %d\n%s\n", n, goroutines, buf[:runtime.Stack(buf, true)])
			code = 1
		}
		if n := countFDs(); n > fds {
			fmt.Fprintf(os.Stderr, "leaked file descriptors: %d > %d\n", n, fds)
			code = 1
		}
	}
	os.Exit(code)
}

func countFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(entries)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func syscallRecord(i int) *Record {
	return &Record{
		Timestamp:     t0.Add(time.Duration(i) * time.Millisecond),
		PrincipalType: PrincipalAgent,
		PrincipalID:   "claude",
		UID:           1001,
		ExecID:        "ex-1",
		CorrelationID: "corr-1",
		PID:           4242,
		PPID:          4241,
		Comm:          "python3",
		Action:        ActionSyscall,
		Syscall:       "openat",
		Arch:          "x86_64",
		Args:          []string{"AT_FDCWD", "/home/agent/project/src/main.py", "O_RDONLY|O_CLOEXEC", "0"},
		Resource:      "/home/agent/project/src/main.py",
		Result:        ResultSuccess,
		Ret:           3,
	}
}

func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Append(syscallRecord(i)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

func newLog(t *testing.T, n int, opts Options) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	appendN(t, l, 0, n)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return dir
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t *testing.T, dir string) *VerifyReport {
	t.Helper()
	rep, err := Verify(dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func wantBad(t *testing.T, rep *VerifyReport, kind string, seq uint64, file string, line int) {
	t.Helper()
	if rep.OK || rep.FirstBad == nil {
		t.Fatalf("Verify OK, want %s at seq %d", kind, seq)
	}
	p := rep.FirstBad
	if p.Kind != kind || p.Seq != seq || filepath.Base(p.File) != file || p.Line != line {
		t.Fatalf("FirstBad = %v; want %s at %s:%d seq %d", p, kind, file, line, seq)
	}
	if rep.Status() != "broken" {
		t.Fatalf("Status = %q", rep.Status())
	}
	t.Logf("%v", p)
}

func TestVerifyFresh(t *testing.T) {
	dir := newLog(t, 100, Options{})
	rep := mustVerify(t, dir)
	if !rep.OK || rep.TruncatedTail || rep.Records != 100 || rep.Files != 1 || rep.LastSeq != 100 || rep.Status() != "ok" {
		t.Fatalf("report = %+v", rep)
	}
	seq, hash, err := Head(dir)
	if err != nil || seq != 100 || hash != rep.LastHash {
		t.Fatalf("Head = %d %s %v; want 100 %s", seq, hash, err, rep.LastHash)
	}

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(dir, "audit-000001.log"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestOpenLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = Open(dir, Options{}); err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l.Close()
}

func TestOpenTightensModes(t *testing.T) {
	dir := newLog(t, 1, Options{})
	file := filepath.Join(dir, "audit-000001.log")
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for path, want := range map[string]os.FileMode{dir: 0o700, file: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}

// TestFormat pins the JSON names, the member order and the hash definition that external verifiers rely on.
func TestFormat(t *testing.T) {
	dir := newLog(t, 2, Options{})
	lines := readLines(t, filepath.Join(dir, "audit-000001.log"))
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"seq", "timestamp", "principal_type", "principal_id", "uid", "exec_id", "correlation_id",
		"pid", "ppid", "comm", "action", "syscall", "arch", "args", "resource", "result", "ret", "prev_hash", "hash"} {
		if _, ok := m[k]; !ok {
			t.Errorf("member %q missing from %s", k, lines[0])
		}
	}
	if m["timestamp"] != "2026-03-01T12:00:00.000000000Z" || m["prev_hash"] != ZeroHash {
		t.Errorf("timestamp %v prev_hash %v", m["timestamp"], m["prev_hash"])
	}
	prev := ZeroHash
	for _, ln := range lines {
		ln = bytes.TrimSuffix(ln, []byte("\n"))
		var r Record
		if err := json.Unmarshal(ln, &r); err != nil {
			t.Fatal(err)
		}
		if r.PrevHash != prev {
			t.Fatalf("prev_hash = %s, want %s", r.PrevHash, prev)
		}
		// hash = sha256(prev_hash || line without the hash member)
		i := bytes.LastIndex(ln, []byte(`,"hash":`))
		sum := sha256.Sum256(append([]byte(prev), append(append([]byte{}, ln[:i]...), '}')...))
		if hex.EncodeToString(sum[:]) != r.Hash {
			t.Fatalf("hash = %s, want %x", r.Hash, sum)
		}
		// The canonical form is the record encoded with an empty hash.
		r2 := r
		r2.Hash = ""
		canon, err := json.Marshal(&r2)
		if err != nil {
			t.Fatal(err)
		}
		if want := string(ln[:i]) + "}"; string(canon) != want {
			t.Fatalf("canonical\n%s\nwant\n%s", canon, want)
		}
		again, err := json.Marshal(&r)
		if err != nil || !bytes.Equal(again, ln) {
			t.Fatalf("re-encoded\n%s\nwant\n%s (%v)", again, ln, err)
		}
		prev = r.Hash
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\" back\\slash", "ctl\x00\x01\x1f\x7f\n\r\t", "utf8 é ☃ 𝄞",
		"bad \xff\xfe utf8", "line\u2028sep\u2029", "<html>&amp;"} {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if s == "bad \xff\xfe utf8" {
			want = "bad \ufffd\ufffd utf8"
		}
		if got != want {
			t.Errorf("%q -> %s -> %q", s, b, got)
		}
	}
}

func TestDetails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := []*Record{
		{Action: ActionExecRequest, Details: &ExecRequestDetails{PeerUID: 1001, Argv: []string{"ls", "-l"}, Justification: "line1\nline2"}},
		{Action: ActionExecOutput, Details: json.RawMessage("{\n  \"stream\": \"stdout\",\n  \"data\": \"aGk=\"\n}")},
		{Action: ActionExecExit, Details: map[string]any{"exit_code": 3}},
	}
	if err := l.AppendBatch(recs); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(&Record{Action: "x", Details: json.RawMessage("{bad")}); err == nil {
		t.Fatal("Append accepted invalid details")
	}
	if err := l.Append(&Record{}); err == nil {
		t.Fatal("Append accepted a record without action")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir); !rep.OK || rep.Records != 3 {
		t.Fatalf("report = %+v %v", rep, rep.FirstBad)
	}
	var got []*Record
	if err := Query(dir, Filter{}, func(r *Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var req ExecRequestDetails
	if err := got[0].DecodeDetails(&req); err != nil || req.Justification != "line1\nline2" || req.Argv[1] != "-l" {
		t.Fatalf("exec.request details = %+v %v", req, err)
	}
	var out ExecOutputDetails
	if err := got[1].DecodeDetails(&out); err != nil || string(out.Data) != "hi" {
		t.Fatalf("exec.output details = %+v %v", out, err)
	}
	var exit ExecExitDetails
	if err := got[2].DecodeDetails(&exit); err != nil || exit.ExitCode != 3 {
		t.Fatalf("exec.exit details = %+v %v", exit, err)
	}
}

func TestRotationKeepsChain(t *testing.T) {
	opts := Options{MaxFileBytes: 4096}
	dir := newLog(t, 200, opts)
	files, err := listFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 5 {
		t.Fatalf("%d files, want rotation", len(files))
	}
	for _, f := range files {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 4096 {
			t.Errorf("%s is %d bytes", f.path, fi.Size())
		}
	}
	// The first record of file 2 chains onto the last of file 1.
	l1 := readLines(t, files[0].path)
	l2 := readLines(t, files[1].path)
	var last, first Record
	if err := json.Unmarshal(l1[len(l1)-1], &last); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(l2[0], &first); err != nil {
		t.Fatal(err)
	}
	if first.PrevHash != last.Hash || first.Seq != last.Seq+1 {
		t.Fatalf("file 2 starts with seq %d prev %s; file 1 ends with seq %d hash %s", first.Seq, first.PrevHash, last.Seq, last.Hash)
	}

	// Reopen and go on.
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 200, 100)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if !rep.OK || rep.Records != 300 || rep.Files < 8 {
		t.Fatalf("report = %+v %v", rep, rep.FirstBad)
	}
}

func TestVerifyModified(t *testing.T) {
	dir := newLog(t, 100, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	lines := readLines(t, path)
	i := bytes.Index(lines[49], []byte("python3"))
	lines[49][i] = 'P'
	writeLines(t, path, lines)
	wantBad(t, mustVerify(t, dir), ProblemModified, 50, "audit-000001.log", 50)
}

func TestVerifyModifiedHash(t *testing.T) {
	dir := newLog(t, 100, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	lines := readLines(t, path)
	i := bytes.Index(lines[49], []byte(`"hash":"`)) + len(`"hash":"`)
	lines[49][i] ^= 1
	writeLines(t, path, lines)
	wantBad(t, mustVerify(t, dir), ProblemModified, 50, "audit-000001.log", 50)
}

// TestVerifyModifiedRehashed: the forger fixes the record's own hash; the next record's prev_hash still names it.
func TestVerifyModifiedRehashed(t *testing.T) {
	dir := newLog(t, 100, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	lines := readLines(t, path)
	var r Record
	if err := json.Unmarshal(lines[49], &r); err != nil {
		t.Fatal(err)
	}
	r.Resource = "/innocent"
	body, err := appendRecordBody(nil, &r, r.PrevHash)
	if err != nil {
		t.Fatal(err)
	}
	sum := newHasher().compute([]byte(r.PrevHash), body)
	lines[49] = append(append(append(body, `,"hash":"`...), sum...), "\"}\n"...)
	writeLines(t, path, lines)
	wantBad(t, mustVerify(t, dir), ProblemModified, 50, "audit-000001.log", 50)
}

func TestVerifyMissing(t *testing.T) {
	dir := newLog(t, 100, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	lines := readLines(t, path)
	lines = append(lines[:49:49], lines[50:]...)
	writeLines(t, path, lines)
	wantBad(t, mustVerify(t, dir), ProblemMissing, 50, "audit-000001.log", 50)
}

func TestVerifyMissingFirst(t *testing.T) {
	dir := newLog(t, 10, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	writeLines(t, path, readLines(t, path)[1:])
	wantBad(t, mustVerify(t, dir), ProblemMissing, 1, "audit-000001.log", 1)
}

func TestVerifyReordered(t *testing.T) {
	dir := newLog(t, 100, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	lines := readLines(t, path)
	lines[49], lines[50] = lines[50], lines[49]
	writeLines(t, path, lines)
	wantBad(t, mustVerify(t, dir), ProblemReordered, 51, "audit-000001.log", 50)
}

func TestVerifyDuplicated(t *testing.T) {
	dir := newLog(t, 100, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	lines := readLines(t, path)
	lines = append(lines[:50:50], append([][]byte{lines[49]}, lines[50:]...)...)
	writeLines(t, path, lines)
	wantBad(t, mustVerify(t, dir), ProblemReordered, 50, "audit-000001.log", 51)
}

func TestVerifyFileMissing(t *testing.T) {
	dir := newLog(t, 200, Options{MaxFileBytes: 4096})
	if err := os.Remove(filepath.Join(dir, "audit-000002.log")); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if rep.OK || rep.FirstBad.Kind != ProblemFileMissing || filepath.Base(rep.FirstBad.File) != "audit-000002.log" {
		t.Fatalf("FirstBad = %v", rep.FirstBad)
	}
}

func TestVerifyTruncatedMiddleFile(t *testing.T) {
	dir := newLog(t, 200, Options{MaxFileBytes: 4096})
	path := filepath.Join(dir, "audit-000002.log")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()-10); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if rep.OK || rep.FirstBad.Kind != ProblemTruncated {
		t.Fatalf("FirstBad = %v", rep.FirstBad)
	}
}

func TestTruncatedTailRecovery(t *testing.T) {
	dir := newLog(t, 100, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	cut := int64(len(lines[99]) / 2)
	if err := os.Truncate(path, fi.Size()-cut); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if !rep.OK || !rep.TruncatedTail || rep.Records != 99 || rep.Status() != "ok (truncated tail)" {
		t.Fatalf("report = %+v", rep)
	}
	if rep.Tail.Kind != ProblemTruncatedTail || rep.Tail.Line != 100 || rep.Tail.Seq != 100 {
		t.Fatalf("Tail = %v", rep.Tail)
	}

	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := l.Recovered()
	if want := int64(len(lines[99])) - cut; rec.TruncatedBytes != want || !rec.UncleanShutdown || rec.LastSeq != 99 {
		t.Fatalf("Recovered = %+v; want %d bytes truncated", rec, want)
	}
	r := &Record{Action: ActionDaemonRestart, PrincipalType: PrincipalDaemon}
	if err := l.Append(r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 100 {
		t.Fatalf("seq after recovery = %d, want 100", r.Seq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, dir)
	if !rep.OK || rep.TruncatedTail || rep.Records != 100 {
		t.Fatalf("report after recovery = %+v %v", rep, rep.FirstBad)
	}
}

func TestGarbageTailRecovery(t *testing.T) {
	dir := newLog(t, 10, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// What ext4 can show after a crash: a block of NULs, then a partial line.
	garbage := append(bytes.Repeat([]byte{0}, 100), "\n{\"seq\":11,\"ti"...)
	if _, err := f.Write(garbage); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rep := mustVerify(t, dir)
	if !rep.OK || !rep.TruncatedTail || rep.Records != 10 {
		t.Fatalf("report = %+v %v", rep, rep.FirstBad)
	}
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rec := l.Recovered(); rec.TruncatedBytes != int64(len(garbage)) || rec.LastSeq != 10 {
		t.Fatalf("Recovered = %+v, want %d bytes", rec, len(garbage))
	}
	appendN(t, l, 10, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir); !rep.OK || rep.TruncatedTail || rep.Records != 15 {
		t.Fatalf("report = %+v %v", rep, rep.FirstBad)
	}
}

func TestOpenRefusesModifiedLastRecord(t *testing.T) {
	dir := newLog(t, 10, Options{})
	path := filepath.Join(dir, "audit-000001.log")
	lines := readLines(t, path)
	i := bytes.Index(lines[9], []byte("python3"))
	lines[9][i] = 'P'
	writeLines(t, path, lines)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

func TestOpenEmptyLastFile(t *testing.T) {
	dir := newLog(t, 200, Options{MaxFileBytes: 4096})
	files, err := listFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	// A crash right after rotation created the next file.
	next := filepath.Join(dir, fileName(files[len(files)-1].index+1))
	if err := os.WriteFile(next, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Options{MaxFileBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	if rec := l.Recovered(); rec.LastSeq != 200 || !rec.UncleanShutdown {
		t.Fatalf("Recovered = %+v", rec)
	}
	appendN(t, l, 200, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir); !rep.OK || rep.Records != 201 {
		t.Fatalf("report = %+v %v", rep, rep.FirstBad)
	}
}

func TestCleanShutdown(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Recovered().UncleanShutdown {
		t.Fatal("fresh log reports an unclean shutdown")
	}
	appendN(t, l, 0, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if !l.Recovered().UncleanShutdown {
		t.Fatal("no daemon.stop, but shutdown reported clean")
	}
	if err := l.Append(&Record{Action: ActionDaemonStop, PrincipalType: PrincipalDaemon}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if err := l.Append(syscallRecord(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if l, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec := l.Recovered(); rec.UncleanShutdown || rec.LastSeq != 4 {
		t.Fatalf("Recovered = %+v", rec)
	}
}

func TestSyncMakesVisible(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 1)
	path := filepath.Join(dir, "audit-000001.log")
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Fatalf("record written before Sync with a 1h interval")
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.HasPrefix(b, []byte(`{"seq":1,`)) {
		t.Fatalf("after Sync: %q", b)
	}
}

func TestBackgroundFlush(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{SyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	appendN(t, l, 0, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if seq, _, _ := Head(dir); seq == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("record not flushed by the background flusher")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentAppend(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{MaxFileBytes: 64 << 10, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 16, 300
	seqs := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				if i%10 == 0 {
					batch := []*Record{syscallRecord(i), syscallRecord(i + 1)}
					if err := l.AppendBatch(batch); err != nil {
						t.Error(err)
						return
					}
					if batch[1].Seq != batch[0].Seq+1 {
						t.Errorf("batch seqs %d %d", batch[0].Seq, batch[1].Seq)
					}
					seqs[w] = append(seqs[w], batch[0].Seq, batch[1].Seq)
					continue
				}
				r := syscallRecord(i)
				if err := l.Append(r); err != nil {
					t.Error(err)
					return
				}
				seqs[w] = append(seqs[w], r.Seq)
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			if err := l.Sync(); err != nil {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, s := range seqs {
		for _, q := range s {
			if seen[q] {
				t.Fatalf("seq %d assigned twice", q)
			}
			seen[q] = true
		}
	}
	total := workers * (per + per/10)
	for q := uint64(1); q <= uint64(total); q++ {
		if !seen[q] {
			t.Fatalf("seq %d never assigned", q)
		}
	}
	rep := mustVerify(t, dir)
	if !rep.OK || rep.Records != total || rep.Files < 2 {
		t.Fatalf("report = %+v %v", rep, rep.FirstBad)
	}
}

func queryLog(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{MaxFileBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		r := syscallRecord(i)
		r.Timestamp = t0.Add(time.Duration(i) * time.Second)
		r.ExecID = fmt.Sprintf("ex-%d", i%3)
		r.CorrelationID = fmt.Sprintf("corr-%d", i%2)
		if i%4 == 0 {
			r.PrincipalID = "codex"
		}
		if i%5 == 0 {
			r.Syscall, r.Result, r.Ret, r.Errno = "unlinkat", ResultError, -13, "EACCES"
		}
		if i%6 == 0 {
			r.Action = ActionExecOutput
		}
		if err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestQuery(t *testing.T) {
	dir := queryLog(t)
	tests := []struct {
		name string
		f    Filter
		want func(i int) bool
	}{
		{"all", Filter{}, func(int) bool { return true }},
		{"agent", Filter{Agent: "codex"}, func(i int) bool { return i%4 == 0 }},
		{"exec", Filter{ExecID: "ex-1"}, func(i int) bool { return i%3 == 1 }},
		{"correlation", Filter{CorrelationID: "corr-0"}, func(i int) bool { return i%2 == 0 }},
		{"action", Filter{Action: ActionExecOutput}, func(i int) bool { return i%6 == 0 }},
		{"syscall", Filter{Syscall: "unlinkat"}, func(i int) bool { return i%5 == 0 }},
		{"result", Filter{Result: ResultError, Agent: "claude"}, func(i int) bool { return i%5 == 0 && i%4 != 0 }},
		{"time", Filter{Since: t0.Add(10 * time.Second), Until: t0.Add(20 * time.Second)}, func(i int) bool { return i >= 10 && i < 20 }},
		{"seq", Filter{Seq: 45}, func(i int) bool { return i+1 >= 45 }},
		{"none", Filter{Agent: "nobody"}, func(int) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []uint64
			err := Query(dir, tt.f, func(r *Record) error { got = append(got, r.Seq); return nil })
			if err != nil {
				t.Fatal(err)
			}
			var want []uint64
			for i := range 60 {
				if tt.want(i) {
					want = append(want, uint64(i+1))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
		})
	}
	stop := errors.New("stop")
	n := 0
	if err := Query(dir, Filter{}, func(*Record) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Query returned %v after %d records", err, n)
	}
}

func TestTailFollow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{MaxFileBytes: 2048, SyncInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 0, 5)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	old := TailPollInterval
	TailPollInterval = 5 * time.Millisecond
	defer func() { TailPollInterval = old }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const total = 60
	got := make(chan uint64, total)
	done := make(chan error, 1)
	go func() {
		done <- Tail(ctx, dir, true, func(r *Record) error { got <- r.Seq; return nil })
	}()
	appendN(t, l, 5, total-5)
	for want := uint64(1); want <= total; want++ {
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("Tail gave seq %d, want %d", s, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Tail stalled before seq %d", want)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Tail = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := TailFilter(context.Background(), dir, Filter{Seq: 50}, false, func(*Record) error { n++; return nil }); err != nil || n != 11 {
		t.Fatalf("TailFilter without follow: %d records, %v", n, err)
	}
}

func execRecords() []*Record {
	base := func(i int, action string) *Record {
		return &Record{
			Timestamp: t0.Add(time.Duration(i) * 10 * time.Millisecond), PrincipalType: PrincipalAgent,
			PrincipalID: "claude", UID: 1001, ExecID: "ex-7", CorrelationID: "corr-7", Action: action,
		}
	}
	var rs []*Record
	r := base(0, ActionExecRequest)
	r.Details = &ExecRequestDetails{PeerUID: 1001, PeerPID: 999, Argv: []string{"sh", "-c", "make test"}, Cwd: "/work",
		Justification: "run the tests", Profile: "build", ProfileDigest: "sha256:abc", Decision: "allow", Rule: "build-tools"}
	rs = append(rs, r)
	r = base(1, ActionExecStart)
	r.PID, r.PPID, r.Comm = 100, 1, "sh"
	r.Details = &ProcessDetails{Argv: []string{"sh", "-c", "make test"}}
	rs = append(rs, r)
	sys := func(i int, pid int, comm, name, res string, ret int64, errno string, args ...string) {
		r := base(i, ActionSyscall)
		r.PID, r.PPID, r.Comm, r.Syscall, r.Result, r.Ret, r.Errno, r.Args = pid, 1, comm, name, res, ret, errno, args
		if len(args) > 1 {
			r.Resource = args[1]
		}
		rs = append(rs, r)
	}
	// clone returns the child's pid inside the exec's pid namespace (6);
	// the process.fork record names it in host pids (101).
	sys(2, 100, "sh", "clone", ResultSuccess, 6, "")
	r = base(2, ActionProcessFork)
	r.PID, r.PPID = 101, 100
	rs = append(rs, r)
	sys(3, 101, "sh", "execve", ResultSuccess, 0, "", "/usr/bin/make", "/usr/bin/make", "test")
	sys(4, 101, "make", "openat", ResultSuccess, 3, "", "AT_FDCWD", "/work/Makefile", "O_RDONLY")
	sys(5, 101, "make", "openat", ResultSuccess, 4, "", "AT_FDCWD", "/work/out.txt", "O_WRONLY|O_CREAT|O_TRUNC")
	sys(6, 101, "make", "connect", ResultDenied, -1, "EPERM", "3", "10.0.0.1:443")
	sys(7, 101, "make", "unlinkat", ResultError, -2, "ENOENT", "AT_FDCWD", "/work/\x1b]0;pwned\x07gone")
	r = base(8, ActionExecOutput)
	r.Details = &ExecOutputDetails{Stream: "stdout", Data: []byte("building...\n")}
	rs = append(rs, r)
	r = base(9, ActionExecOutput)
	r.Details = map[string]any{"stream": "stderr", "data": "plain \x1b[31mred\x1b[0m \x1b]0;title\x07text\n"}
	rs = append(rs, r)
	r = base(10, ActionProcessExit)
	r.PID, r.PPID = 101, 100
	code := 2
	r.Details = &ProcessDetails{ExitCode: &code}
	rs = append(rs, r)
	r = base(11, ActionExecExit)
	r.PID = 100
	r.Details = &ExecExitDetails{ExitCode: 2}
	rs = append(rs, r)
	return rs
}

func TestReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch(execRecords()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var recs []*Record
	if err := Query(dir, Filter{ExecID: "ex-7"}, func(r *Record) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Replay(&buf, recs, ReplayOptions{NoTiming: true}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("\n%s", out)
	for _, want := range []string{
		"Agent:          claude (uid 1001)", "Peer:           uid 1001 pid 999", "Command:        sh -c \"make test\"",
		"Cwd:            /work", "Correlation:    corr-7", "Justification:  run the tests",
		"Decision:       allow (rule build-tools)", "Exit:           exit code 2 after 100ms",
		"100 sh -c \"make test\"", "└─ 101 /usr/bin/make /usr/bin/make test [exit 2]",
		"openat /work/out.txt", "DENIED", "connect 10.0.0.1:443", "ERROR", "ENOENT",
		"building...\n", "plain red text\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay lacks %q", want)
		}
	}
	for _, bad := range []string{"/work/Makefile", "\x1b]", "\x1b[31m", "\x07"} {
		if strings.Contains(out, bad) {
			t.Errorf("replay contains %q", bad)
		}
	}

	buf.Reset()
	if err := Replay(&buf, recs, ReplayOptions{NoTiming: true, All: true, Color: true}); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	for _, want := range []string{"/work/Makefile", ansiRed + "DENIED", "plain \x1b[31mred\x1b[0m text"} {
		if !strings.Contains(out, want) {
			t.Errorf("replay --all --color lacks %q", want)
		}
	}
	if strings.Contains(out, "\x1b]") {
		t.Error("replay --color passes OSC escapes through")
	}

	start := time.Now()
	buf.Reset()
	if err := Replay(&buf, recs, ReplayOptions{Speed: 0.5}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("timed replay took %v, want the 10ms gap scaled to 20ms", d)
	}
}

func benchLog(b *testing.B) *Log {
	l, err := Open(filepath.Join(b.TempDir(), "audit"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

func BenchmarkAppend(b *testing.B) {
	l := benchLog(b)
	r := syscallRecord(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.Timestamp = time.Time{}
		if err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAppendBatch(b *testing.B) {
	l := benchLog(b)
	batch := make([]*Record, 64)
	for i := range batch {
		batch[i] = syscallRecord(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		if err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
		n += len(batch)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkAppendParallel(b *testing.B) {
	l := benchLog(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := syscallRecord(0)
		for pb.Next() {
			if err := l.Append(r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkVerify(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "audit")
	l, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100000
	for i := range n {
		if err := l.Append(syscallRecord(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(dir)
		if err != nil || !rep.OK {
			b.Fatal(err, rep)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkEncode is Append's CPU work without the write(2) into the page cache: encoding and hashing.
func BenchmarkEncode(b *testing.B) {
	r := syscallRecord(0)
	h := newHasher()
	prev := []byte(ZeroHash)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		r.Timestamp = time.Now()
		var err error
		if buf, err = appendRecordBody(buf[:0], r, ZeroHash); err != nil {
			b.Fatal(err)
		}
		sum := h.compute(prev, buf)
		buf = append(append(append(buf, `,"hash":"`...), sum...), '"', '}', '\n')
	}
	b.ReportMetric(float64(len(buf)), "bytes/record")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// A record with invalid UTF-8 in an agent-controlled string re-encodes to
// exactly its stored bytes, so a client can re-check its hash.
func TestInvalidUTF8RoundTrip(t *testing.T) {
	r := &Record{Seq: 1, Action: ActionSyscall, Resource: "/tmp/bad\xff\xfename", Comm: "x\x80", PrevHash: ZeroHash, Hash: "ab"}
	first, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := back.UnmarshalJSON(first); err != nil {
		t.Fatal(err)
	}
	second, err := back.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Fatalf("re-encoding changed the bytes:\n%s\n%s", first, second)
	}
}
