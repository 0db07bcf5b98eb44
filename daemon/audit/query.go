package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Filter selects records. Zero fields match everything; set fields must all match.
type Filter struct {
	Agent         string // principal_id
	ExecID        string
	CorrelationID string
	Since         time.Time // timestamp >= Since
	Until         time.Time // timestamp < Until
	Action        string
	Syscall       string
	Result        string
	Seq           uint64 // seq >= Seq
}

// Match reports whether r passes f.
func (f *Filter) Match(r *Record) bool {
	switch {
	case f.Agent != "" && r.PrincipalID != f.Agent,
		f.ExecID != "" && r.ExecID != f.ExecID,
		f.CorrelationID != "" && r.CorrelationID != f.CorrelationID,
		f.Action != "" && r.Action != f.Action,
		f.Syscall != "" && r.Syscall != f.Syscall,
		f.Result != "" && r.Result != f.Result,
		r.Seq < f.Seq,
		!f.Since.IsZero() && r.Timestamp.Before(f.Since),
		!f.Until.IsZero() && !r.Timestamp.Before(f.Until):
		return false
	}
	return true
}

// matcher applies a Filter to raw lines, skipping most non-matching ones before decoding them.
type matcher struct {
	f       Filter
	needles [][]byte
}

func newMatcher(f Filter) *matcher {
	m := &matcher{f: f}
	// The writer's encoding is canonical, so a member of a matching record appears verbatim in its line. A line
	// without it cannot match; a line with it (perhaps inside details) is decoded and checked properly.
	for _, kv := range [][2]string{
		{`"principal_id":`, f.Agent}, {`"exec_id":`, f.ExecID}, {`"correlation_id":`, f.CorrelationID},
		{`"action":`, f.Action}, {`"syscall":`, f.Syscall}, {`"result":`, f.Result},
	} {
		if kv[1] != "" {
			m.needles = append(m.needles, appendString([]byte(kv[0]), kv[1]))
		}
	}
	return m
}

// line decodes b and returns the record if it matches, or nil.
func (m *matcher) line(b []byte, where func() string) (*Record, error) {
	if m.f.Seq > 0 {
		if seq, ok := lineSeq(b); ok && seq < m.f.Seq {
			return nil, nil
		}
	}
	for _, n := range m.needles {
		if !bytes.Contains(b, n) {
			return nil, nil
		}
	}
	r := new(Record)
	if err := r.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", where(), err, ErrCorrupt)
	}
	if !m.f.Match(r) {
		return nil, nil
	}
	return r, nil
}

// Query calls fn, in log order, for each record in dir that matches f. An incomplete last line (a write in progress
// or a torn tail) is skipped. Query stops at and returns the first error fn returns. It does not check hashes; use
// Verify for that.
func Query(dir string, f Filter, fn func(*Record) error) error {
	files, err := listFiles(dir)
	if err != nil {
		return fmt.Errorf("list audit dir: %w", err)
	}
	m := newMatcher(f)
	for i, lf := range files {
		if skip, err := skipFile(files, i, f.Seq); err != nil {
			return err
		} else if skip {
			continue
		}
		if err := queryFile(lf.path, m, fn); err != nil {
			return err
		}
	}
	return nil
}

// skipFile reports whether every record in files[i] has seq < seq, judging by the first record of the next file.
func skipFile(files []logFile, i int, seq uint64) (bool, error) {
	if seq <= 1 || i+1 >= len(files) {
		return false, nil
	}
	f, err := os.Open(files[i+1].path)
	if err != nil {
		return false, fmt.Errorf("open audit file: %w", err)
	}
	defer f.Close()
	b, complete, err := newLineReader(io.LimitReader(f, 1<<20)).next()
	if err != nil || !complete {
		return false, nil
	}
	first, ok := lineSeq(b)
	return ok && first <= seq, nil
}

