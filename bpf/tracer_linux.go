package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// ErrNotSupported reports that this kernel or host cannot run the tracer
// (no BTF, no tp_btf, no ring buffer, BPF locked down, ...).
var ErrNotSupported = errors.New("syscall tracing not supported")

// Options configures Load. The zero value is usable.
type Options struct {
	// RingSize is the ring buffer size in bytes: a power of two and a
	// multiple of the page size. Default 4 MiB (about 32k small records):
	// the daemon freezes traced execs before it fills, and its pages count
	// twice in the daemon's RSS (the kernel maps the data area twice).
	RingSize int
	// WakeupBytes is how much pending data makes the kernel wake the
	// reader. Below it records are submitted without a wakeup and picked
	// up by the reader's timer. Default RingSize/64.
	WakeupBytes int
	// FlushInterval bounds how long a record below WakeupBytes waits for
	// the reader. Default 10ms.
	FlushInterval time.Duration
}

func (o *Options) setDefaults() error {
	if o.RingSize == 0 {
		o.RingSize = 4 << 20
	}
	page := os.Getpagesize()
	if o.RingSize < page || o.RingSize&(o.RingSize-1) != 0 {
		return fmt.Errorf("ring size %d: not a power of two of at least %d", o.RingSize, page)
	}
	if o.WakeupBytes == 0 {
		o.WakeupBytes = o.RingSize / 64
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = 10 * time.Millisecond
	}
	return nil
}

// Tracer is the loaded and attached tracer. Track cgroups to record them;
// one goroutine drains the records with Read.
type Tracer struct {
	objs   traceObjects
	links  []link.Link
	rd     *ringbuf.Reader
	opts   Options
	ncpu   int
	boot   time.Time // wall-clock time of CLOCK_BOOTTIME zero, at Load
	closed sync.Once
}

// Stats are tracer-wide diagnostic counters (events.h enum dpt_stat).
type Stats struct {
	InflightFull uint64 // sys_enter copies that could not be stored
	Late         uint64 // data-carrying records whose data was read at sys_exit
	Lost         uint64 // records dropped on a full ring buffer, all cgroups
}

// Load loads the BPF programs, attaches them and opens the ring buffer. It
// needs CAP_BPF and CAP_PERFMON (root). Nothing is recorded until Track.
func Load(opts Options) (*Tracer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it. Not
	// through cilium/ebpf's rlimit package: its init() probes the kernel by
	// creating a BPF map in every process that links it, and deputyd's init
	// helper is that same binary, started for every exec.
	// A root without CAP_SYS_RESOURCE (some container runtimes) cannot
	// raise it, which is fine from 5.11 on: BPF memory is charged to the
	// memory cgroup instead. On an older kernel the load below then fails
	// with its own error.
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	_ = unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf)
	spec, err := loadTrace()
	if err != nil {
		return nil, fmt.Errorf("load bpf spec: %w", err)
	}
	spec.Maps[traceMapDptEvents].MaxEntries = uint32(opts.RingSize)
	if err := spec.Variables["wakeup_bytes"].Set(uint64(opts.WakeupBytes)); err != nil {
		return nil, fmt.Errorf("set wakeup_bytes: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("count cpus: %w", err)
	}

	boot, err := bootTime()
	if err != nil {
		return nil, err
	}
	t := &Tracer{opts: opts, ncpu: ncpu, boot: boot}
	if err := spec.LoadAndAssign(&t.objs, nil); err != nil {
		return nil, fmt.Errorf("load bpf objects: %w", errors.Join(ErrNotSupported, err))
	}
	// The class table must be complete before the programs see a syscall,
	// or path syscalls of an already tracked cgroup would lose their data.
	if err := t.fillClasses(); err != nil {
		t.objs.Close()
		return nil, err
	}
	// sys_exit before sys_enter: a syscall whose enter copy exists is then
	// always completed; the reverse order could leave entries for exits
	// that were never seen (harmless, but they would wait for LRU eviction).
	progs := []*ebpf.Program{
		t.objs.DptSysExit, t.objs.DptSysEnter,
		t.objs.DptSchedFork, t.objs.DptSchedExec, t.objs.DptSchedExit,
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p, AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("attach %s: %w", p, errors.Join(ErrNotSupported, err))
		}
		t.links = append(t.links, l)
	}
	t.rd, err = ringbuf.NewReader(t.objs.DptEvents)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("open ring buffer: %w", err)
	}
	return t, nil
}

func (t *Tracer) fillClasses() error {
	for i, c := range classTable() {
		if c == (class{}) {
			continue
		}
		v := traceDptClass{Kind: c.kind, Flags: c.flags, Arg: c.args}
		if err := t.objs.DptClasses.Update(uint32(i), &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("fill syscall classes: %w", err)
		}
	}
	return nil
}

