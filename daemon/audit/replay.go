package audit

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ReplayOptions configures Replay.
type ReplayOptions struct {
	// All puts every record in the timeline, not only the meaningful file, network and process actions.
	All bool
	// NoTiming plays output back at once instead of with its original timing.
	NoTiming bool
	// Speed scales the original timing: 2 plays twice as fast. Zero means 1.
	Speed float64
	// Color highlights denials and errors with ANSI escapes and keeps colour (SGR) escapes in played-back output.
	Color bool
	// MaxIdle caps any one pause in playback; zero means no cap.
	MaxIdle time.Duration
	// Raw plays output back byte for byte. Otherwise terminal control sequences other than colour are dropped:
	// the output comes from the agent, and escapes can retitle, rewrite or query the auditor's terminal.
	Raw bool
}

const (
	ansiRed   = "\x1b[31m"
	ansiBold  = "\x1b[1m"
	ansiReset = "\x1b[0m"
)

// Replay renders the records of one exec (for example those Query returns for a Filter{ExecID: id}), in log order:
// a header, the process tree, a timeline of what it did, and its output played back with the original timing.
func Replay(w io.Writer, recs []*Record, opts ReplayOptions) error {
	bw := bufio.NewWriter(w)
	p := &replayer{w: bw, opts: opts}
	if p.opts.Speed <= 0 {
		p.opts.Speed = 1
	}
	p.header(recs)
	p.tree(recs)
	p.timeline(recs)
	if err := bw.Flush(); err != nil {
		return err
	}
	return p.output(recs, w)
}

type replayer struct {
	w    *bufio.Writer
	opts ReplayOptions
}

func (p *replayer) red(s string) string {
	if p.opts.Color {
		return ansiRed + s + ansiReset
	}
	return s
}

func (p *replayer) bold(s string) string {
	if p.opts.Color {
		return ansiBold + s + ansiReset
	}
	return s
}

func (p *replayer) field(name, value string) {
	if value != "" {
		fmt.Fprintf(p.w, "%-15s %s\n", name+":", value)
	}
}

func (p *replayer) header(recs []*Record) {
	var req, start, exit *Record
	for _, r := range recs {
		switch r.Action {
		case ActionExecRequest:
			if req == nil {
				req = r
			}
		case ActionExecStart:
			if start == nil {
				start = r
			}
		case ActionExecExit:
			exit = r
		}
	}
	first := req
	if first == nil {
		first = start
	}
	if first == nil && len(recs) > 0 {
		first = recs[0]
	}
	fmt.Fprintln(p.w, p.bold("== exec =="))
	if first == nil {
		fmt.Fprintln(p.w, "(no records)")
		return
	}
	p.field("Exec", clean(first.ExecID))
	p.field("Agent", fmt.Sprintf("%s (uid %d)", clean(first.PrincipalID), first.UID))
	p.field("Correlation", clean(first.CorrelationID))
	if req != nil {
		var d ExecRequestDetails
		if req.Details != nil && req.DecodeDetails(&d) == nil {
			p.field("Peer", fmt.Sprintf("uid %d pid %d", d.PeerUID, d.PeerPID))
			p.field("Command", quoteArgv(d.Argv))
			p.field("Cwd", clean(d.Cwd))
			p.field("Justification", clean(d.Justification))
			prof := clean(d.Profile)
			if d.ProfileDigest != "" {
				prof += " (" + clean(d.ProfileDigest) + ")"
			}
			p.field("Profile", prof)
			dec := clean(d.Decision)
			if d.Rule != "" {
				dec += " (rule " + clean(d.Rule) + ")"
			}
			if strings.HasPrefix(d.Decision, "deny") {
				dec = p.red(dec)
			}
			p.field("Decision", dec)
		}
		p.field("Requested", req.Timestamp.UTC().Format(time.RFC3339Nano))
	}
	if start != nil {
		p.field("Started", fmt.Sprintf("%s (pid %d)", start.Timestamp.UTC().Format(time.RFC3339Nano), start.PID))
	}
	if exit != nil {
		status := "exited"
		var d ExecExitDetails
		if exit.Details != nil && exit.DecodeDetails(&d) == nil {
			status = fmt.Sprintf("exit code %d", d.ExitCode)
			if d.Signal != "" {
				status = "killed by " + clean(d.Signal)
			}
			if d.TimedOut {
				status += ", timed out"
			}
			if d.OOMKilled {
				status += ", OOM killed"
			}
			if d.Lost > 0 {
				status += fmt.Sprintf(", %d events lost", d.Lost)
			}
			if d.ExitCode != 0 || d.Signal != "" || d.TimedOut || d.OOMKilled {
				status = p.red(status)
			}
		}
		if start != nil {
			status += fmt.Sprintf(" after %s", exit.Timestamp.Sub(start.Timestamp).Round(time.Millisecond))
		}
		p.field("Exit", status)
	}
	fmt.Fprintln(p.w)
}