func queryFile(path string, m *matcher, fn func(*Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	defer f.Close()
	lr := newLineReader(f)
	for lineNo := 1; ; lineNo++ {
		b, complete, err := lr.next()
		if err == io.EOF || (err == nil && !complete) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		r, err := m.line(b, func() string { return fmt.Sprintf("%s:%d", filepath.Base(path), lineNo) })
		if err != nil {
			return err
		}
		if r != nil {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
}

// TailPollInterval is how often Tail looks for new records when following.
var TailPollInterval = 200 * time.Millisecond

// Tail calls fn for every record in dir and, with follow, then waits for new ones, across rotations, until ctx is
// done (returning ctx.Err()) or fn returns an error. Records become visible when the writer flushes, within its
// SyncInterval.
func Tail(ctx context.Context, dir string, follow bool, fn func(*Record) error) error {
	return TailFilter(ctx, dir, Filter{}, follow, fn)
}

// TailFilter is Tail for the records that match f. Set f.Seq to start near the end (see Head).
func TailFilter(ctx context.Context, dir string, f Filter, follow bool, fn func(*Record) error) error {
	m := newMatcher(f)
	t := &tailer{dir: dir, m: m, fn: fn, buf: make([]byte, 256<<10)}
	defer t.close()
	for {
		files, err := listFiles(dir)
		if err != nil {
			return fmt.Errorf("list audit dir: %w", err)
		}
		// Look for a next file before draining the current one: once a next file exists the writer has finished
		// with the current one, so after this drain nothing more can appear in it.
		next := -1
		for i, lf := range files {
			if lf.index > t.index {
				if t.f == nil && f.Seq > 1 {
					if skip, err := skipFile(files, i, f.Seq); err != nil {
						return err
					} else if skip {
						continue
					}
				}
				next = i
				break
			}
		}
		if t.f != nil {
			if err := t.drain(); err != nil {
				return err
			}
		}
		if next >= 0 {
			if err := t.open(files[next]); err != nil {
				return err
			}
			continue
		}
		if !follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(TailPollInterval):
		}
	}
}

type tailer struct {
	dir     string
	m       *matcher
	fn      func(*Record) error
	f       *os.File
	path    string
	index   int
	lineNo  int
	buf     []byte
	pending []byte // an incomplete line, waiting for the rest
}

func (t *tailer) open(lf logFile) error {
	t.close()
	f, err := os.Open(lf.path)
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	t.f, t.path, t.index, t.lineNo, t.pending = f, lf.path, lf.index, 0, t.pending[:0]
	return nil
}

func (t *tailer) close() {
	if t.f != nil {
		t.f.Close()
		t.f = nil
	}
}

// drain reads what has been appended to the current file since the last call.
func (t *tailer) drain() error {
	for {
		n, err := t.f.Read(t.buf)
		data := t.buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				t.pending = append(t.pending, data...)
				break
			}
			b := data[:i]
			if len(t.pending) > 0 {
				t.pending = append(t.pending, b...)
				b = t.pending
			}
			data = data[i+1:]
			t.lineNo++
			r, err := t.m.line(b, func() string { return fmt.Sprintf("%s:%d", filepath.Base(t.path), t.lineNo) })
			t.pending = t.pending[:0]
			if err != nil {
				return err
			}
			if r != nil {
				if err := t.fn(r); err != nil {
					return err
				}
			}
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", t.path, err)
		}
	}
}

// Head returns the seq and hash of the last complete record in dir (0 and ZeroHash if there is none), reading only
// the end of the log.
func Head(dir string) (uint64, string, error) {
	files, err := listFiles(dir)
	if err != nil {
		return 0, "", fmt.Errorf("list audit dir: %w", err)
	}
	for i := len(files) - 1; i >= 0; i-- {
		f, err := os.Open(files[i].path)
		if err != nil {
			return 0, "", fmt.Errorf("open audit file: %w", err)
		}
		fi, err := f.Stat()
		if err == nil {
			var good int64
			if good, err = tornTail(f, fi.Size()); err == nil {
				var lr lastRec
				lr, err = lastRecord(f, files[i].path, good, i == len(files)-1)
				if err == nil && lr.found {
					f.Close()
					return lr.seq, lr.hash, nil
				}
			}
		}
		f.Close()
		if err != nil {
			return 0, "", err
		}
	}
	return 0, ZeroHash, nil
}
