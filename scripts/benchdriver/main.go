// Command benchdriver measures deputyd against its performance targets. It
// is run by scripts/bench, as root, against two private daemons that the
// script has started: one with syscall auditing on, one with it off. The
// parts that must reach the daemon as the benchmark's peer uid re-execute
// this binary as that uid ("benchdriver worker ..."), so the binary must
// live where that uid can run it.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := workerMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "benchdriver worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchdriver:", err)
		os.Exit(1)
	}
}

// daemonUnderTest is one of the two private daemons.
type daemonUnderTest struct {
	name   string // "audit on" / "audit off"
	socket string
	pid    int
	state  string
	work   string // the profile's write grant and workdir
	runUID int    // the profile's runAs uid (gid equal)
}

type options struct {
	quick                   bool
	out                     string
	deputy                  string
	progs                   string
	peerUID, peerGID        int
	on, off                 daemonUnderTest
	latencyN, latencyWarmup int
	clients                 int
	throughputFor           time.Duration
	auditReps               int
	auditWarmup             bool
}

func parseFlags() (*options, error) {
	o := &options{on: daemonUnderTest{name: "audit on"}, off: daemonUnderTest{name: "audit off"}}
	fs := flag.NewFlagSet("benchdriver", flag.ContinueOnError)
	fs.BoolVar(&o.quick, "quick", false, "small counts, for development and CI smoke runs")
	fs.StringVar(&o.out, "out", "bench-results.json", "where to write the results (JSON)")
	fs.StringVar(&o.deputy, "deputy", "", "the deputy CLI")
	fs.StringVar(&o.progs, "progs", "", "directory the profile grants in filesystem.exec (test programs and the tarball go here)")
	fs.IntVar(&o.peerUID, "peer-uid", -1, "the benchmark peer's uid")
	fs.IntVar(&o.peerGID, "peer-gid", -1, "the benchmark peer's gid")
	for _, d := range []*daemonUnderTest{&o.on, &o.off} {
		sfx := map[string]string{"audit on": "on", "audit off": "off"}[d.name]
		fs.StringVar(&d.socket, "socket-"+sfx, "", "socket of the daemon with auditing "+sfx)
		fs.IntVar(&d.pid, "pid-"+sfx, 0, "pid of the daemon with auditing "+sfx)
		fs.StringVar(&d.state, "state-"+sfx, "", "state directory of the daemon with auditing "+sfx)
		fs.StringVar(&d.work, "work-"+sfx, "", "write grant of the profile of the daemon with auditing "+sfx)
		fs.IntVar(&d.runUID, "run-uid-"+sfx, 0, "runAs uid of the profile of the daemon with auditing "+sfx)
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for name, v := range map[string]string{"--deputy": o.deputy, "--progs": o.progs, "--socket-on": o.on.socket,
		"--socket-off": o.off.socket, "--state-on": o.on.state, "--work-on": o.on.work, "--work-off": o.off.work} {
		if v == "" {
			return nil, fmt.Errorf("%s is required", name)
		}
	}
	if o.peerUID <= 0 || o.peerGID < 0 || o.on.pid <= 0 || o.off.pid <= 0 || o.on.runUID <= 0 || o.off.runUID <= 0 {
		return nil, errors.New("--peer-uid, --peer-gid, --pid-on, --pid-off, --run-uid-on and --run-uid-off are required")
	}
	o.latencyN, o.latencyWarmup, o.clients, o.throughputFor, o.auditReps, o.auditWarmup = 1000, 50, 8, 20*time.Second, 5, true
	if o.quick {
		o.latencyN, o.latencyWarmup, o.throughputFor, o.auditReps, o.auditWarmup = 50, 5, 3*time.Second, 1, false
	}
	return o, nil
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root (the baselines and the audit log need it); scripts/bench does")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b := &bench{o: o, self: self, res: newResults(o)}
	return b.all()
}

type bench struct {
	o    *options
	self string
	res  *results

	flood, churn, tarball string
	lost                  lostCount
}

// lostCount sums audit_lost over every exec on the audit-on daemon.
type lostCount struct {
	mu    sync.Mutex
	total uint64
	by    map[string]uint64
}

func (l *lostCount) add(what string, n uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = map[string]uint64{}
	}
	l.total += n
	l.by[what] += n
}

func (b *bench) step(what string) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), what)
}