type procNode struct {
	pid, ppid int
	comm      string
	argv      []string
	exit      string
	order     int
	children  []*procNode
}

func (p *replayer) tree(recs []*Record) {
	nodes := map[int]*procNode{}
	get := func(pid int) *procNode {
		n := nodes[pid]
		if n == nil {
			n = &procNode{pid: pid, order: len(nodes)}
			nodes[pid] = n
		}
		return n
	}
	for _, r := range recs {
		if r.PID == 0 {
			continue
		}
		n := get(r.PID)
		if r.PPID != 0 && n.ppid == 0 {
			n.ppid = r.PPID
		}
		if r.Comm != "" && n.comm == "" {
			n.comm = r.Comm
		}
		var d ProcessDetails
		switch {
		case r.Action == ActionProcessFork:
			if r.PPID != 0 {
				n.ppid = r.PPID
			}
		case r.Action == ActionProcessExec || r.Action == ActionExecStart:
			if r.Details != nil && r.DecodeDetails(&d) == nil && len(d.Argv) > 0 {
				n.argv = d.Argv
			}
			if r.Comm != "" {
				n.comm = r.Comm
			}
		case r.Action == ActionProcessExit:
			n.exit = "exited"
			if r.Details != nil && r.DecodeDetails(&d) == nil {
				if d.Signal != "" {
					n.exit = "killed by " + clean(d.Signal)
				} else if d.ExitCode != nil {
					n.exit = fmt.Sprintf("exit %d", *d.ExitCode)
				}
			}
		case r.Action == ActionSyscall && (r.Syscall == "execve" || r.Syscall == "execveat") && r.Result == ResultSuccess:
			if len(r.Args) > 0 {
				n.argv = r.Args
			} else if r.Resource != "" {
				n.argv = []string{r.Resource}
			}
		}
		// fork/clone return values are not used: they are pids inside the
		// exec's pid namespace, while records carry host pids. The
		// process.fork records name both ends in host pids.
	}
	if len(nodes) == 0 {
		return
	}
	var roots []*procNode
	for _, n := range nodes {
		if parent := nodes[n.ppid]; parent != nil && n.ppid != n.pid {
			parent.children = append(parent.children, n)
		} else {
			roots = append(roots, n)
		}
	}
	byOrder := func(ns []*procNode) {
		sort.Slice(ns, func(i, j int) bool { return ns[i].order < ns[j].order })
	}
	fmt.Fprintln(p.w, p.bold("== process tree =="))
	var walk func(n *procNode, prefix, branch string, depth int)
	walk = func(n *procNode, prefix, branch string, depth int) {
		desc := clean(n.comm)
		if len(n.argv) > 0 {
			desc = quoteArgv(n.argv)
		}
		line := fmt.Sprintf("%s%s%d %s", prefix, branch, n.pid, desc)
		if n.exit != "" {
			exit := "[" + n.exit + "]"
			if n.exit != "exit 0" && n.exit != "exited" {
				exit = p.red(exit)
			}
			line += " " + exit
		}
		fmt.Fprintln(p.w, line)
		if depth > 1000 {
			return
		}
		byOrder(n.children)
		childPrefix := prefix
		switch branch {
		case "├─ ":
			childPrefix += "│  "
		case "└─ ":
			childPrefix += "   "
		}
		for i, c := range n.children {
			b := "├─ "
			if i == len(n.children)-1 {
				b = "└─ "
			}
			walk(c, childPrefix, b, depth+1)
		}
	}
	byOrder(roots)
	for _, r := range roots {
		walk(r, "", "", 0)
	}
	fmt.Fprintln(p.w)
}

