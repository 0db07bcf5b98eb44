package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Problem kinds reported by Verify.
const (
	// ProblemModified: a record's hash does not match its content, a record is not well-formed, or a record's
	// prev_hash does not match the hash of the record before it (that record was modified and re-hashed).
	ProblemModified = "modified"
	// ProblemMissing: a gap in seq.
	ProblemMissing = "missing"
	// ProblemReordered: seq goes backwards, or a record appears before one with a lower seq.
	ProblemReordered = "reordered"
	// ProblemTruncatedTail: the last line of the last file is incomplete (or not a record). A crash in the middle
	// of a write does this, so it is a warning, not a broken chain; Open cuts it.
	ProblemTruncatedTail = "truncated tail"
	// ProblemTruncated: a rotated file (not the last) ends in an incomplete line.
	ProblemTruncated = "truncated"
	// ProblemFileMissing: a gap in the file numbering.
	ProblemFileMissing = "file missing"
)

// Problem locates the first thing wrong with a log.
type Problem struct {
	// Seq is the record concerned: the modified or out-of-place record, or the first missing one.
	Seq uint64
	// File and Line (1-based) say where in the log the problem was found.
	File   string
	Line   int
	Kind   string
	Detail string
}

func (p *Problem) String() string {
	return fmt.Sprintf("%s:%d: seq %d: %s: %s", filepath.Base(p.File), p.Line, p.Seq, p.Kind, p.Detail)
}

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Records int
	Files   int
	// OK is true when the chain is intact, TruncatedTail or not.
	OK bool
	// TruncatedTail is set when the last file ends in a torn write; Tail says where.
	TruncatedTail bool
	Tail          *Problem
	// FirstBad is the first problem that breaks the chain; nil when OK.
	FirstBad *Problem
	// LastSeq and LastHash identify the last good record. Publishing LastHash somewhere the host's root cannot
	// rewrite anchors everything before it.
	LastSeq  uint64
	LastHash string
}

// Status is "ok", "ok (truncated tail)" or "broken".
func (r *VerifyReport) Status() string {
	switch {
	case !r.OK:
		return "broken"
	case r.TruncatedTail:
		return "ok (truncated tail)"
	default:
		return "ok"
	}
}

// Verify recomputes the hash chain of the log in dir, file by file, and reports the first problem. The error is
// for failures to read the log, not for problems in it.
func Verify(dir string) (*VerifyReport, error) {
	files, err := listFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("list audit dir: %w", err)
	}
	v := &verifier{files: files, h: newHasher(), rep: &VerifyReport{OK: true, LastHash: ZeroHash}}
	copy(v.prevHash[:], ZeroHash)
	for i := range files {
		if err := v.file(i); err != nil {
			return nil, err
		}
		if v.rep.FirstBad != nil {
			v.rep.OK = false
			break
		}
	}
	v.rep.LastSeq = v.prevSeq
	v.rep.LastHash = string(v.prevHash[:])
	return v.rep, nil
}

type verifier struct {
	files    []logFile
	h        *hasher
	rep      *VerifyReport
	prevSeq  uint64
	prevHash [64]byte
	prevFile string
	prevLine int
}

func (v *verifier) fail(p Problem) {
	v.rep.FirstBad = &p
}

