package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// ErrClosed is returned by methods of a closed Log.
var ErrClosed = errors.New("audit log closed")

// ErrLocked is returned by Open when another Log (in this process or another) has the directory open.
var ErrLocked = errors.New("audit log in use by another writer")

const (
	// DefaultMaxFileBytes is the size at which a log file is rotated.
	DefaultMaxFileBytes = 64 << 20
	// DefaultSyncInterval bounds how long an appended record may sit in memory or in the page cache.
	DefaultSyncInterval = 100 * time.Millisecond
	// DefaultBufferBytes is the write buffer size.
	DefaultBufferBytes = 256 << 10
)

// Options configures a Log. The zero value gives the defaults.
type Options struct {
	// MaxFileBytes rotates to a new file before a record would take the current one past this size.
	MaxFileBytes int64
	// SyncInterval is the longest time between a successful Append and the fsync that makes it durable.
	SyncInterval time.Duration
	// BufferBytes is the size of the write buffer.
	BufferBytes int
}

// Recovered describes what Open found at the end of an existing log.
type Recovered struct {
	// TruncatedBytes were cut from the end of File: an incomplete last line, and a last complete line that did not
	// parse as a record, both the marks of a crash in the middle of a write.
	TruncatedBytes int64
	File           string
	// UncleanShutdown is set when the log has records and the last one is not daemon.stop, or when bytes were
	// truncated. The daemon should then append a daemon.restart record.
	UncleanShutdown bool
	// LastSeq and LastHash identify the record the chain continues from (0 and ZeroHash for an empty log).
	LastSeq  uint64
	LastHash string
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	rec  Recovered
	lock *os.File // holds the flock on dir

	// syncMu serializes Sync so that one caller cannot return while another's fsync, which it relies on, is still in
	// flight. It is taken before mu.
	syncMu sync.Mutex

	mu       sync.Mutex
	f        *os.File
	w        *bufio.Writer
	index    int
	size     int64 // bytes in the current file, buffered ones included
	seq      uint64
	prev     [64]byte // hash of the last record, hex
	prevStr  string   // the same, as a string shared with the last record
	buf      []byte
	h        *hasher
	unsynced bool  // bytes written since the last fsync
	err      error // sticky: after a failed write the chain on disk is unknown, so nothing more is appended
	closing  bool  // Close has begun
	closed   bool

	stop chan struct{}
	done chan struct{}
}

// Open opens the log in dir, creating dir (mode 0700) and the first file (mode 0600) if needed. If the last file ends
// in a torn write, the torn bytes are truncated and reported by Recovered. Open reads only the tail of the last file
// (or two), so it is fast however large the log is; use Verify to check the whole chain.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = DefaultBufferBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create audit dir: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone; the log is root-only whatever was there before.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chmod audit dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	files, err := listFiles(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("list audit dir: %w", err)
	}
	l := &Log{
		dir:  dir,
		lock: lock,
		opts: opts,
		h:    newHasher(),
		buf:  make([]byte, 0, 4096),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	if len(files) == 0 {
		if err := l.createFile(1); err != nil {
			lock.Close()
			return nil, err
		}
		l.setPrev(ZeroHash)
	} else if err := l.recover(files); err != nil {
		lock.Close()
		return nil, err
	}
	l.rec.LastSeq = l.seq
	l.rec.LastHash = l.prevStr
	go l.flushLoop()
	return l, nil
}

// Recovered reports what Open found.
func (l *Log) Recovered() Recovered { return l.rec }

// Dir returns the log directory.
func (l *Log) Dir() string { return l.dir }

// Head returns the seq and hash of the last appended record.
func (l *Log) Head() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq, l.prevStr
}

func (l *Log) setPrev(h string) {
	copy(l.prev[:], h)
	l.prevStr = h
}