// meaningfulSyscalls change the world or reach outside the sandbox; the timeline shows them by default.
var meaningfulSyscalls = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Fields(`
		execve execveat
		unlink unlinkat rename renameat renameat2 mkdir mkdirat rmdir link linkat symlink symlinkat
		chmod fchmod fchmodat fchmodat2 chown fchown lchown fchownat truncate ftruncate mknod mknodat
		setxattr lsetxattr fsetxattr removexattr lremovexattr fremovexattr
		connect bind listen accept accept4 sendto sendmsg sendmmsg
		kill tkill tgkill ptrace process_vm_writev
		mount umount2 pivot_root chroot unshare setns
		setuid setgid setreuid setregid setresuid setresgid capset
		bpf init_module finit_module delete_module kexec_load kexec_file_load
		reboot sethostname setdomainname swapon swapoff memfd_create`) {
		m[s] = true
	}
	return m
}()

// isMeaningful reports whether a syscall record belongs in the default timeline.
func isMeaningful(r *Record) bool {
	if r.Result == ResultDenied || r.Result == ResultError {
		return true
	}
	switch r.Syscall {
	case "open", "openat", "openat2", "creat":
		if r.Syscall == "creat" {
			return true
		}
		// Reads are too many to show; opens that can change a file are not.
		for _, a := range r.Args {
			for _, fl := range []string{"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE"} {
				if strings.Contains(a, fl) {
					return true
				}
			}
		}
		return false
	}
	return meaningfulSyscalls[r.Syscall]
}

func (p *replayer) timeline(recs []*Record) {
	var t0 time.Time
	fmt.Fprintln(p.w, p.bold("== timeline =="))
	for _, r := range recs {
		if t0.IsZero() {
			t0 = r.Timestamp
		}
		show := p.opts.All
		switch r.Action {
		case ActionSyscall:
			show = show || isMeaningful(r)
		case ActionDenied, ActionLost, ActionProcessFork, ActionProcessExec, ActionProcessExit, ActionExecStart,
			ActionExecExit:
			show = true
		case ActionExecOutput:
			show = false // played back below
		}
		if !show {
			continue
		}
		off := r.Timestamp.Sub(t0).Seconds()
		what := r.Action
		if r.Action == ActionSyscall {
			what = clean(r.Syscall)
		}
		line := fmt.Sprintf("%10s %7d %-15s %s", "+"+strconv.FormatFloat(off, 'f', 3, 64)+"s", r.PID, clean(r.Comm), what)
		if r.Resource != "" {
			line += " " + clean(r.Resource)
		}
		if len(r.Args) > 0 && (p.opts.All || r.Action != ActionSyscall || r.Resource == "") {
			line += " [" + quoteArgs(r.Args) + "]"
		}
		switch {
		case r.Result == ResultDenied || r.Action == ActionDenied:
			line = p.red("DENIED " + line)
			if r.Errno != "" {
				line += " " + p.red(clean(r.Errno))
			}
		case r.Result == ResultError && r.Action == ActionSyscall:
			line = p.red("ERROR  "+line) + " " + p.red("= "+strconv.FormatInt(r.Ret, 10)+" "+clean(r.Errno))
		case r.Result == ResultError:
			// A process or the exec ended unsuccessfully: say how.
			line = p.red("FAILED "+line) + " " + p.red(exitSummary(r))
		case r.Action == ActionLost:
			line = p.red("LOST   " + line)
		default:
			line = "       " + line
			if r.Action == ActionSyscall && r.Ret != 0 {
				line += " = " + strconv.FormatInt(r.Ret, 10)
			}
		}
		fmt.Fprintln(p.w, line)
	}
	fmt.Fprintln(p.w)
}

