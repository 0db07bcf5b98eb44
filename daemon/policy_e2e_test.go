package daemon_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// Uids of the policy tests: a peer and a runAs uid per agent, an approver,
// an auditor and a stranger. Uncommon numbers, apart from the other tests'.
const (
	rotPeer, rotRun     = 47401, 47411 // log-rotator, from the shipped example
	clnPeer, clnRun     = 47402, 47412 // log-cleaner, from the shipped example
	aprPeer, aprRun     = 47403, 47413 // an approval-required rule
	impPeer, impRun     = 47404, 47414 // the same with a short approval timeout
	limPeer, limRun     = 47405, 47415 // rateLimit
	onePeer, oneRun     = 47406, 47416 // concurrency: 1
	offPeer, offRun     = 47407, 47417 // agent schedule excluding today
	rulPeer, rulRun     = 47408, 47418 // rule schedules
	brkPeer             = 47409        // a profile that never loads
	cntPeerA, cntRunA   = 47421, 47431 // inventory
	cntPeerB, cntRunB   = 47422, 47432
	watchPeer, watchRun = 47423, 47433 // reload on change
	approverUID         = 47499
	polAuditorUID       = 47497
	polStrangerUID      = 47498
)

// why is the justification the tests send; log-rotator requires one.
const why = "policy e2e test"

// jexec runs `deputy exec --justification why -- argv...` as uid.
func jexec(t *testing.T, d *daemontest.Daemon, uid uint32, argv ...string) daemontest.Result {
	t.Helper()
	return d.Run(t, uid, "", append([]string{"exec", "--justification", why, "--"}, argv...)...)
}

// example returns a shipped example profile with each old string replaced
// by its new one; a replacement that no longer applies fails the test, so
// that the test follows the example when it changes.
func example(t *testing.T, file string, oldNew ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "profiles", "examples", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("%s no longer contains %q: update this test", file, oldNew[i])
		}
		s = strings.ReplaceAll(s, oldNew[i], oldNew[i+1])
	}
	return s
}

// rotatorScratch is the tree the adapted log-rotator works in, standing
// in for /var/log/app (which /var/log, protected, would keep the daemon
// from creating) and /var/tmp/log-rotator:
//
//	dir/app/    rotRun: the logs to clean
//	dir/work/   rotRun: the workdir
//	dir/bin/zap -> /usr/bin/rm, in a directory the agent may execute from
//	dir/cleaner/ clnRun: log-cleaner's workdir
func rotatorScratch(t *testing.T) string {
	t.Helper()
	dir := scratchDir(t, 0)
	mkdirOwned(t, dir+"/app", 0o755, rotRun)
	mkdirOwned(t, dir+"/work", 0o755, rotRun)
	mkdirOwned(t, dir+"/bin", 0o755, 0)
	mkdirOwned(t, dir+"/cleaner", 0o755, clnRun)
	if err := os.Symlink("/usr/bin/rm", dir+"/bin/zap"); err != nil {
		t.Fatal(err)
	}
	return dir
}

// logRotator is profiles/examples/log-rotator.yaml with test uids and
// dir's paths: its rules are the ones shipped.
func logRotator(t *testing.T, dir string) string {
	return example(t, "log-rotator.yaml",
		"peers:\n  users: [rotbot]\n", fmt.Sprintf("peers: {uids: [%d]}\n", rotPeer),
		"runAs:\n  uid: 61003\n  gid: 61003\n", fmt.Sprintf("runAs: {uid: %d, gid: %d}\n", rotRun, rotRun),
		"/var/log/app", dir+"/app",
		"/var/tmp/log-rotator", dir+"/work",
		"exec: [/usr/bin, /usr/sbin]", "exec: [/usr/bin, /usr/sbin, "+dir+"/bin]",
	)
}

// logCleaner is profiles/examples/log-cleaner.yaml (no commands block)
// with test uids and paths.
func logCleaner(t *testing.T, dir string) string {
	return example(t, "log-cleaner.yaml",
		"  users: [logbot]\n", fmt.Sprintf("  uids: [%d]\n", clnPeer),
		"uid: 61001\n  gid: 61001\n", fmt.Sprintf("uid: %d\n  gid: %d\n", clnRun, clnRun),
		"/var/tmp/log-cleaner", dir+"/cleaner",
	)
}

