package daemon_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/daemontest"
	"github.com/deputyhq/deputy/sandbox/sandboxtest"
)

// readLog returns every record of the daemon's audit log (as root).
func readLog(t *testing.T, d *daemontest.Daemon, f audit.Filter) []*audit.Record {
	t.Helper()
	var recs []*audit.Record
	err := audit.Query(filepath.Join(d.State, "audit"), f, func(r *audit.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("query audit log: %v", err)
	}
	return recs
}

// waitExit waits until the exec's exec.exit record is on disk (the log is
// flushed at most every 100ms).
func waitExit(t *testing.T, d *daemontest.Daemon, f audit.Filter) []*audit.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := readLog(t, d, f)
		for _, r := range recs {
			if r.Action == audit.ActionExecExit {
				return recs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no exec.exit record for %+v after 5s", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// compileC builds a test program readable and executable by agents.
func buildC(t *testing.T, name, src string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "deputy-cprog-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	c := filepath.Join(dir, name+".c")
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-O1", "-pthread", "-o", bin, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// The number of syscall records of an exec equals the number of syscalls
// its processes made, as strace -f -c counts them, including from a second
// thread and a child that exits at once.
func TestAuditCountsEverySyscall(t *testing.T) {
	sandboxtest.RequireRoot(t)
	bin := buildC(t, "counted", `
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static void *worker(void *arg) { for (int i = 0; i < 1000; i++) syscall(SYS_getppid); return 0; }
int main(void) {
	pthread_t th;
	pthread_create(&th, 0, worker, 0);
	for (int i = 0; i < 2000; i++) syscall(SYS_getppid);
	pthread_join(th, 0);
	pid_t pid = fork();
	if (pid == 0) { syscall(SYS_getppid); _exit(0); }
	waitpid(pid, 0, 0);
	return 0;
}`)
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"a.yaml": fmt.Sprintf("name: agent-a\npeers: {uids: [%d]}\nrunAs: {uid: %d, gid: %d}\nfilesystem:\n  exec: [/usr/bin, /bin, %s]\n", peerA, runA, runA, filepath.Dir(bin)),
	}})
	r := d.Run(t, peerA, "", "exec", "--correlation-id", "count-1", "--", bin)
	if r.Code != 0 {
		t.Fatalf("counted program: %s", r)
	}
	recs := waitExit(t, d, audit.Filter{CorrelationID: "count-1"})
	got := map[string]int{}
	total := 0
	for _, rec := range recs {
		if rec.Action == audit.ActionSyscall {
			got[rec.Syscall]++
			total++
		}
	}

	// strace counts the same binary's syscalls, threads and children
	// included. Run it directly (not sandboxed): the program's own syscalls
	// do not depend on the sandbox.
	out, err := exec.Command("strace", "-f", "-c", "-U", "name,calls", "-o", "/dev/stdout", bin).Output()
	if err != nil {
		t.Fatalf("strace: %v", err)
	}
	want := map[string]int{}
	line := regexp.MustCompile(`^\s*(\w+)\s+(\d+)\s*$`)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if m := line.FindStringSubmatch(sc.Text()); m != nil && m[1] != "total" {
			n, _ := strconv.Atoi(m[2])
			want[m[1]] = n
		}
	}
	if got["getppid"] != 3001 || want["getppid"] != 3001 {
		t.Fatalf("getppid: audit %d, strace %d, want 3001 each", got["getppid"], want["getppid"])
	}
	// In the sandbox clone3 fails with ENOSYS (seccomp cannot read its
	// flags), and glibc falls back to clone: each clone3 strace counts
	// outside becomes one clone3 plus one clone inside.
	want["clone"] += want["clone3"]
	// Every syscall strace saw is in the log with the same count.
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s: audit recorded %d, strace counted %d", name, got[name], n)
		}
	}
	if total == 0 {
		t.Fatal("no syscall records")
	}
}

