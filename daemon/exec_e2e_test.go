package daemon_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deputyhq/deputy/daemon/daemontest"
	"github.com/deputyhq/deputy/sandbox/sandboxtest"
)

// Peer and runAs uids of the agents these tests use. Uncommon numbers, so a
// test never collides with a real account.
const (
	peerA, runA = 47001, 47501
	peerB, runB = 47002, 47502
)

func agentProfile(name string, peer, run int, extra string) string {
	return fmt.Sprintf(`name: %s
peers:
  uids: [%d]
runAs:
  uid: %d
  gid: %d
filesystem:
  exec: [/usr/bin, /bin, /usr/sbin, /sbin]
%s`, name, peer, run, run, extra)
}

func twoAgents(t *testing.T) *daemontest.Daemon {
	return daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"a.yaml": agentProfile("agent-a", peerA, runA, ""),
		"b.yaml": agentProfile("agent-b", peerB, runB, ""),
	}})
}

func TestExecRunsAsAgent(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	if r := d.Exec(t, peerA, "", "id", "-u"); r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(runA) {
		t.Fatalf("id -u: want %d, got %s", runA, r)
	}
	if r := d.Exec(t, peerA, "", "id", "-G"); strings.TrimSpace(r.Stdout) != strconv.Itoa(runA) {
		t.Fatalf("supplementary groups not cleared: %s", r)
	}
	r := d.Exec(t, peerA, "", "sh", "-c", "echo out; echo err >&2; exit 7")
	if r.Code != 7 || r.Stdout != "out\n" || r.Stderr != "err\n" {
		t.Fatalf("want exit 7, out/err on their own streams; got %s", r)
	}
	if r := d.Exec(t, peerA, "hi\n", "cat"); r.Code != 0 || r.Stdout != "hi\n" {
		t.Fatalf("stdin: want hi, got %s", r)
	}
	r = d.Exec(t, peerA, "", "sh", "-c", "echo $DEPUTY_AGENT $DEPUTY_CORRELATION_ID; env | grep -c ^SUDO || true")
	if !strings.HasPrefix(r.Stdout, "agent-a c-") {
		t.Fatalf("DEPUTY_* environment missing: %s", r)
	}
	r = d.Run(t, peerA, "", "exec", "--correlation-id", "task-42", "--", "sh", "-c", "echo $DEPUTY_CORRELATION_ID")
	if strings.TrimSpace(r.Stdout) != "task-42" {
		t.Fatalf("correlation id not passed: %s", r)
	}
	r = d.Exec(t, peerA, "", "sh", "-c", "grep NoNewPrivs /proc/self/status")
	if !strings.Contains(r.Stdout, "1") {
		t.Fatalf("no_new_privs not set: %s", r)
	}
}

func TestExecDeniesUnknownPeerAndRoot(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	r := d.Exec(t, 47999, "", "id")
	if r.Code != 126 || !strings.Contains(r.Stderr, "uid 47999") {
		t.Fatalf("unknown peer: want 126 naming uid 47999, got %s", r)
	}
	r = d.Exec(t, 0, "", "id")
	if r.Code != 126 || !strings.Contains(r.Stderr, "uid 0") {
		t.Fatalf("root: want 126 naming uid 0, got %s", r)
	}
}

func TestExecRefusesBadRequests(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not found", []string{"exec", "--", "no-such-command-xyz"}, 127, "not found"},
		{"timeout over limit", []string{"exec", "--timeout", "1h", "--", "true"}, 125, "exceeds"},
		{"env not passed", []string{"exec", "--env", "LD_PRELOAD=/x.so", "--", "true"}, 125, "env.pass"},
		{"cwd under proc", []string{"exec", "--cwd", "/proc/1", "--", "true"}, 125, "/proc"},
		{"relative cwd", []string{"exec", "--cwd", "tmp", "--", "true"}, 125, "absolute"},
		{"not executable", []string{"exec", "--", "/etc/passwd"}, 126, "/etc/passwd"},
		{"bad correlation id", []string{"exec", "--correlation-id", "a b", "--", "true"}, 125, "correlation"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := d.Run(t, peerA, "", c.args...)
			if r.Code != c.code || !strings.Contains(r.Stderr, c.want) {
				t.Fatalf("want exit %d mentioning %q, got %s", c.code, c.want, r)
			}
		})
	}
	// The daemon keeps serving after all of that.
	if r := d.Exec(t, peerA, "", "true"); r.Code != 0 {
		t.Fatalf("daemon stopped serving: %s", r)
	}
}

func TestExecTimeoutKillsProcessTree(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	r := d.Run(t, peerA, "", "exec", "--timeout", "1s", "--", "sh", "-c", "sleep 30 & sleep 30")
	if r.Code != 137 || !strings.Contains(r.Stderr, "timed out") {
		t.Fatalf("want 137 and a timeout note, got %s", r)
	}
	if r.Elapsed > 3*time.Second {
		t.Fatalf("took %s, want under 3s", r.Elapsed)
	}
	if left := daemontest.WaitNoProcesses(runA, 2*time.Second); len(left) > 0 {
		t.Fatalf("processes of uid %d left after timeout: %v", runA, left)
	}
}

func TestClientKilledKillsProcessTree(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	cmd := startRunning(t, d, 3, "sh", "-c", "sleep 60 & sleep 60") // sh and two sleeps
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if left := daemontest.WaitNoProcesses(runA, 3*time.Second); len(left) > 0 {
		t.Fatalf("processes of uid %d outlived their killed client: %v", runA, left)
	}
}