// oldFile creates path owned by uid with an mtime of age ago.
func oldFile(t *testing.T, path string, uid uint32, age time.Duration) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(uid), int(uid)); err != nil {
		t.Fatal(err)
	}
	when := time.Now().Add(-age)
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestPolicyLogRotatorRules runs the shipped log-rotator rules: the
// allowed find and rm run, recursive rm is refused however it is spelt or
// reached, and what no rule allows falls to the default.
func TestPolicyLogRotatorRules(t *testing.T) {
	sandboxtest.RequireRoot(t)
	dir := rotatorScratch(t)
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{"log-rotator.yaml": logRotator(t, dir)}})
	app := dir + "/app"
	oldFile(t, app+"/old.gz", rotRun, 30*24*time.Hour)
	oldFile(t, app+"/old2.gz", rotRun, 30*24*time.Hour)
	oldFile(t, app+"/old3.gz", rotRun, 30*24*time.Hour)
	oldFile(t, app+"/new.gz", rotRun, time.Hour)
	keep := app + "/keep.gz"
	oldFile(t, keep, rotRun, 30*24*time.Hour)

	// find-old: exactly the arguments the rule names.
	r := jexec(t, d, rotPeer, "find", app, "-name", "*.gz", "-mtime", "+7", "-print")
	if r.Code != 0 || !strings.Contains(r.Stdout, app+"/old.gz") || strings.Contains(r.Stdout, "new.gz") {
		t.Fatalf("find-old: want exit 0 listing old.gz but not new.gz, got %s\n%s", r, d.Log())
	}

	// require: justification. A malformed request, not a denial.
	r = d.Exec(t, rotPeer, "", "find", app, "-name", "*.gz", "-mtime", "+7", "-print")
	if r.Code != 125 || !strings.Contains(r.Stderr, "justification") {
		t.Fatalf("no justification: want 125 mentioning justification, got %s", r)
	}

	// No rule allows find / -delete: the default denies, with a hint.
	r = jexec(t, d, rotPeer, "find", "/", "-delete")
	if r.Code != 126 || !strings.Contains(r.Stderr, "default") || !strings.Contains(r.Stderr, "allowed") {
		t.Fatalf("find / -delete: want 126 naming the default and a hint of what is allowed, got %s", r)
	}

	// no-recursive-rm, spelt every way getopt accepts and reached through
	// every path that leads to /usr/bin/rm. keep.gz would match rm-old,
	// which comes after: the deny rule must win.
	recursive := [][]string{
		{"rm", "-r", keep},
		{"rm", "-fr", keep},
		{"rm", keep, "-R"},
		{"rm", "--recursive", keep},
		{"rm", "--rec", keep},
		{"rm", "-vRf", keep},
		{"/usr/bin/rm", "-r", keep},
		{"/usr/bin/../bin/rm", "-r", keep},
		{dir + "/bin/zap", "-r", keep},
		{dir + "/bin/../bin/zap", "--recursive", keep},
	}
	if c, err := filepath.EvalSymlinks("/bin/rm"); err == nil && c == "/usr/bin/rm" {
		recursive = append(recursive, []string{"/bin/rm", "-r", keep})
	}
	for _, argv := range recursive {
		r := jexec(t, d, rotPeer, argv...)
		if r.Code != 126 || !strings.Contains(r.Stderr, "no-recursive-rm") {
			t.Errorf("%q: want 126 naming no-recursive-rm, got %s", argv, r)
		}
	}
	if !exists(keep) {
		t.Fatalf("%s was removed by a denied rm", keep)
	}

	// rm without -r is not no-recursive-rm's business: rm-old decides
	// what it allows, the default the rest.
	r = jexec(t, d, rotPeer, "rm", "--force", "x")
	if r.Code != 126 || strings.Contains(r.Stderr, "no-recursive-rm") || !strings.Contains(r.Stderr, "default") {
		t.Errorf("rm --force x: want 126 by the default, not by no-recursive-rm, got %s", r)
	}
	for _, argv := range [][]string{
		{"rm", app + "/old.gz", "--force"},
		{"/usr/bin/../bin/rm", app + "/old2.gz"},
		{dir + "/bin/zap", app + "/old3.gz", "-v"},
	} {
		r := jexec(t, d, rotPeer, argv...)
		if r.Code != 0 || exists(argv[1]) {
			t.Errorf("%q: want rm-old to let it run and the file gone, got %s (file exists: %v)", argv, r, exists(argv[1]))
		}
	}
	if !exists(keep) || !exists(app+"/new.gz") {
		t.Fatalf("files no allowed command touched are gone")
	}
}

// durationsIn returns every Go duration ("59m58s", "1h0m0s", "3.5s") in s.
func durationsIn(s string) []time.Duration {
	var ds []time.Duration
	for _, m := range regexp.MustCompile(`[0-9][0-9hms.]*[hms]`).FindAllString(s, -1) {
		if d, err := time.ParseDuration(m); err == nil {
			ds = append(ds, d)
		}
	}
	return ds
}