// A flood of cheap syscalls: the log holds all of them, or the exec is
// marked incomplete with the exact number lost.
func TestAuditFloodLosesNothingSilently(t *testing.T) {
	sandboxtest.RequireRoot(t)
	const n = 5_000_000
	bin := buildC(t, "flood", fmt.Sprintf(`
#include <sys/syscall.h>
#include <unistd.h>
int main(void) { for (long i = 0; i < %d; i++) syscall(SYS_getppid); return 0; }`, n))
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"a.yaml": fmt.Sprintf("name: agent-a\npeers: {uids: [%d]}\nrunAs: {uid: %d, gid: %d}\nfilesystem:\n  exec: [/usr/bin, /bin, %s]\nlimits: {timeout: 10m}\n", peerA, runA, runA, filepath.Dir(bin)),
	}})
	r := d.Run(t, peerA, "", "exec", "--correlation-id", "flood-1", "--", bin)
	if r.Code != 0 {
		t.Fatalf("flood: %s", r)
	}
	recs := waitExit(t, d, audit.Filter{CorrelationID: "flood-1", Action: audit.ActionExecExit})
	var ex struct {
		Events          uint64 `json:"events"`
		Lost            uint64 `json:"lost"`
		AuditIncomplete bool   `json:"audit_incomplete"`
	}
	if err := recs[len(recs)-1].DecodeDetails(&ex); err != nil {
		t.Fatal(err)
	}
	// Count by scanning the raw lines: decoding 5 million records as JSON
	// would take minutes and prove nothing more (verify checks the chain).
	count := 0
	files, _ := filepath.Glob(filepath.Join(d.State, "audit", "audit-*.log"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if bytes.Contains(line, []byte(`"correlation_id":"flood-1"`)) && bytes.Contains(line, []byte(`"syscall":"getppid"`)) {
				count++
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("flood: %d getppid records, exec.exit events=%d lost=%d", count, ex.Events, ex.Lost)
	if uint64(count)+ex.Lost != n {
		t.Fatalf("getppid records %d + lost %d != %d syscalls made", count, ex.Lost, n)
	}
	if ex.Lost > 0 && !ex.AuditIncomplete {
		t.Fatalf("%d events lost but the exec is not marked audit_incomplete", ex.Lost)
	}
}

// The hash chain survives kill -9 of the daemon in the middle of a flood:
// verify reports at most a truncated tail, the chain goes on after the
// restart, the restart is recorded, and the interrupted exec's processes
// are gone.
func TestAuditSurvivesDaemonKill(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"a.yaml": agentProfile("agent-a", peerA, runA, "limits: {timeout: 5m}\n"),
	}})
	cmd := d.Command(t.Context(), peerA, "exec", "--", "sh", "-c", "while :; do cat /etc/hostname >/dev/null; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	time.Sleep(1500 * time.Millisecond)
	d.Kill(t)
	cmd.Wait()
	if left := daemontest.WaitNoLiveProcesses(runA, 3*time.Second); len(left) > 0 {
		t.Fatalf("the interrupted exec's processes outlived the daemon: %v", left)
	}
	dir := filepath.Join(d.State, "audit")
	rep, err := audit.Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("after kill -9 verify is broken: %v", rep.FirstBad)
	}
	d.Restart(t)
	if r := d.Exec(t, peerA, "", "true"); r.Code != 0 {
		t.Fatalf("after restart: %s", r)
	}
	d.Stop(t)
	rep, err = audit.Verify(dir)
	if err != nil || !rep.OK || rep.TruncatedTail {
		t.Fatalf("after restart and clean stop: ok=%v truncated=%v problem=%v err=%v", rep.OK, rep.TruncatedTail, rep.FirstBad, err)
	}
	restarts := 0
	audit.Query(dir, audit.Filter{Action: audit.ActionDaemonRestart}, func(*audit.Record) error { restarts++; return nil })
	if restarts != 1 {
		t.Fatalf("want one daemon.restart record, got %d", restarts)
	}
}

// The auditor's view of one exec: every program it ran, the files it
// touched with absolute paths, what failed and why, all attributed.
func TestAuditExecScenario(t *testing.T) {
	sandboxtest.RequireRoot(t)
	work, err := os.MkdirTemp("/var/tmp", "deputy-audit-work-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chown(work, runA, runA); err != nil {
		t.Fatal(err)
	}
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"a.yaml": agentProfile("agent-a", peerA, runA, "  write: ["+work+"]\nenv:\n  pass: [WORK]\n"),
	}})
	script := `cat /etc/hostname >/dev/null; ls /nonexistent; cd $WORK && echo x > f && find . -name f -delete`
	r := d.Run(t, peerA, "", "exec", "--correlation-id", "scenario-1", "--env", "WORK="+work, "--", "sh", "-c", script)
	if r.Code != 0 {
		t.Fatalf("exec: %s", r)
	}
	waitExit(t, d, audit.Filter{CorrelationID: "scenario-1"})
	q := d.Run(t, 0, "", "audit", "query", "--correlation-id", "scenario-1", "--json")
	if q.Code != 0 {
		t.Fatalf("audit query: %s", q)
	}
	var execs []string
	var hostname, nonexistent, unlinked bool
	for _, line := range strings.Split(strings.TrimSpace(q.Stdout), "\n") {
		var rec audit.Record
		if err := rec.UnmarshalJSON([]byte(line)); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		if rec.PrincipalType != audit.PrincipalAgent || rec.PrincipalID != "agent-a" || rec.UID != runA ||
			rec.ExecID == "" || rec.CorrelationID != "scenario-1" {
			t.Fatalf("record without full attribution: %s", line)
		}
		if rec.Action != audit.ActionSyscall {
			continue
		}
		switch {
		case rec.Syscall == "execve" && rec.Result == audit.ResultSuccess:
			execs = append(execs, filepath.Base(rec.Resource))
		case rec.Syscall == "openat" && rec.Resource == "/etc/hostname" && rec.Result == audit.ResultSuccess:
			hostname = true
		case rec.Resource == "/nonexistent" && rec.Errno == "ENOENT" && rec.Result == audit.ResultError:
			nonexistent = true
		case rec.Syscall == "unlinkat" && rec.Resource == filepath.Join(work, "f") && rec.Result == audit.ResultSuccess:
			unlinked = true
		}
	}
	for _, want := range []string{"sh", "cat", "ls", "find"} {
		if !slices.Contains(execs, want) {
			t.Errorf("no successful execve of %s (got %v)", want, execs)
		}
	}
	if !hostname || !nonexistent || !unlinked {
		t.Errorf("openat /etc/hostname: %v; ENOENT on /nonexistent: %v; unlinkat %s/f: %v", hostname, nonexistent, work, unlinked)
	}
}