// output plays exec.output records back with their original timing.
func (p *replayer) output(recs []*Record, w io.Writer) error {
	if _, err := fmt.Fprintln(w, p.bold("== output ==")); err != nil {
		return err
	}
	var last time.Time
	var buf []byte
	for _, r := range recs {
		if r.Action != ActionExecOutput || r.Details == nil {
			continue
		}
		data, err := outputData(r)
		if err != nil {
			return fmt.Errorf("seq %d: %w", r.Seq, err)
		}
		if !p.opts.NoTiming && !last.IsZero() {
			d := time.Duration(float64(r.Timestamp.Sub(last)) / p.opts.Speed)
			if p.opts.MaxIdle > 0 && d > p.opts.MaxIdle {
				d = p.opts.MaxIdle
			}
			if d > 0 {
				time.Sleep(d)
			}
		}
		last = r.Timestamp
		if !p.opts.Raw {
			buf = filterTerminal(buf[:0], data, p.opts.Color)
			data = buf
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
	}
	return nil
}

// outputData returns the bytes of an exec.output record, whose data is base64 or, failing that, a plain string.
func outputData(r *Record) ([]byte, error) {
	var d struct {
		Data json.RawMessage `json:"data"`
	}
	if err := r.DecodeDetails(&d); err != nil {
		return nil, fmt.Errorf("decode exec.output details: %w", err)
	}
	var s string
	if err := json.Unmarshal(d.Data, &s); err != nil {
		return nil, fmt.Errorf("decode exec.output data: %w", err)
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return []byte(s), nil
}

// filterTerminal copies src to dst without terminal control sequences, keeping newlines, tabs, carriage returns and
// backspaces, and colour (SGR) sequences when keepColor. A sequence split across two chunks loses its escape and shows
// its printable rest, which is harmless.
func filterTerminal(dst, src []byte, keepColor bool) []byte {
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == 0x1b:
			end, final := escapeEnd(src, i)
			if keepColor && final == 'm' {
				dst = append(dst, src[i:end]...)
			}
			i = end
		case c < 0x20 && c != '\n' && c != '\t' && c != '\r' && c != '\b', c == 0x7f:
			i++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(src[i:])
			if r >= 0x80 && r <= 0x9f {
				// C1 controls, CSI (U+009B) among them, act as escapes in some terminals.
				i += size
				continue
			}
			dst = append(dst, src[i:i+size]...)
			i += size
		default:
			dst = append(dst, c)
			i++
		}
	}
	return dst
}

// escapeEnd returns the end of the escape sequence starting at src[i] (an ESC) and, for a CSI sequence, its final
// byte.
func escapeEnd(src []byte, i int) (int, byte) {
	j := i + 1
	if j >= len(src) {
		return j, 0
	}
	switch src[j] {
	case '[': // CSI: parameters and intermediates, then a final byte in 0x40-0x7e.
		for j++; j < len(src); j++ {
			if src[j] >= 0x40 && src[j] <= 0x7e {
				return j + 1, src[j]
			}
		}
		return j, 0
	case ']', 'P', '_', '^', 'X': // OSC, DCS, APC, PM, SOS: up to BEL or ST.
		for j++; j < len(src); j++ {
			if src[j] == 0x07 {
				return j + 1, 0
			}
			if src[j] == 0x1b && j+1 < len(src) && src[j+1] == '\\' {
				return j + 2, 0
			}
		}
		return j, 0
	default: // Two-byte escapes.
		return j + 1, 0
	}
}

// clean makes a string from the log safe to print on a terminal: it may come from the agent.
func clean(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

func quoteArg(a string) string {
	if a == "" || strings.ContainsAny(a, " \t\"'\\$`") || clean(a) != a {
		return strconv.QuoteToGraphic(a)
	}
	return a
}

func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = quoteArg(a)
	}
	return strings.Join(q, " ")
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = quoteArg(a)
	}
	return strings.Join(q, ", ")
}

// exitSummary says how a process.exit or exec.exit record ended.
func exitSummary(r *Record) string {
	var d struct {
		ExitCode *int   `json:"exit_code"`
		Signal   string `json:"signal"`
		TimedOut bool   `json:"timed_out"`
		OOM      bool   `json:"oom_killed"`
	}
	if r.Details == nil || r.DecodeDetails(&d) != nil {
		return ""
	}
	var parts []string
	if d.Signal != "" {
		parts = append(parts, "signal "+clean(d.Signal))
	} else if d.ExitCode != nil {
		parts = append(parts, "exit "+strconv.Itoa(*d.ExitCode))
	}
	if d.TimedOut {
		parts = append(parts, "timed out")
	}
	if d.OOM {
		parts = append(parts, "OOM-killed")
	}
	return strings.Join(parts, ", ")
}