func (v *verifier) file(i int) error {
	f := v.files[i]
	want := 1
	if i > 0 {
		want = v.files[i-1].index + 1
	}
	if f.index != want {
		v.fail(Problem{Seq: v.prevSeq + 1, File: filepath.Join(filepath.Dir(f.path), fileName(want)), Kind: ProblemFileMissing,
			Detail: fmt.Sprintf("%s is missing before %s", fileName(want), filepath.Base(f.path))})
		return nil
	}
	v.rep.Files++
	last := i == len(v.files)-1
	fh, err := os.Open(f.path)
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	defer fh.Close()
	lr := newLineReader(fh)
	for lineNo := 1; ; lineNo++ {
		b, complete, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f.path, err)
		}
		if !complete {
			p := Problem{Seq: v.prevSeq + 1, File: f.path, Line: lineNo,
				Detail: fmt.Sprintf("%d bytes after the last complete line", len(b))}
			if last {
				p.Kind = ProblemTruncatedTail
				v.rep.TruncatedTail, v.rep.Tail = true, &p
			} else {
				p.Kind = ProblemTruncated
				v.fail(p)
			}
			return nil
		}
		ln, perr := parseLine(b)
		if perr != nil {
			if last {
				// A line of garbage right before the end (or a torn tail) is also what a crash leaves; Open cuts
				// it too.
				n := len(b) + 1
				nb, _, err := lr.next()
				if err == io.EOF || (err == nil && !lr.complete) {
					n += len(nb)
					p := Problem{Seq: v.prevSeq + 1, File: f.path, Line: lineNo, Kind: ProblemTruncatedTail,
						Detail: fmt.Sprintf("%d bytes after the last complete record (last line is not a record: %v)", n, perr)}
					v.rep.TruncatedTail, v.rep.Tail = true, &p
					return nil
				}
				if err != nil {
					return fmt.Errorf("read %s: %w", f.path, err)
				}
			}
			v.fail(Problem{Seq: v.prevSeq + 1, File: f.path, Line: lineNo, Kind: ProblemModified,
				Detail: fmt.Sprintf("not a well-formed record: %v", perr)})
			return nil
		}
		if !bytes.Equal(v.h.compute(ln.prev, ln.body), ln.hash) {
			v.fail(Problem{Seq: ln.seq, File: f.path, Line: lineNo, Kind: ProblemModified,
				Detail: "hash does not match the record's content"})
			return nil
		}
		want := v.prevSeq + 1
		switch {
		case ln.seq == want:
			if !bytes.Equal(ln.prev, v.prevHash[:]) {
				if v.prevSeq == 0 {
					v.fail(Problem{Seq: ln.seq, File: f.path, Line: lineNo, Kind: ProblemModified,
						Detail: "first record's prev_hash is not zero"})
				} else {
					// Each record is self-consistent, so the previous one was changed and its hash recomputed
					// (or this one's prev_hash was, and its hash with it).
					v.fail(Problem{Seq: v.prevSeq, File: v.prevFile, Line: v.prevLine, Kind: ProblemModified,
						Detail: fmt.Sprintf("hash %.16s... is not the prev_hash that seq %d (%s:%d) committed to; modified and re-hashed",
							v.prevHash[:], ln.seq, filepath.Base(f.path), lineNo)})
				}
				return nil
			}
		case ln.seq > want:
			at, found, err := v.findSeq(i, lineNo, want, ln.seq)
			if err != nil {
				return err
			}
			if found {
				v.fail(Problem{Seq: ln.seq, File: f.path, Line: lineNo, Kind: ProblemReordered,
					Detail: fmt.Sprintf("seq %d appears before seq %d (at %s)", ln.seq, want, at)})
			} else {
				detail := fmt.Sprintf("seq %d to %d missing before seq %d", want, ln.seq-1, ln.seq)
				if ln.seq-1 == want {
					detail = fmt.Sprintf("seq %d missing before seq %d", want, ln.seq)
				}
				v.fail(Problem{Seq: want, File: f.path, Line: lineNo, Kind: ProblemMissing, Detail: detail})
			}
			return nil
		default:
			detail := fmt.Sprintf("seq %d follows seq %d", ln.seq, v.prevSeq)
			if ln.seq == v.prevSeq {
				detail = fmt.Sprintf("seq %d appears twice", ln.seq)
			}
			v.fail(Problem{Seq: ln.seq, File: f.path, Line: lineNo, Kind: ProblemReordered, Detail: detail})
			return nil
		}
		v.rep.Records++
		v.prevSeq = ln.seq
		copy(v.prevHash[:], ln.hash)
		v.prevFile, v.prevLine = f.path, lineNo
	}
}

// findSeq looks for a record with lo <= seq < hi after line skip of file i, to tell records that were moved from
// records that were removed. It runs at most once per Verify.
func (v *verifier) findSeq(i, skip int, lo, hi uint64) (string, bool, error) {
	for j := i; j < len(v.files); j++ {
		f, err := os.Open(v.files[j].path)
		if err != nil {
			return "", false, fmt.Errorf("open audit file: %w", err)
		}
		lr := newLineReader(f)
		for lineNo := 1; ; lineNo++ {
			b, complete, err := lr.next()
			if err != nil || !complete {
				f.Close()
				if err != nil && err != io.EOF {
					return "", false, fmt.Errorf("read %s: %w", v.files[j].path, err)
				}
				break
			}
			if j == i && lineNo <= skip {
				continue
			}
			if seq, ok := lineSeq(b); ok && seq >= lo && seq < hi {
				f.Close()
				return fmt.Sprintf("%s:%d", filepath.Base(v.files[j].path), lineNo), true, nil
			}
		}
	}
	return "", false, nil
}

// lineSeq reads the seq at the start of a line.
func lineSeq(b []byte) (uint64, bool) {
	const p = `{"seq":`
	if !bytes.HasPrefix(b, []byte(p)) {
		return 0, false
	}
	var n uint64
	i := len(p)
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + uint64(b[i]-'0')
	}
	return n, i > len(p) && i < len(b) && b[i] == ','
}

// lineReader reads lines of any length. A line is only valid until the next call.
type lineReader struct {
	r        *bufio.Reader
	scratch  []byte
	complete bool // whether the last line read ended in a newline
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 1<<20)}
}

// next returns the next line without its newline. complete is false for a last line with no newline; err is io.EOF
// when there is nothing more.
func (lr *lineReader) next() ([]byte, bool, error) {
	b, err := lr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		lr.scratch = append(lr.scratch[:0], b...)
		for errors.Is(err, bufio.ErrBufferFull) {
			b, err = lr.r.ReadSlice('\n')
			lr.scratch = append(lr.scratch, b...)
		}
		b = lr.scratch
	}
	lr.complete = false
	if err == io.EOF {
		if len(b) == 0 {
			return nil, false, io.EOF
		}
		return b, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	lr.complete = true
	return b[:len(b)-1], true, nil
}