func TestSignalForwarding(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	cmd := startRunning(t, d, 1, "sleep", "60")
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Fatalf("SIGINT: want exit 130, got %d (%v)", code, err)
	}
}

func TestConcurrentExecsFromTwoAgents(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		peer, run := uint32(peerA), runA
		if i%2 == 1 {
			peer, run = peerB, runB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := fmt.Sprintf("token-%d", i)
			r := d.Exec(t, peer, "", "sh", "-c", "echo "+token+" $(id -u)")
			want := fmt.Sprintf("%s %d\n", token, run)
			if r.Code != 0 || r.Stdout != want {
				errs <- fmt.Errorf("exec %d: want %q, got %s", i, want, r)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestInvalidProfileRefusesStartAndLint(t *testing.T) {
	deputyd, deputy := daemontest.Binaries(t)
	cases := map[string]map[string]string{
		"unknown field": {"a.yaml": agentProfile("agent-a", peerA, runA, "colour: blue\n")},
		"shared runAs": {
			"a.yaml": agentProfile("agent-a", peerA, runA, ""),
			"b.yaml": agentProfile("agent-b", peerB, runA, ""),
		},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for f, body := range files {
				p := filepath.Join(dir, f)
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
			}
			out, err := exec.Command(deputy, append([]string{"profile", "lint"}, paths...)...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), dir) || !hasFileLine(string(out)) {
				t.Fatalf("lint: want failure with file:line, got %v\n%s", err, out)
			}
			if os.Geteuid() != 0 {
				return
			}
			cmd := exec.Command(deputyd, "--profiles", dir, "--state", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "run", "d.sock"))
			out, err = cmd.CombinedOutput()
			if err == nil || !hasFileLine(string(out)) {
				t.Fatalf("deputyd: want refusal with file:line, got %v\n%s", err, out)
			}
		})
	}
}

// hasFileLine reports whether out has a "something.yaml:N: " reference.
func hasFileLine(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, ".yaml:")
		if i < 0 {
			continue
		}
		rest := line[i+len(".yaml:"):]
		j := strings.IndexByte(rest, ':')
		if j > 0 {
			if _, err := strconv.Atoi(rest[:j]); err == nil {
				return true
			}
		}
	}
	return false
}

func TestReloadKeepsOldSetWhenInvalid(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	d.WriteProfile(t, "b.yaml", agentProfile("agent-b", peerB, runB, "bogus: 1\n"))
	d.Signal(t, syscall.SIGHUP)
	waitLog(t, d, "profile reload rejected")
	if r := d.Exec(t, peerB, "", "id", "-u"); r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(runB) {
		t.Fatalf("old profile not in force after a rejected reload: %s", r)
	}
	// A valid change takes effect: agent-b now runs as another uid.
	d.WriteProfile(t, "b.yaml", agentProfile("agent-b", peerB, runB+1, ""))
	d.Signal(t, syscall.SIGHUP)
	waitLog(t, d, "profiles reloaded")
	if r := d.Exec(t, peerB, "", "id", "-u"); strings.TrimSpace(r.Stdout) != strconv.Itoa(runB+1) {
		t.Fatalf("valid reload not in force: %s", r)
	}
}

func waitLog(t *testing.T, d *daemontest.Daemon, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(d.Log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("daemon log lacks %q:\n%s", want, d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShutdownRemovesSocket(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := twoAgents(t)
	cmd := startRunning(t, d, 1, "sleep", "60")
	d.Stop(t)
	cmd.Wait()
	if _, err := os.Stat(d.Socket); !os.IsNotExist(err) {
		t.Fatalf("socket left after shutdown: %v", err)
	}
	if left := daemontest.WaitNoProcesses(runA, 2*time.Second); len(left) > 0 {
		t.Fatalf("commands outlived the daemon: %v", left)
	}
}

// startRunning starts `deputy exec -- argv` as agent A's peer and returns
// once n processes of the agent's uid run.
func startRunning(t *testing.T, d *daemontest.Daemon, n int, argv ...string) *exec.Cmd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	cmd := d.Command(ctx, peerA, append([]string{"exec", "--"}, argv...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(daemontest.ProcessesOf(runA)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("command did not start\n%s", d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd
}

// TestOfflineChecksRunDeputyd covers the CLI commands that hand over to
// deputyd's own code: lint of a valid set (warnings, status 0), doctor
// without a daemon (a local probe), and a clear error where deputyd cannot
// be found.
func TestOfflineChecksRunDeputyd(t *testing.T) {
	_, deputy := daemontest.Binaries(t)
	root := filepath.Join("..", "profiles", "examples")
	examples, err := filepath.Glob(filepath.Join(root, "*.yaml"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no example profiles in %s: %v", root, err)
	}
	out, err := exec.Command(deputy, append([]string{"profile", "lint"}, examples...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d profile(s) valid", len(examples))) {
		t.Fatalf("lint of the examples: %v\n%s", err, out)
	}

	cmd := exec.Command(deputy, "doctor", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "layers, from the local probe:") || !strings.Contains(string(out), "landlock") {
		t.Fatalf("doctor without a daemon: %v\n%s", err, out)
	}

	// A deputy installed alone, with no deputyd in PATH either.
	alone := filepath.Join(t.TempDir(), "deputy")
	data, err := os.ReadFile(deputy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(alone, "profile", "lint", examples[0])
	cmd.Env = []string{"PATH=/nonexistent"}
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 125 || !strings.Contains(string(out), "deputyd is neither beside deputy nor in PATH") {
		t.Fatalf("lint without deputyd: want status 125 and the reason, got %v\n%s", err, out)
	}
}