func (b *bench) all() error {
	o := b.o
	b.step("prepare: compile the test programs, write the source tarball")
	var err error
	if b.flood, err = buildC(o.progs, "flood", floodC); err != nil {
		return err
	}
	if b.churn, err = buildC(o.progs, "churn", churnC); err != nil {
		return err
	}
	b.tarball = filepath.Join(o.progs, "src.tgz")
	if err := writeSourceTarball(b.tarball); err != nil {
		return fmt.Errorf("write %s: %w", b.tarball, err)
	}

	b.step(fmt.Sprintf("baselines: %d runs each after %d warm-up", o.latencyN, o.latencyWarmup))
	for _, bl := range []struct {
		key  string
		argv []string
	}{
		{"bare_fork_exec", []string{"/bin/true"}},
		{"setpriv", []string{"setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "/bin/true"}},
		{"sudo", []string{"sudo", "-u", "nobody", "/bin/true"}},
		{"unshare", []string{"unshare", "--mount", "--pid", "--net", "--fork", "/bin/true"}},
		{"bwrap", bwrapArgv},
	} {
		s, err := b.spawnLatency(bl.argv, nil, nil)
		if err != nil {
			return fmt.Errorf("baseline %s: %w", bl.key, err)
		}
		b.res.latency(bl.key, strings.Join(bl.argv, " "), s)
	}

	b.step("warm up both daemons, then read their idle RSS")
	for _, d := range []*daemonUnderTest{&o.on, &o.off} {
		var rep latencyReport
		if err := b.worker(d, &rep, "--mode", "latency", "--n", "0", "--warmup", strconv.Itoa(o.latencyWarmup), "--", "/bin/true"); err != nil {
			return fmt.Errorf("warm up %s: %w", d.name, err)
		}
		if d == &o.on {
			b.lost.add("warm-up", rep.AuditLost)
		}
	}
	time.Sleep(time.Second)
	for _, d := range []*daemonUnderTest{&o.on, &o.off} {
		if err := b.recordMem("rss_idle_"+suffix(d)+"_mib", d.pid); err != nil {
			return err
		}
	}

	b.step(fmt.Sprintf("exec latency through the API: %d execs of /bin/true on one connection, per daemon", o.latencyN))
	for _, d := range []*daemonUnderTest{&o.on, &o.off} {
		var rep latencyReport
		if err := b.worker(d, &rep, "--mode", "latency", "--n", strconv.Itoa(o.latencyN), "--warmup", strconv.Itoa(o.latencyWarmup), "--", "/bin/true"); err != nil {
			return fmt.Errorf("API latency (%s): %w", d.name, err)
		}
		key := "exec_api"
		if d == &o.off {
			key = "exec_api_audit_off"
		} else {
			b.lost.add("exec_api", rep.AuditLost)
		}
		b.res.latency(key, "Exec RPC, /bin/true, "+d.name, rep.Samples)
	}

	b.step(fmt.Sprintf("exec latency through the CLI: %d runs of deputy exec -- /bin/true", o.latencyN))
	cliLost := regexp.MustCompile(`(\d+) events lost`)
	s, err := b.spawnLatency([]string{o.deputy, "exec", "--", "/bin/true"}, b.peerCred(), func(stderr []byte) {
		if m := cliLost.FindSubmatch(stderr); m != nil {
			n, _ := strconv.ParseUint(string(m[1]), 10, 64)
			b.lost.add("exec_cli", n)
		}
	}, "DEPUTY_SOCKET="+o.on.socket)
	if err != nil {
		return fmt.Errorf("CLI latency: %w", err)
	}
	b.res.latency("exec_cli", "deputy exec -- /bin/true, as the peer, audit on", s)

	if err := b.throughput(); err != nil {
		return err
	}
	if err := b.auditOverhead(); err != nil {
		return err
	}
	if err := b.recordMem("rss_end_on_mib", o.on.pid); err != nil {
		return err
	}
	b.res.Audit.LostTotal, b.res.Audit.LostBy = b.lost.total, b.lost.by

	b.res.evaluate()
	b.res.print(os.Stdout)
	return b.res.write(o.out)
}

func suffix(d *daemonUnderTest) string {
	if d.name == "audit on" {
		return "on"
	}
	return "off"
}

// throughput runs /bin/true from 8 concurrent clients and samples the
// daemon's RSS while it does.
func (b *bench) throughput() error {
	o := b.o
	b.step(fmt.Sprintf("throughput: %d clients for %s, then bwrap from as many", o.clients, o.throughputFor))
	stop := make(chan struct{})
	var peak float64
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, err := rssMiB(o.on.pid); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	var rep throughputReport
	err := b.worker(&o.on, &rep, "--mode", "throughput", "--clients", strconv.Itoa(o.clients), "--duration", o.throughputFor.String(), "--", "/bin/true")
	close(stop)
	wg.Wait()
	if err != nil {
		return fmt.Errorf("throughput: %w", err)
	}
	if err := b.recordMem("rss_after_load_mib", o.on.pid); err != nil {
		return err
	}
	b.res.Memory["rss_peak_during_load_mib"] = max(peak, b.res.Memory["rss_after_load_mib"])
	b.lost.add("throughput", rep.AuditLost)
	b.res.throughput(o.clients, rep)

	// The same load on bwrap, for scale: what this machine allows a
	// sandbox that creates namespaces for every command.
	execs, errs, elapsed := b.spawnThroughput(bwrapArgv, o.clients, o.throughputFor)
	b.res.Throughput.BwrapExecsPerSec = float64(execs) / elapsed.Seconds()
	b.res.Throughput.BwrapErrors = errs
	return nil
}

var bwrapArgv = []string{"bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "/bin/true"}

// baselineCommand is argv as the baselines run it: a plain PATH plus env,
// in /.
func baselineCommand(argv []string, env ...string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cmd.Dir = "/"
	return cmd
}

// spawnThroughput runs argv from clients concurrent loops for d and counts
// the completed runs and the failed ones.
func (b *bench) spawnThroughput(argv []string, clients int, d time.Duration) (execs, errs int, elapsed time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	began := time.Now()
	deadline := began.Add(d)
	for range clients {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				err := baselineCommand(argv).Run()
				mu.Lock()
				if err != nil {
					errs++
				} else {
					execs++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return execs, errs, time.Since(began)
}

// workload is one command of the audit-overhead comparison.
type workload struct {
	key   string
	argv  []string
	fresh bool // runs in a fresh directory of the write grant
}

func (b *bench) auditOverhead() error {
	o := b.o
	loads := []workload{
		{"flood", []string{b.flood}, false},
		{"churn", []string{b.churn}, true},
		{"real", []string{"/bin/sh", "-c", `tar xzf "$0" && grep -r -c ` + searchWord + ` . > /dev/null`, b.tarball}, true},
	}
	b.step(fmt.Sprintf("audit overhead: %d repetition(s) of flood, churn, real, audit on and off alternating", o.auditReps))
	if o.auditWarmup {
		for _, w := range loads {
			for _, d := range []*daemonUnderTest{&o.on, &o.off} {
				r, err := b.runIn(d, w, "warmup")
				if err != nil {
					return err
				}
				if d == &o.on {
					b.lost.add("audit-"+w.key, r.AuditLost)
				}
			}
		}
	}
	// The flood outside deputy: what a million syscalls cost on this host.
	var native []time.Duration
	for range o.auditReps {
		syscall.Sync()
		began := time.Now()
		if out, err := exec.Command(b.flood).CombinedOutput(); err != nil {
			return fmt.Errorf("flood outside deputy: %v: %s", err, out)
		}
		native = append(native, time.Since(began))
	}
	b.res.Audit.FloodNativeMs = ms(median(native))

	runs := map[string]map[string][]*execResult{}
	var logBytes, logEvents uint64
	for i := range o.auditReps {
		for _, w := range loads {
			if runs[w.key] == nil {
				runs[w.key] = map[string][]*execResult{}
			}
			for _, d := range []*daemonUnderTest{&o.on, &o.off} {
				var before int64
				measureLog := d == &o.on && w.key == "flood"
				if measureLog {
					before = settledLogSize(filepath.Join(d.state, "audit"))
				}
				r, err := b.runIn(d, w, strconv.Itoa(i))
				if err != nil {
					return err
				}
				if measureLog {
					after := settledLogSize(filepath.Join(d.state, "audit"))
					if after > before {
						logBytes += uint64(after - before)
						logEvents += r.AuditEvents
					}
				}
				if d == &o.on {
					b.lost.add("audit-"+w.key, r.AuditLost)
				}
				runs[w.key][suffix(d)] = append(runs[w.key][suffix(d)], r)
			}
		}
	}
	for _, w := range loads {
		b.res.auditWorkload(w.key, strings.Join(w.argv, " "), runs[w.key]["on"], runs[w.key]["off"])
	}
	if logEvents > 0 {
		b.res.Audit.LogBytesPerEvent = float64(logBytes) / float64(logEvents)
	}
	return nil
}

// runIn runs one workload on d as the peer, in a fresh directory when the
// workload wants one, and fails when the command does.
func (b *bench) runIn(d *daemonUnderTest, w workload, tag string) (*execResult, error) {
	args := []string{"--mode", "run"}
	if w.fresh {
		dir := filepath.Join(d.work, w.key+"-"+tag)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if err := os.Chown(dir, d.runUID, d.runUID); err != nil {
			return nil, err
		}
		args = append(args, "--cwd", dir)
	}
	// Write back what earlier runs left dirty (a flood's log is hundreds
	// of MB) before the clock starts, so that no run pays for another's
	// I/O: an audit-off run right after an audit-on one used to.
	syscall.Sync()
	var r execResult
	if err := b.worker(d, &r, append(append(args, "--"), w.argv...)...); err != nil {
		return nil, fmt.Errorf("%s (%s): %w", w.key, d.name, err)
	}
	if !r.ok() {
		return nil, fmt.Errorf("%s (%s): %s", w.key, d.name, r.describe())
	}
	return &r, nil
}

// worker runs this binary in worker mode as the peer against d and decodes
// its JSON answer into out.
func (b *bench) worker(d *daemonUnderTest, out any, args ...string) error {
	cmd := exec.Command(b.self, append([]string{"worker", "--socket", d.socket}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: b.peerCred()}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("worker %v: %v: %s", args, err, strings.TrimSpace(stderr.String()))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("worker %v: decode its answer: %w", args, err)
	}
	return nil
}

func (b *bench) peerCred() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(b.o.peerUID), Gid: uint32(b.o.peerGID), Groups: []uint32{}}
}

// spawnLatency times a fresh process of argv per run, sequentially, after
// the warm-up runs. cred, when set, is who runs it; onStderr sees each
// run's stderr.
func (b *bench) spawnLatency(argv []string, cred *syscall.Credential, onStderr func([]byte), env ...string) ([]time.Duration, error) {
	var samples []time.Duration
	for i := range b.o.latencyWarmup + b.o.latencyN {
		cmd := baselineCommand(argv, env...)
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		began := time.Now()
		err := cmd.Run()
		took := time.Since(began)
		if err != nil {
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
		}
		if onStderr != nil {
			onStderr(stderr.Bytes())
		}
		if i >= b.o.latencyWarmup {
			samples = append(samples, took)
		}
	}
	return samples, nil
}

// rssMiB is a process's resident set (VmRSS) in MiB.
func rssMiB(pid int) (float64, error) {
	m, err := memMiB(pid)
	return m["VmRSS"], err
}

// memMiB reads VmRSS and its parts (RssAnon, RssFile, RssShmem: a BPF ring
// buffer the daemon maps shows up outside RssAnon) in MiB.
func memMiB(pid int) (map[string]float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, fmt.Errorf("read the daemon's RSS: %w", err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !slices.Contains([]string{"VmRSS", "RssAnon", "RssFile", "RssShmem"}, k) {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("parse %s %q: %w", k, v, err)
		}
		m[k] = kb / 1024
	}
	if _, ok := m["VmRSS"]; !ok {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// recordMem stores pid's VmRSS as key and its parts as key_anon etc.
func (b *bench) recordMem(key string, pid int) error {
	m, err := memMiB(pid)
	if err != nil {
		return err
	}
	b.res.Memory[key] = m["VmRSS"]
	for part, name := range map[string]string{"RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"} {
		if v, ok := m[part]; ok {
			b.res.Memory[strings.TrimSuffix(key, "_mib")+"_"+name+"_mib"] = v
		}
	}
	return nil
}

// settledLogSize is the total size of the audit log files once it has
// stopped growing (the daemon flushes at least every 100ms), waiting at
// most 10s.
func settledLogSize(dir string) int64 {
	size := func() int64 {
		var n int64
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range files {
			if st, err := os.Stat(f); err == nil {
				n += st.Size()
			}
		}
		return n
	}
	last, stable := size(), 0
	for deadline := time.Now().Add(10 * time.Second); stable < 3 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if n := size(); n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	return last
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func hostInfo() map[string]string {
	var u syscall.Utsname
	_ = syscall.Uname(&u)
	str := func(a [65]int8) string {
		var b []byte
		for _, c := range a {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		return string(b)
	}
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	return map[string]string{
		"kernel":  str(u.Release),
		"cpus":    strconv.Itoa(runtime.NumCPU()),
		"host":    host,
		"loadavg": strings.TrimSpace(string(load)),
	}
}