// TestPolicyRateLimitSurvivesRestart: the sixth exec in the hour is
// refused with the wait, and restarting the daemon does not reset the
// window. Concurrency refuses an exec beyond the agent's slots.
func TestPolicyRateLimitSurvivesRestart(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"limited.yaml": agentProfile("limited", limPeer, limRun, "rateLimit: {execs: 5, per: 1h}\n"),
		"single.yaml":  agentProfile("single", onePeer, oneRun, "concurrency: 1\n"),
	}})
	for i := range 5 {
		if r := d.Exec(t, limPeer, "", "true"); r.Code != 0 {
			t.Fatalf("exec %d of 5: %s\n%s", i+1, r, d.Log())
		}
	}
	exhausted := func(when string) {
		t.Helper()
		r := d.Exec(t, limPeer, "", "true")
		if r.Code != 125 || !strings.Contains(r.Stderr, "resource exhausted") {
			t.Fatalf("%s: want 125, resource exhausted, got %s", when, r)
		}
		ok := false
		for _, w := range durationsIn(r.Stderr) {
			ok = ok || (w > 0 && w <= time.Hour)
		}
		if !ok {
			t.Fatalf("%s: message has no wait time of at most 1h: %s", when, r)
		}
	}
	exhausted("sixth exec")
	if _, err := os.Stat(filepath.Join(d.State, "ratelimit.json")); err != nil {
		t.Errorf("rate limit state not persisted: %v", err)
	}
	d.Stop(t)
	d.Restart(t)
	exhausted("after a restart")
	// Another agent's allowance is its own.
	if r := d.Exec(t, onePeer, "", "true"); r.Code != 0 {
		t.Fatalf("other agent: %s", r)
	}

	// concurrency: 1. A second exec while one runs is refused, and the
	// slot comes back when the first ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bg := d.Command(ctx, onePeer, "exec", "--", "sleep", "60")
	if err := bg.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(daemontest.LiveProcessesOf(oneRun)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sleep did not start\n%s", d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := d.Exec(t, onePeer, "", "true"); r.Code != 125 || !strings.Contains(r.Stderr, "resource exhausted") {
		t.Fatalf("second concurrent exec: want 125, resource exhausted, got %s", r)
	}
	bg.Process.Kill()
	bg.Wait()
	if left := daemontest.WaitNoProcesses(oneRun, 5*time.Second); len(left) > 0 {
		t.Fatalf("sleep outlived its client: %v", left)
	}
	var r daemontest.Result
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = d.Exec(t, onePeer, "", "true"); r.Code == 0 {
			return
		}
	}
	t.Fatalf("concurrency slot not released after the exec ended: %s", r)
}

// approvalJSON is one element of `deputy approvals list --json`.
type approvalJSON struct {
	ID            string   `json:"id"`
	Agent         string   `json:"agent"`
	PeerUID       uint32   `json:"peer_uid"`
	Argv          []string `json:"argv"`
	Cwd           string   `json:"cwd"`
	Justification string   `json:"justification"`
	CorrelationID string   `json:"correlation_id"`
	Rule          string   `json:"rule"`
	Created       string   `json:"created"`
	Expires       string   `json:"expires"`
}

func listApprovals(t *testing.T, d *daemontest.Daemon, uid uint32) []approvalJSON {
	t.Helper()
	r := d.Run(t, uid, "", "approvals", "list", "--json")
	if r.Code != 0 {
		t.Fatalf("approvals list as uid %d: %s", uid, r)
	}
	var list []approvalJSON
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("approvals list --json is not a JSON array of approvals: %v\n%s", err, r.Stdout)
	}
	return list
}

// waitApproval waits until the exec with correlation id cid is pending.
func waitApproval(t *testing.T, d *daemontest.Daemon, cid string) approvalJSON {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, a := range listApprovals(t, d, approverUID) {
			if a.CorrelationID == cid {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending approval with correlation id %s\n%s", cid, d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// background is a CLI run in the background.
type background struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
}

func startBackground(t *testing.T, d *daemontest.Daemon, uid uint32, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	b := &background{cmd: d.Command(ctx, uid, args...), done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.done) }()
	return b
}

// wait returns the exit status, failing the test after 30s.
func (b *background) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("background %v did not end", b.cmd.Args)
	}
	return b.cmd.ProcessState.ExitCode()
}

