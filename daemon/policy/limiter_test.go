package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLimiterSixthDenied(t *testing.T) {
	p := loadExample(t)
	d := Evaluate(p, "/usr/bin/systemctl", []string{"restart", "app.service"}, "why", monday)
	if d.RateLimit == nil {
		t.Fatal("restart has no rate limit")
	}
	limit, per := d.RateLimit.Execs, d.RateLimit.Per.Std()
	path := filepath.Join(t.TempDir(), "ratelimit.json")
	l, err := LoadLimiter(path)
	if err != nil {
		t.Fatal(err)
	}
	key := RuleKey(p.Name, d.Rule)
	start := monday
	for i := 0; i < 5; i++ {
		if ok, _ := l.Allow(key, limit, per, start.Add(time.Duration(i)*time.Minute)); !ok {
			t.Fatalf("exec %d denied", i+1)
		}
	}
	now := start.Add(30 * time.Minute)
	ok, retry := l.Allow(key, limit, per, now)
	if ok || retry != 30*time.Minute {
		t.Fatalf("sixth: ok=%v retryAfter=%s, want denied, 30m", ok, retry)
	}
	// Another key (the agent's own, another rule) is independent.
	if ok, _ := l.Allow(RuleKey(p.Name, "rotate"), limit, per, now); !ok {
		t.Error("other rule charged")
	}

	// A restarted daemon reads the same state and gives the same answer.
	l2, err := LoadLimiter(path)
	if err != nil {
		t.Fatal(err)
	}
	if ok, retry2 := l2.Allow(key, limit, per, now); ok || retry2 != retry {
		t.Errorf("after reload: ok=%v retryAfter=%s, want denied, %s", ok, retry2, retry)
	}
	// The window slides: retryAfter is exact, so at one hour after the
	// first exec one more fits, and then the second one's hour must pass.
	if ok, _ := l2.Allow(key, limit, per, now.Add(retry-time.Nanosecond)); ok {
		t.Error("allowed before retryAfter")
	}
	if ok, _ := l2.Allow(key, limit, per, now.Add(retry)); !ok {
		t.Error("denied at retryAfter")
	}
	if ok, retry := l2.Allow(key, limit, per, start.Add(time.Hour+time.Second)); ok || retry != time.Minute-time.Second {
		t.Errorf("next: ok=%v retryAfter=%s", ok, retry)
	}
}

func TestLimiterFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ratelimit.json")
	l, err := LoadLimiter(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 8, 10, 0, 0, 0, time.UTC)
	l.Allow("old", 1, time.Minute, now)
	l.Allow("a/r", 3, time.Hour, now.Add(2*time.Minute))
	// The written file is versioned JSON; "old" has left its window and
	// is dropped, so removed agents and rules do not linger.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f limiterFile
	if err := json.Unmarshal(data, &f); err != nil || f.Version != 1 || len(f.Windows) != 1 || len(f.Windows["a/r"].Hits) != 1 {
		t.Errorf("file %s: %v", data, err)
	}
	// No temporary file is left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries", len(entries))
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	// A corrupt or future file is an error, not a silent reset.
	for _, bad := range []string{"{", `{"version": 2, "windows": {}}`} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadLimiter(path); err == nil {
			t.Errorf("loaded %q", bad)
		}
	}
}

func TestLimiterAdmitAllOrNothing(t *testing.T) {
	l, err := LoadLimiter(filepath.Join(t.TempDir(), "rl.json"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 8, 10, 0, 0, 0, time.UTC)
	agent := Limit{Key: AgentKey("a"), Execs: 10, Per: time.Hour}
	rule := Limit{Key: RuleKey("a", "r"), Execs: 1, Per: time.Hour}
	if ok, _, err := l.Admit(now, agent, rule); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The rule refuses: the agent's allowance must not be used up.
	for i := 0; i < 5; i++ {
		if ok, retry, err := l.Admit(now.Add(time.Minute), agent, rule); ok || err != nil || retry != 59*time.Minute {
			t.Fatalf("ok=%v retry=%s err=%v", ok, retry, err)
		}
	}
	for i := 0; i < 9; i++ {
		if ok, _, _ := l.Admit(now.Add(time.Minute), agent); !ok {
			t.Fatalf("agent exec %d refused: the refused rule execs were charged", i+2)
		}
	}
	if ok, _, _ := l.Admit(now.Add(time.Minute), agent); ok {
		t.Error("eleventh agent exec allowed")
	}
}

// TestLimiterPersistFailure checks that a charge that cannot be written is
// not granted, and not kept in memory either.
func TestLimiterPersistFailure(t *testing.T) {
	dir := t.TempDir()
	l, err := LoadLimiter(filepath.Join(dir, "gone", "rl.json"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 8, 10, 0, 0, 0, time.UTC)
	if ok, _ := l.Allow("k", 1, time.Hour, now); ok {
		t.Fatal("allowed without persisting")
	}
	if _, _, err := l.Admit(now, Limit{"k", 1, time.Hour}); err == nil || !strings.Contains(err.Error(), "save rate limits") {
		t.Errorf("Admit error %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "gone"), 0o700); err != nil {
		t.Fatal(err)
	}
	if ok, _ := l.Allow("k", 1, time.Hour, now); !ok {
		t.Error("failed charges were kept")
	}
}

func TestLimiterAcquire(t *testing.T) {
	l, err := LoadLimiter(filepath.Join(t.TempDir(), "rl.json"))
	if err != nil {
		t.Fatal(err)
	}
	r1, ok1 := l.Acquire("a", 2)
	r2, ok2 := l.Acquire("a", 2)
	if !ok1 || !ok2 {
		t.Fatal("first two refused")
	}
	if r, ok := l.Acquire("a", 2); ok || r != nil {
		t.Fatal("third granted")
	}
	if _, ok := l.Acquire("b", 2); !ok {
		t.Error("agents share slots")
	}
	r1()
	r1() // idempotent: must not free r2's slot
	if l.Running("a") != 1 {
		t.Errorf("running %d, want 1", l.Running("a"))
	}
	r3, ok := l.Acquire("a", 2)
	if !ok {
		t.Fatal("slot not released")
	}
	if _, ok := l.Acquire("a", 2); ok {
		t.Error("double release freed two slots")
	}
	r2()
	r3()
	if l.Running("a") != 0 {
		t.Errorf("running %d after all released", l.Running("a"))
	}
	// No limit.
	for i := 0; i < 100; i++ {
		if _, ok := l.Acquire("c", 0); !ok {
			t.Fatal("max 0 refused")
		}
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l, err := LoadLimiter(filepath.Join(t.TempDir(), "rl.json"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 8, 10, 0, 0, 0, time.UTC)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		granted int
	)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Allow("k", 5, time.Hour, now); ok {
				mu.Lock()
				granted++
				mu.Unlock()
			}
			if rel, ok := l.Acquire("k", 3); ok {
				rel()
			}
		}()
	}
	wg.Wait()
	if granted != 5 {
		t.Errorf("granted %d, want 5", granted)
	}
}
