package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// AgentKey is the Limiter key of an agent's own rate limit.
func AgentKey(agent string) string { return agent }

// RuleKey is the Limiter key of one rule's rate limit for one agent. Agent
// names and rule ids never contain '/', so keys cannot collide.
func RuleKey(agent, rule string) string { return agent + "/" + rule }

// Limit is one sliding window to charge: at most Execs per Per under Key.
type Limit struct {
	Key   string
	Execs int
	Per   time.Duration
}

// Limiter keeps sliding-window rate limits and per-agent concurrency
// counts. Windows are persisted to one JSON file, rewritten atomically on
// every change, so that restarting the daemon does not hand an agent a
// fresh allowance. Concurrency counts are in memory only: a restart ends
// every running exec anyway. Safe for concurrent use.
type Limiter struct {
	path string

	mu      sync.Mutex
	windows map[string]*window
	running map[string]int
}

// window is the recent exec times under one key, oldest first. Per is
// stored so that a stale key can be dropped without knowing its profile.
type window struct {
	Per  time.Duration `json:"per"`
	Hits []time.Time   `json:"hits"`
}

// limiterFile is the on-disk form.
type limiterFile struct {
	Version int                `json:"version"`
	Windows map[string]*window `json:"windows"`
}

const limiterVersion = 1

// LoadLimiter reads the limiter state at path, typically a file in the
// daemon's state directory; a missing file is an empty state. The
// directory must exist: the limiter writes a temporary file beside path.
func LoadLimiter(path string) (*Limiter, error) {
	l := &Limiter{path: path, windows: map[string]*window{}, running: map[string]int{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load rate limits: %w", err)
	}
	var f limiterFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("load rate limits %s: %w", path, err)
	}
	if f.Version != limiterVersion {
		return nil, fmt.Errorf("load rate limits %s: version %d, want %d", path, f.Version, limiterVersion)
	}
	for k, w := range f.Windows {
		if w != nil {
			sort.Slice(w.Hits, func(i, j int) bool { return w.Hits[i].Before(w.Hits[j]) })
			l.windows[k] = w
		}
	}
	return l, nil
}

// Allow charges one exec to key if fewer than limit were charged in the
// window (now-per, now]; otherwise it returns false and how long until the
// oldest charge leaves the window. A charge that cannot be persisted is
// not granted: failing open would let a daemon restart reset the limit.
// Admit does the same for several limits at once and returns the error.
func (l *Limiter) Allow(key string, limit int, per time.Duration, now time.Time) (ok bool, retryAfter time.Duration) {
	ok, retryAfter, err := l.Admit(now, Limit{Key: key, Execs: limit, Per: per})
	return ok && err == nil, retryAfter
}

// Admit charges one exec to every limit, or to none: an exec refused by
// its rule's limit must not use up the agent's allowance. On refusal,
// retryAfter is the longest wait among the limits that refused. err is a
// failure to persist, in which case nothing is charged.
func (l *Limiter) Admit(now time.Time, limits ...Limit) (ok bool, retryAfter time.Duration, err error) {
	if len(limits) == 0 {
		return true, 0, nil // nothing to charge, nothing to write
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ok = true
	for _, lim := range limits {
		w := l.windows[lim.Key]
		if w == nil {
			continue
		}
		w.Per = lim.Per
		w.prune(now)
		if len(w.Hits) >= lim.Execs {
			ok = false
			// The oldest hit that must leave before one more fits.
			if wait := w.Hits[len(w.Hits)-lim.Execs].Add(lim.Per).Sub(now); wait > retryAfter {
				retryAfter = wait
			}
		}
	}
	if !ok {
		return false, retryAfter, nil
	}
	saved := make(map[string]*window, len(limits))
	for _, lim := range limits {
		w := l.windows[lim.Key]
		if w == nil {
			w = &window{Per: lim.Per}
			l.windows[lim.Key] = w
		}
		saved[lim.Key] = &window{Per: w.Per, Hits: w.Hits}
		w.Hits = append(w.Hits[:len(w.Hits):len(w.Hits)], now)
	}
	if err := l.save(now); err != nil {
		// Roll back: what is in memory must be what is on disk.
		for k, w := range saved {
			if len(w.Hits) == 0 {
				delete(l.windows, k)
			} else {
				l.windows[k] = w
			}
		}
		return false, 0, err
	}
	return true, 0, nil
}

// prune drops hits that left the window (now-Per, now].
func (w *window) prune(now time.Time) {
	cut := now.Add(-w.Per)
	i := 0
	for i < len(w.Hits) && !w.Hits[i].After(cut) {
		i++
	}
	w.Hits = w.Hits[i:]
}

// save writes the state: temporary file, fsync, rename, fsync of the
// directory, so that a crash leaves either the old or the new file, never
// a torn one. Windows with no hit left are dropped first, which also
// forgets agents and rules that no longer exist.
func (l *Limiter) save(now time.Time) error {
	for k, w := range l.windows {
		w.prune(now)
		if len(w.Hits) == 0 {
			delete(l.windows, k)
		}
	}
	data, err := json.Marshal(limiterFile{Version: limiterVersion, Windows: l.windows})
	if err != nil {
		return fmt.Errorf("save rate limits: %w", err)
	}
	dir := filepath.Dir(l.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(l.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("save rate limits: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("save rate limits: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save rate limits: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save rate limits: %w", err)
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return fmt.Errorf("save rate limits: %w", err)
	}
	committed = true
	// The rename is durable only once the directory entry is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save rate limits: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save rate limits: sync %s: %w", dir, err)
	}
	return nil
}

// Acquire takes one of max concurrent exec slots of agent; max <= 0 means
// no per-agent limit. release gives the slot back and may be called more
// than once. When every slot is taken, ok is false and release is nil.
func (l *Limiter) Acquire(agent string, max int) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if max > 0 && l.running[agent] >= max {
		return nil, false
	}
	l.running[agent]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.running[agent]--; l.running[agent] <= 0 {
				delete(l.running, agent)
			}
		})
	}, true
}

// Running returns how many execs of agent hold a slot.
func (l *Limiter) Running(agent string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running[agent]
}