func (b *background) running() bool {
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

// TestPolicyApprovals: an approval-required exec waits; only an approver
// who is not a peer of the agent may decide it; approve runs it, deny
// refuses it with the reason; the audit log records the decisions.
func TestPolicyApprovals(t *testing.T) {
	sandboxtest.RequireRoot(t)
	restarter := agentProfile("restarter", aprPeer, aprRun, `commands:
  rules:
    - id: restart
      allow: /usr/bin/echo
      args: ["restarting", "**"]
      approval: required
approval:
  timeout: 2m
`)
	impatient := agentProfile("impatient", impPeer, impRun, `commands:
  rules:
    - id: restart
      allow: /usr/bin/echo
      approval: required
approval:
  timeout: 2s
`)
	// The agent's own peer is listed as an approver too, so that refusing
	// it shows the self-approval check, not just the approver check.
	d := daemontest.Start(t, daemontest.Options{
		Profiles: map[string]string{"restarter.yaml": restarter, "impatient.yaml": impatient},
		Config:   fmt.Sprintf("approvers:\n  uids: [%d, %d]\n", approverUID, aprPeer),
	})

	// 1. Approve.
	bg := startBackground(t, d, aprPeer, "exec", "--correlation-id", "appr-1", "--justification", "deploy the fix",
		"--", "echo", "restarting", "app")
	a := waitApproval(t, d, "appr-1")
	if a.Agent != "restarter" || a.PeerUID != aprPeer || !slices.Equal(a.Argv, []string{"echo", "restarting", "app"}) ||
		a.Justification != "deploy the fix" || a.Rule != "restart" || a.ID == "" || a.Created == "" || a.Expires == "" {
		t.Errorf("pending approval: %+v", a)
	}
	if r := d.Run(t, 0, "", "approvals", "list"); r.Code != 0 || !strings.Contains(r.Stdout, a.ID) ||
		!strings.Contains(r.Stdout, "restarting app") || !strings.Contains(r.Stdout, "deploy the fix") {
		t.Errorf("approvals list as root: want the approval, got %s", r)
	}
	if r := d.Run(t, polStrangerUID, "", "approvals", "list"); r.Code != 126 {
		t.Errorf("approvals list by a stranger: want 126, got %s", r)
	}
	if r := d.Run(t, polStrangerUID, "", "approve", a.ID); r.Code != 126 {
		t.Errorf("approve by a non-approver: want 126, got %s", r)
	}
	if r := d.Run(t, aprPeer, "", "approve", a.ID); r.Code != 126 {
		t.Errorf("approve by the agent's own peer: want 126, got %s", r)
	}
	if !bg.running() {
		t.Fatalf("exec ended before anyone approved it: exit %d, stdout %q, stderr %q", bg.cmd.ProcessState.ExitCode(), bg.stdout.String(), bg.stderr.String())
	}
	if r := d.Run(t, approverUID, "", "approve", a.ID, "--reason", "looks fine"); r.Code != 0 {
		t.Fatalf("approve by the approver: %s", r)
	}
	if code := bg.wait(t); code != 0 || bg.stdout.String() != "restarting app\n" {
		t.Fatalf("approved exec: want exit 0 and its output, got exit %d, stdout %q, stderr %q", code, bg.stdout.String(), bg.stderr.String())
	}
	if r := d.Run(t, approverUID, "", "approve", a.ID); r.Code != 125 {
		t.Errorf("approving a decided id again: want 125, got %s", r)
	}

	// 2. Deny: a reason is required, and the agent sees it.
	bg = startBackground(t, d, aprPeer, "exec", "--correlation-id", "appr-2", "--justification", "again", "--", "echo", "restarting", "again")
	a = waitApproval(t, d, "appr-2")
	if r := d.Run(t, approverUID, "", "deny", a.ID); r.Code != 125 || !strings.Contains(r.Stderr, "reason") {
		t.Errorf("deny without a reason: want 125 asking for one, got %s", r)
	}
	if r := d.Run(t, approverUID, "", "deny", a.ID, "--reason", "not now"); r.Code != 0 {
		t.Fatalf("deny: %s", r)
	}
	if code := bg.wait(t); code != 126 || !strings.Contains(bg.stderr.String(), "not now") || bg.stdout.Len() != 0 {
		t.Fatalf("denied exec: want exit 126 with the reason and no output, got exit %d, stdout %q, stderr %q", code, bg.stdout.String(), bg.stderr.String())
	}

	// 3. Nobody decides: the exec gives up after approval.timeout.
	began := time.Now()
	r := d.Run(t, impPeer, "", "exec", "--", "echo", "waited")
	if r.Code != 125 && r.Code != 126 || strings.Contains(r.Stdout, "waited") || !strings.Contains(r.Stderr, "approval") {
		t.Errorf("undecided exec: want a refusal mentioning approval, got %s", r)
	}
	if el := time.Since(began); el < 2*time.Second || el > 20*time.Second {
		t.Errorf("undecided exec ended after %s, want about 2s", el)
	}
	t.Logf("undecided exec: exit %d: %s", r.Code, strings.TrimSpace(r.Stderr))
	if list := listApprovals(t, d, 0); len(list) != 0 {
		t.Errorf("approvals left pending: %+v", list)
	}

	// 4. The audit log has the decisions.
	var recs []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs = recs[:0]
		err := audit.Query(filepath.Join(d.State, "audit"), audit.Filter{}, func(r *audit.Record) error {
			if strings.Contains(r.Action, "approval") {
				b, _ := json.Marshal(r)
				recs = append(recs, string(b))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(recs, "\n")
		if strings.Contains(all, "not now") && strings.Contains(all, "looks fine") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	all := strings.Join(recs, "\n")
	if len(recs) < 2 || !strings.Contains(all, "not now") || !strings.Contains(all, "looks fine") ||
		!strings.Contains(all, strconv.Itoa(approverUID)) {
		t.Fatalf("audit log: want approval records with both decisions, their reasons and the approver uid, got %d:\n%s", len(recs), all)
	}
}

// explainCase is one command line for explain and exec to agree on.
type explainCase struct {
	agent    string
	peer     uint32
	argv     []string
	just     string // "" means why
	omitJust bool
	cwd      string
	want     string // run, approval, deny, invalid, notfound; "deny|approval" when the schedule decides
	rule     string // the deciding rule, checked when set
}

// exitClass names how a deputy run ended, as explain's and exec's exit
// statuses are documented.
func exitClass(code int, explainStdout string) string {
	switch code {
	case 0:
		if strings.Contains(explainStdout, "NEEDS APPROVAL") {
			return "approval"
		}
		return "run"
	case 125:
		return "invalid"
	case 126:
		return "deny"
	case 127:
		return "notfound"
	}
	return "run" // the command's own status: it ran
}

// TestPolicyExplainAgreesWithExec: for each command line `deputy policy
// explain` predicts what `deputy exec` then does.
func TestPolicyExplainAgreesWithExec(t *testing.T) {
	sandboxtest.RequireRoot(t)
	dir := rotatorScratch(t)
	d := daemontest.Start(t, daemontest.Options{
		Profiles: map[string]string{"log-rotator.yaml": logRotator(t, dir), "log-cleaner.yaml": logCleaner(t, dir)},
		Config:   fmt.Sprintf("auditors:\n  uids: [%d]\n", polAuditorUID),
	})
	app := dir + "/app"
	for _, f := range []string{"a1.gz", "a2.gz", "a3.gz", "a4.gz", "keep.gz"} {
		oldFile(t, app+"/"+f, rotRun, 30*24*time.Hour)
	}
	mkdirOwned(t, dir+"/cleaner/junk", 0o755, clnRun)
	find := func(extra ...string) []string { return append([]string{"find", app}, extra...) }
	rot := func(want, rule string, argv ...string) explainCase {
		return explainCase{agent: "log-rotator", peer: rotPeer, argv: argv, want: want, rule: rule}
	}
	cln := func(want string, argv ...string) explainCase {
		return explainCase{agent: "log-cleaner", peer: clnPeer, argv: argv, want: want}
	}
	cases := []explainCase{
		rot("run", "find-old", find("-name", "*.gz", "-mtime", "+7", "-print")...),
		rot("run", "find-old", find("-name", "*.gz", "-mtime", "+30", "-print")...),
		rot("run", "find-old", find("-name", "*.gz", "-mtime", "+1", "-print")...),
		rot("run", "find-old", append([]string{"/usr/bin/find", app}, "-name", "*.gz", "-mtime", "+100", "-print")...),
		rot("run", "rm-old", "rm", app+"/a1.gz"),
		rot("run", "rm-old", "rm", app+"/a2.gz", "--force"),
		rot("run", "rm-old", "rm", app+"/a3.gz", "-v"),
		rot("run", "rm-old", dir+"/bin/zap", app+"/a4.gz"),
		rot("deny", "default", "find", "/", "-delete"),
		rot("deny", "default", find("-name", "*.gz", "-mtime", "+7", "-delete")...),
		rot("deny", "default", find("-name", "*.gz", "-mtime", "7", "-print")...),
		rot("deny", "default", find("-name", "*.gz", "-mtime", "+7", "-print", "-exec", "sh", ";")...),
		rot("deny", "default", find("-name", "*.log", "-mtime", "+7", "-print")...),
		rot("deny", "default", "find", "/etc", "-name", "*.gz", "-mtime", "+7", "-print"),
		rot("deny", "no-recursive-rm", "rm", "-r", app+"/keep.gz"),
		rot("deny", "no-recursive-rm", "rm", "-fr", "x"),
		rot("deny", "no-recursive-rm", "rm", "x", "-R"),
		rot("deny", "no-recursive-rm", "rm", "--recursive", "x"),
		rot("deny", "no-recursive-rm", "rm", "--rec", "x"),
		rot("deny", "no-recursive-rm", "rm", "-vRf", "x"),
		rot("deny", "no-recursive-rm", "/usr/bin/../bin/rm", "-r", "x"),
		rot("deny", "no-recursive-rm", dir+"/bin/zap", "-r", "x"),
		rot("deny", "default", "rm", "--force", "x"),
		rot("deny", "default", "rm", "/etc/passwd"),
		rot("deny", "default", "id"),
		rot("deny", "default", "sh", "-c", "true"),
		rot("deny", "default", "systemctl", "stop", "app.service"),
		rot("deny|approval", "restart", "systemctl", "restart", "app.service"),
		// Whether a missing program is "not found" or falls to the default
		// deny is the daemon's choice; explain and exec must agree on it.
		rot("notfound|deny", "", "no-such-program-xyz"),
		{agent: "log-rotator", peer: rotPeer, argv: find("-name", "*.gz", "-mtime", "+7", "-print"), omitJust: true, want: "invalid", rule: "require"},
		{agent: "log-rotator", peer: rotPeer, argv: []string{"id"}, just: "   ", want: "invalid", rule: "require"},
		{agent: "log-rotator", peer: rotPeer, argv: []string{"rm", "-r", "x"}, omitJust: true, want: "invalid", rule: "require"},
		cln("run", "id", "-u"),
		cln("run", "sh", "-c", "exit 0"),
		cln("run", "ls", "/"),
		cln("run", "true"),
		cln("run", "rm", "-r", dir+"/cleaner/junk"),
		cln("notfound", "no-such-program-xyz"),
		{agent: "log-cleaner", peer: clnPeer, argv: []string{"true"}, cwd: "/proc/1", want: "invalid"},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%02d_%s_%s", i, c.agent, strings.Join(c.argv, "_")), func(t *testing.T) {
			var flags []string
			if !c.omitJust {
				j := c.just
				if j == "" {
					j = why
				}
				flags = append(flags, "--justification", j)
			}
			if c.cwd != "" {
				flags = append(flags, "--cwd", c.cwd)
			}
			ex := d.Run(t, 0, "", append(append([]string{"policy", "explain", "--agent", c.agent}, flags...), append([]string{"--"}, c.argv...)...)...)
			got := exitClass(ex.Code, ex.Stdout)
			if !slices.Contains(strings.Split(c.want, "|"), got) {
				t.Fatalf("explain: want %s, got %s: %s", c.want, got, ex)
			}
			if c.rule != "" && !regexp.MustCompile(`(?m)^rule:\s+`+regexp.QuoteMeta(c.rule)+`$`).MatchString(ex.Stdout) {
				t.Errorf("explain: want rule %s, got %s", c.rule, ex)
			}
			if got == "approval" {
				return // exec would wait for an approver
			}
			r := d.Run(t, c.peer, "", append(append([]string{"exec"}, flags...), append([]string{"--"}, c.argv...)...)...)
			if ec := exitClass(r.Code, ""); ec != got {
				t.Fatalf("explain says %s, exec did %s:\nexplain: %s\nexec: %s", got, ec, ex, r)
			}
			if got == "deny" && c.rule != "" && c.rule != "default" && !strings.Contains(r.Stderr, c.rule) {
				t.Errorf("exec: want the denial to name rule %s, got %s", c.rule, r)
			}
		})
	}
	for _, f := range []string{"a1.gz", "a2.gz", "a3.gz", "a4.gz"} {
		if exists(app + "/" + f) {
			t.Errorf("%s: the allowed rm did not remove it", f)
		}
	}
	if !exists(app+"/keep.gz") || exists(dir+"/cleaner/junk") {
		t.Errorf("want keep.gz kept (denied rm -r) and cleaner/junk gone (log-cleaner may rm -r)")
	}

	// The text form names the decision, program and sandbox.
	r := d.Run(t, 0, "", "policy", "explain", "--agent", "log-rotator", "--justification", why, "--", "find", app, "-name", "*.gz", "-mtime", "+7", "-print")
	for _, want := range []string{"ALLOW", "find-old", "/usr/bin/find", "sandbox:", fmt.Sprintf("uid %d", rotRun), "network:", "seccomp:"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("explain text lacks %q: %s", want, r)
		}
	}
	// --json is the ExplainResponse with proto names.
	r = d.Run(t, 0, "", "policy", "explain", "--json", "--agent", "log-rotator", "--justification", why, "--", dir+"/bin/zap", "-r", "x")
	var resp struct {
		Allow       bool   `json:"allow"`
		Rule        string `json:"rule"`
		Program     string `json:"program"`
		Code        string `json:"code"`
		AllowedHint string `json:"allowed_hint"`
		Sandbox     struct {
			UID           uint32   `json:"uid"`
			Network       string   `json:"network"`
			ReadOnly      []string `json:"read_only"`
			SeccompDenied []string `json:"seccomp_denied"`
		} `json:"sandbox"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &resp); err != nil {
		t.Fatalf("explain --json: %v: %s", err, r)
	}
	if r.Code != 126 || resp.Allow || resp.Rule != "no-recursive-rm" || resp.Program != "/usr/bin/rm" || resp.Code != "PERMISSION_DENIED" ||
		resp.AllowedHint == "" || resp.Sandbox.UID != rotRun || resp.Sandbox.Network != "none" ||
		!slices.Contains(resp.Sandbox.ReadOnly, "/var/log") || len(resp.Sandbox.SeccompDenied) == 0 {
		t.Errorf("explain --json of a symlinked rm -r: got %+v from %s", resp, r)
	}

	// Who may explain: a peer its own agent, an auditor any; a peer not
	// another agent, a stranger nothing.
	explain := func(uid uint32, agent string) daemontest.Result {
		return d.Run(t, uid, "", "policy", "explain", "--agent", agent, "--justification", why, "--", "id")
	}
	if r := explain(rotPeer, "log-rotator"); r.Code != 126 || !strings.Contains(r.Stdout, "DENY") {
		t.Errorf("a peer explaining its own agent: want the answer (DENY, 126), got %s", r)
	}
	if r := explain(polAuditorUID, "log-cleaner"); r.Code != 0 || !strings.Contains(r.Stdout, "ALLOW") {
		t.Errorf("an auditor explaining: want ALLOW, got %s", r)
	}
	for _, uid := range []uint32{rotPeer, polStrangerUID} {
		if r := explain(uid, "log-cleaner"); r.Code != 126 || strings.Contains(r.Stdout, "ALLOW") {
			t.Errorf("uid %d explaining log-cleaner: want a refusal (126), got %s", uid, r)
		}
	}
	if r := explain(0, "no-such-agent"); r.Code != 125 || !strings.Contains(r.Stderr, "no-such-agent") {
		t.Errorf("explaining an unknown agent: want 125 naming it, got %s", r)
	}
}

// TestPolicySchedule: outside an agent's or a rule's schedule an exec is
// denied, naming when the next window opens.
func TestPolicySchedule(t *testing.T) {
	sandboxtest.RequireRoot(t)
	// Today must stay today while the test runs.
	now := time.Now().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	if wait := midnight.Sub(now); wait < 2*time.Minute {
		t.Logf("waiting %s for the UTC day to change", wait)
		time.Sleep(wait + 5*time.Second)
		now = time.Now().UTC()
		midnight = time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	}
	day := func(w time.Weekday) string { return strings.ToLower(w.String()[:3]) }
	var others []string
	for w := time.Sunday; w <= time.Saturday; w++ {
		if w != now.Weekday() {
			others = append(others, day(w))
		}
	}
	notToday := "{days: [" + strings.Join(others, ", ") + "], timezone: UTC}"
	today := "{days: [" + day(now.Weekday()) + "], timezone: UTC}"
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"offday.yaml": agentProfile("offday", offPeer, offRun, "schedule: "+notToday+"\n"),
		"ruled.yaml": agentProfile("ruled", rulPeer, rulRun, fmt.Sprintf(`commands:
  rules:
    - id: today
      allow: /usr/bin/id
      schedule: %s
    - id: not-today
      allow: /usr/bin/true
      schedule: %s
`, today, notToday)),
	}})
	// Tomorrow at 00:00 UTC, as RFC 3339.
	next := midnight.Format(time.RFC3339)

	r := d.Exec(t, offPeer, "", "true")
	if r.Code != 126 || !strings.Contains(r.Stderr, next) {
		t.Errorf("agent schedule: want 126 naming the next opening %s, got %s", next, r)
	}
	if r := d.Exec(t, rulPeer, "", "id", "-u"); r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(rulRun) {
		t.Errorf("rule open today: want it to run, got %s", r)
	}
	r = d.Exec(t, rulPeer, "", "true")
	if r.Code != 126 || !strings.Contains(r.Stderr, "not-today") || !strings.Contains(r.Stderr, next) {
		t.Errorf("rule closed today: want 126 naming not-today and the next opening %s, got %s", next, r)
	}
	r = d.Run(t, 0, "", "policy", "explain", "--agent", "offday", "--", "true")
	if r.Code != 126 || !regexp.MustCompile(`(?m)^rule:\s+schedule$`).MatchString(r.Stdout) {
		t.Errorf("explain: want the schedule to deny, got %s", r)
	}
}

// agentJSON is one element of `deputy agents --json`.
type agentJSON struct {
	Name          string     `json:"name"`
	PeerUIDs      []uint32   `json:"peer_uids"`
	RunAsUID      uint32     `json:"run_as_uid"`
	RunAsGID      uint32     `json:"run_as_gid"`
	ProfileFile   string     `json:"profile_file"`
	ProfileDigest string     `json:"profile_digest"`
	LastExec      *time.Time `json:"last_exec"`
	Execs24h      uint32     `json:"execs_24h"`
	Denials24h    uint32     `json:"denials_24h"`
	Running       uint32     `json:"running"`
}

// TestPolicyAgentsInventory: `deputy agents` counts each agent's execs and
// denials and names its profile file and digest.
func TestPolicyAgentsInventory(t *testing.T) {
	sandboxtest.RequireRoot(t)
	profA := agentProfile("counted-a", cntPeerA, cntRunA, "commands:\n  rules:\n    - {id: only-true, allow: /usr/bin/true}\n")
	profB := agentProfile("counted-b", cntPeerB, cntRunB, "")
	d := daemontest.Start(t, daemontest.Options{
		Profiles: map[string]string{"counted-a.yaml": profA, "counted-b.yaml": profB},
		Config:   fmt.Sprintf("auditors:\n  uids: [%d]\n", polAuditorUID),
	})
	began := time.Now()
	for range 3 {
		if r := d.Exec(t, cntPeerA, "", "true"); r.Code != 0 {
			t.Fatalf("allowed exec: %s", r)
		}
	}
	for range 2 {
		if r := d.Exec(t, cntPeerA, "", "id"); r.Code != 126 {
			t.Fatalf("denied exec: want 126, got %s", r)
		}
	}
	if r := d.Exec(t, cntPeerB, "", "true"); r.Code != 0 {
		t.Fatalf("exec: %s", r)
	}
	// One exec of B still running.
	bg := startBackground(t, d, cntPeerB, "exec", "--", "sleep", "60")
	deadline := time.Now().Add(10 * time.Second)
	for len(daemontest.LiveProcessesOf(cntRunB)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sleep did not start\n%s", d.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}

	r := d.Run(t, polAuditorUID, "", "agents", "--json")
	if r.Code != 0 {
		t.Fatalf("agents --json as an auditor: %s", r)
	}
	var list []agentJSON
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("agents --json is not a JSON array of agents: %v\n%s", err, r.Stdout)
	}
	byName := map[string]agentJSON{}
	for _, a := range list {
		byName[a.Name] = a
	}
	check := func(name, file string, peer, run, execs, denials, running uint32) {
		t.Helper()
		a, ok := byName[name]
		if !ok {
			t.Errorf("agent %s not listed: %s", name, r.Stdout)
			return
		}
		body, err := os.ReadFile(filepath.Join(d.Profiles, file))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		if !slices.Equal(a.PeerUIDs, []uint32{peer}) || a.RunAsUID != run || a.RunAsGID != run ||
			a.ProfileFile != filepath.Join(d.Profiles, file) || a.ProfileDigest != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("agent %s: identity or profile wrong: %+v", name, a)
		}
		if a.Execs24h != execs || a.Denials24h != denials || a.Running != running {
			t.Errorf("agent %s: want %d execs, %d denials, %d running; got %d, %d, %d", name, execs, denials, running,
				a.Execs24h, a.Denials24h, a.Running)
		}
		if a.LastExec == nil || a.LastExec.Before(began.Add(-time.Second)) || a.LastExec.After(time.Now()) {
			t.Errorf("agent %s: last exec %v, want since the test began", name, a.LastExec)
		}
	}
	check("counted-a", "counted-a.yaml", cntPeerA, cntRunA, 3, 2, 0)
	check("counted-b", "counted-b.yaml", cntPeerB, cntRunB, 2, 0, 1)

	r = d.Run(t, 0, "", "agents")
	for _, want := range []string{"NAME", "EXECS 24H", "DENIALS 24H", "counted-a", "counted-b", "counted-a.yaml"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("agents table lacks %q: %s", want, r)
		}
	}
	for _, uid := range []uint32{cntPeerA, polStrangerUID} {
		if r := d.Run(t, uid, "", "agents"); r.Code != 126 {
			t.Errorf("agents as uid %d: want 126, got %s", uid, r)
		}
	}
	bg.cmd.Process.Kill()
	bg.wait(t)
}

// lineOf is the 1-based line of body that contains s.
func lineOf(t *testing.T, body, s string) int {
	t.Helper()
	for i, l := range strings.Split(body, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	t.Fatalf("%q not in\n%s", s, body)
	return 0
}

// TestPolicyReloadOnChange: the daemon watches its profile directory. An
// invalid file is logged as file:line and leaves the loaded set in force;
// a valid change is in force within 2 s, without SIGHUP.
func TestPolicyReloadOnChange(t *testing.T) {
	sandboxtest.RequireRoot(t)
	d := daemontest.Start(t, daemontest.Options{Profiles: map[string]string{
		"watched.yaml": agentProfile("watched", watchPeer, watchRun, ""),
	}})
	if r := d.Exec(t, watchPeer, "", "id", "-u"); r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(watchRun) {
		t.Fatalf("exec: %s", r)
	}

	// A new, invalid file.
	broken := agentProfile("broken", brkPeer, brkPeer+10, "bogusField: 1\n")
	d.WriteProfile(t, "broken.yaml", broken)
	waitLog(t, d, fmt.Sprintf("broken.yaml:%d:", lineOf(t, broken, "bogusField")))
	if r := d.Exec(t, watchPeer, "", "id", "-u"); r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(watchRun) {
		t.Fatalf("old profiles not in force after an invalid file: %s", r)
	}
	if r := d.Exec(t, brkPeer, "", "true"); r.Code != 126 {
		t.Fatalf("the invalid file's agent: want 126 (unknown peer), got %s", r)
	}
	if err := os.Remove(filepath.Join(d.Profiles, "broken.yaml")); err != nil {
		t.Fatal(err)
	}

	// A valid change: only true may run now.
	restricted := agentProfile("watched", watchPeer, watchRun, "commands:\n  rules:\n    - {id: only-true, allow: /usr/bin/true}\n")
	wrote := time.Now()
	d.WriteProfile(t, "watched.yaml", restricted)
	var r daemontest.Result
	for {
		began := time.Since(wrote)
		if r = d.Exec(t, watchPeer, "", "id", "-u"); r.Code == 126 && strings.Contains(r.Stderr, "default") {
			t.Logf("change in force after %s", began.Round(time.Millisecond))
			break
		}
		// 2 s, plus one exec's latency for the probe that sees it.
		if began > 2500*time.Millisecond {
			t.Fatalf("valid change not in force within 2s of the write: %s\n%s", r, d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := d.Exec(t, watchPeer, "", "true"); r.Code != 0 {
		t.Fatalf("allowed exec after reload: %s", r)
	}

	// The agent's own file made invalid: the last valid version stays.
	bad := agentProfile("watched", watchPeer, watchRun, "commands:\n  rules:\n    - {id: Not An Id, allow: /usr/bin/id}\n")
	d.WriteProfile(t, "watched.yaml", bad)
	waitLog(t, d, fmt.Sprintf("watched.yaml:%d:", lineOf(t, bad, "Not An Id")))
	if r := d.Exec(t, watchPeer, "", "id"); r.Code != 126 {
		t.Errorf("after an invalid edit: want the last valid profile (id denied), got %s", r)
	}
	if r := d.Exec(t, watchPeer, "", "true"); r.Code != 0 {
		t.Errorf("after an invalid edit: want the last valid profile (true allowed), got %s", r)
	}
}