// Track starts recording the processes in the cgroup2 group cgroupID (the
// inode number of its directory). Call it before the first process enters
// the group. cookie is copied into every record of the group.
func (t *Tracer) Track(cgroupID, cookie uint64) error {
	// The lost counter first, so that a drop right after tracking starts
	// is counted in the entry that Untrack reads.
	zero := make([]uint64, t.ncpu)
	if err := t.objs.DptLost.Update(cgroupID, zero, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("track cgroup %d: lost counter: %w", cgroupID, err)
	}
	if err := t.objs.DptTracked.Update(cgroupID, cookie, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("track cgroup %d: %w", cgroupID, err)
	}
	return nil
}

// Untrack stops recording cgroupID and returns how many of its records were
// dropped on a full ring buffer. Call it once the group is empty: a program
// that is running when Untrack deletes the entry may still count a loss,
// which is then not reported.
func (t *Tracer) Untrack(cgroupID uint64) (lost uint64, err error) {
	if err := t.objs.DptTracked.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, fmt.Errorf("untrack cgroup %d: %w", cgroupID, err)
	}
	lost, err = t.lost(cgroupID)
	if err != nil {
		return 0, fmt.Errorf("untrack cgroup %d: %w", cgroupID, err)
	}
	if err := t.objs.DptLost.Delete(cgroupID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return lost, fmt.Errorf("untrack cgroup %d: lost counter: %w", cgroupID, err)
	}
	return lost, nil
}

// Lost returns how many records of cgroupID were dropped so far.
func (t *Tracer) Lost(cgroupID uint64) uint64 {
	n, _ := t.lost(cgroupID)
	return n
}

func (t *Tracer) lost(cgroupID uint64) (uint64, error) {
	var per []uint64
	if err := t.objs.DptLost.Lookup(cgroupID, &per); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("read lost counter: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// Stats returns the tracer-wide counters.
func (t *Tracer) Stats() (Stats, error) {
	var s Stats
	for i, dst := range []*uint64{&s.InflightFull, &s.Late, &s.Lost} {
		var per []uint64
		if err := t.objs.DptStats.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("read stats: %w", err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return s, nil
}

// AvailableBytes returns how many bytes are waiting in the ring buffer. The
// daemon compares it with RingSize to apply back-pressure (freezing a
// cgroup) before records are lost.
func (t *Tracer) AvailableBytes() int { return t.rd.AvailableBytes() }

// RingSize returns the ring buffer size in bytes.
func (t *Tracer) RingSize() int { return t.rd.BufferSize() }

// Read calls fn for each record until Close is called (then it returns nil)
// or fn returns an error (which Read returns). The Event and everything it
// points to are reused: fn must copy what it keeps. Only one goroutine may
// call Read.
func (t *Tracer) Read(fn func(ev *Event) error) error {
	// Preallocating the largest record size keeps ReadInto from
	// reallocating when a big record follows small ones.
	rec := ringbuf.Record{RawSample: make([]byte, maxRecord)}
	var ev Event
	t.rd.SetDeadline(time.Now().Add(t.opts.FlushInterval))
	for {
		err := t.rd.ReadInto(&rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Records submitted without a wakeup are read above
			// before the deadline error is returned; poll again.
			t.rd.SetDeadline(time.Now().Add(t.opts.FlushInterval))
			continue
		case errors.Is(err, ringbuf.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if err := Decode(rec.RawSample, &ev); err != nil {
			return err
		}
		if err := fn(&ev); err != nil {
			return err
		}
	}
}

// Close detaches the programs, ends Read and frees the maps. Records still in
// the ring buffer are discarded.
func (t *Tracer) Close() error {
	var errs []error
	t.closed.Do(func() {
		// Detach first so that nothing is produced after the reader
		// is gone; closing the reader ends a running Read.
		for _, l := range t.links {
			errs = append(errs, l.Close())
		}
		if t.rd != nil {
			errs = append(errs, t.rd.Close())
		}
		errs = append(errs, t.objs.Close())
	})
	return errors.Join(errs...)
}

// Time converts a record timestamp (Header.Ts, CLOCK_BOOTTIME) to wall-clock
// time, using the offset between the clocks at Load.
func (t *Tracer) Time(ts uint64) time.Time { return t.boot.Add(time.Duration(ts)) }

func bootTime() (time.Time, error) {
	var ts unix.Timespec
	now := time.Now()
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}, os.NewSyscallError("clock_gettime", err)
	}
	return now.Add(-time.Duration(ts.Nano())), nil
}

// CgroupID returns the id of the cgroup2 group at dir (the inode number of
// its directory), as Track wants it.
func CgroupID(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	return st.Ino, nil
}

// Probe reports whether the tracer can run here, by loading and attaching it
// with a small ring buffer. The error wraps ErrNotSupported for a missing
// kernel feature and os.ErrPermission when not privileged.
func Probe() error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("%w: no kernel BTF (CONFIG_DEBUG_INFO_BTF): %w", ErrNotSupported, err)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("load tracer: needs root (CAP_BPF and CAP_PERFMON): %w", os.ErrPermission)
	}
	t, err := Load(Options{RingSize: 1 << 16})
	if err != nil {
		return err
	}
	return t.Close()
}