func (l *Log) createFile(index int) error {
	path := filepath.Join(l.dir, fileName(index))
	// O_EXCL: a file that already exists is either another writer's or a file we failed to see; never append to it
	// blindly.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create audit file: %w", err)
	}
	// The new name must be durable before records in it are, or a crash could lose a whole synced file.
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return err
	}
	l.f = f
	if l.w == nil {
		l.w = bufio.NewWriterSize(f, l.opts.BufferBytes)
	} else {
		l.w.Reset(f)
	}
	l.index = index
	l.size = 0
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open audit dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync audit dir: %w", err)
	}
	return nil
}

// recover opens the last file for appending, cuts a torn tail and loads the chain state from the last good record.
func (l *Log) recover(files []logFile) error {
	last := files[len(files)-1]
	f, err := os.OpenFile(last.path, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open audit file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod audit file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat audit file: %w", err)
	}
	size := fi.Size()
	good, err := tornTail(f, size)
	if err != nil {
		return fmt.Errorf("read %s: %w", last.path, err)
	}
	lr, err := lastRecord(f, last.path, good, true)
	if err != nil {
		return err
	}
	good = lr.end
	if good < size {
		if err := f.Truncate(good); err != nil {
			return fmt.Errorf("truncate torn tail of %s: %w", last.path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", last.path, err)
		}
		l.rec.TruncatedBytes = size - good
		l.rec.File = last.path
		l.rec.UncleanShutdown = true
	}
	if !lr.found && len(files) > 1 {
		// The last file is empty: a crash between creating it and writing to it. The chain goes on from the
		// previous file, which rotation synced completely, so it must end cleanly.
		prev := files[len(files)-2]
		lr, err = lastRecordOf(prev.path)
		if err != nil {
			return err
		}
	}
	if lr.found {
		l.seq = lr.seq
		l.setPrev(lr.hash)
		if lr.action != ActionDaemonStop {
			l.rec.UncleanShutdown = true
		}
	} else {
		l.setPrev(ZeroHash)
	}
	l.f = f
	l.w = bufio.NewWriterSize(f, l.opts.BufferBytes)
	l.index = last.index
	l.size = good
	ok = true
	return nil
}

type lastRec struct {
	found  bool
	seq    uint64
	hash   string
	action string
	end    int64 // offset just past the last good line
}

// lastRecord reads the last record among f's first end bytes, which end at a newline (or are empty). With
// dropGarbage, a last line that is not a record is skipped once, as a crash can leave a line of garbage (a block of
// NULs, say) before the torn tail.
func lastRecord(f *os.File, path string, end int64, dropGarbage bool) (lastRec, error) {
	lr := lastRec{end: end}
	for end > 0 {
		start, content, _, err := readLastLine(f, end)
		if err != nil {
			return lr, fmt.Errorf("read %s: %w", path, err)
		}
		ln, perr := parseLine(content)
		var r Record
		if perr == nil {
			perr = r.UnmarshalJSON(content)
		}
		if perr != nil {
			if dropGarbage {
				dropGarbage = false
				end = start
				lr.end = start
				continue
			}
			return lr, fmt.Errorf("%s: last record: %v: %w", path, perr, ErrCorrupt)
		}
		// A complete, well-formed line whose hash does not match is not a torn write but a modified record. Do not
		// chain onto it, and do not cut it away either: that is Verify's and a person's business.
		h := newHasher()
		if !bytes.Equal(h.compute(ln.prev, ln.body), ln.hash) {
			return lr, fmt.Errorf("%s: last record (seq %d) does not match its hash: %w", path, ln.seq, ErrCorrupt)
		}
		lr.found = true
		lr.seq = ln.seq
		lr.hash = string(ln.hash)
		lr.action = r.Action
		return lr, nil
	}
	return lr, nil
}

// lastRecordOf reads the last record of a file that must end cleanly.
func lastRecordOf(path string) (lastRec, error) {
	f, err := os.Open(path)
	if err != nil {
		return lastRec{}, fmt.Errorf("open audit file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return lastRec{}, fmt.Errorf("stat audit file: %w", err)
	}
	good, err := tornTail(f, fi.Size())
	if err != nil {
		return lastRec{}, fmt.Errorf("read %s: %w", path, err)
	}
	if good != fi.Size() {
		return lastRec{}, fmt.Errorf("%s: torn last line in a rotated file: %w", path, ErrCorrupt)
	}
	return lastRecord(f, path, good, false)
}

// Append assigns r its seq, prev_hash and hash (and its timestamp, if zero) and writes it. The record is durable
// within Options.SyncInterval, or when Sync returns.
func (l *Log) Append(r *Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return err
	}
	return l.appendLocked(r)
}

// AppendBatch appends rs in order under one lock. It stops at the first error; the records before it are appended.
func (l *Log) AppendBatch(rs []*Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.usableLocked(); err != nil {
		return err
	}
	for _, r := range rs {
		if err := l.appendLocked(r); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) usableLocked() error {
	if l.closed {
		return ErrClosed
	}
	return l.err
}

func (l *Log) appendLocked(r *Record) error {
	if r.Action == "" {
		return errors.New("append audit record: no action")
	}
	if r.Timestamp.IsZero() {
		r.Timestamp = time.Now().UTC()
	}
	r.Seq = l.seq + 1
	b, err := appendRecordBody(l.buf[:0], r, l.prevStr)
	if err != nil {
		r.Seq = 0
		return fmt.Errorf("encode audit record: %w", err)
	}
	sum := l.h.compute(l.prev[:], b)
	b = append(b, `,"hash":"`...)
	b = append(b, sum...)
	b = append(b, '"', '}', '\n')
	l.buf = b
	if l.size > 0 && l.size+int64(len(b)) > l.opts.MaxFileBytes {
		if err := l.rotateLocked(); err != nil {
			l.err = err
			return err
		}
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("write audit record: %w", err)
		return l.err
	}
	l.size += int64(len(b))
	l.unsynced = true
	l.seq = r.Seq
	h := string(sum)
	r.PrevHash = l.prevStr
	r.Hash = h
	copy(l.prev[:], sum)
	l.prevStr = h
	return nil
}

// rotateLocked makes the current file durable and starts the next one.
func (l *Log) rotateLocked() error {
	if err := l.w.Flush(); err != nil {
		return fmt.Errorf("write audit record: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync audit file: %w", err)
	}
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("close audit file: %w", err)
	}
	return l.createFile(l.index + 1)
}

// Sync flushes buffered records and fsyncs them.
func (l *Log) Sync() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if err := l.usableLocked(); err != nil {
		l.mu.Unlock()
		return err
	}
	if err := l.w.Flush(); err != nil {
		l.err = fmt.Errorf("write audit record: %w", err)
		l.mu.Unlock()
		return l.err
	}
	f, need := l.f, l.unsynced
	l.unsynced = false
	l.mu.Unlock()
	if !need {
		return nil
	}
	// fsync outside mu, so that appenders are not stalled behind the disk. If a rotation closes f meanwhile, it has
	// synced f first.
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		// After a failed fsync the kernel may have dropped the dirty pages; what is on disk is unknown.
		l.mu.Lock()
		l.err = fmt.Errorf("sync audit file: %w", err)
		l.mu.Unlock()
		return err
	}
	return nil
}

func (l *Log) flushLoop() {
	defer close(l.done)
	t := time.NewTicker(l.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			// An error is sticky and returned by the next Append.
			_ = l.Sync()
		}
	}
}

// Close flushes, fsyncs and closes the log. Appending daemon.stop first is the caller's job.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closing = true
	l.mu.Unlock()
	close(l.stop)
	<-l.done

	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.err
	if err == nil {
		if ferr := l.w.Flush(); ferr != nil {
			err = fmt.Errorf("write audit record: %w", ferr)
		} else if serr := l.f.Sync(); serr != nil {
			err = fmt.Errorf("sync audit file: %w", serr)
		}
	}
	l.closed = true
	if cerr := l.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close audit file: %w", cerr)
	}
	l.lock.Close()
	return err
}
