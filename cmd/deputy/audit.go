package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/defaults"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

// exitBroken is `deputy audit verify`'s status for a broken chain.
const exitBroken = 1

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query, replay, tail and verify the audit log",
		Long: `audit reads deputyd's hash-chained audit log, through the daemon (root and
the config's auditors only; agents never) or, with --dir, straight from the
files under the daemon's state directory (root-only files, so run as root).

Exit status: 0 on success; 1 if verify finds the chain broken; 126 if the
daemon or the file permissions refused; 125 on any other failure.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newAuditQueryCmd(), newAuditReplayCmd(), newAuditVerifyCmd(), newAuditTailCmd())
	return cmd
}

func newAuditQueryCmd() *cobra.Command {
	var (
		f              audit.Filter
		since, until   string
		asJSON, follow bool
	)
	cmd := &cobra.Command{
		Use:   "query [flags]",
		Short: "Print the records that match a filter, oldest first",
		Long: `query prints the audit records that match every filter given, oldest first:
one line each, or with --json each record exactly as stored (one JSON object
per line, hash included, so it can be re-verified).

--since and --until take an RFC 3339 time (2026-01-02T15:04:05Z) or a
duration ago (90s, 10m, 2h, 3d).`,
		Args: cobra.NoArgs,
	}
	src := addAuditSource(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.Agent, "agent", "", "only records of agent `name`")
	fl.StringVar(&f.ExecID, "exec", "", "only records of exec `id`")
	fl.StringVar(&f.CorrelationID, "correlation-id", "", "only records with correlation `id`")
	fl.StringVar(&since, "since", "", "only records at or after `T`")
	fl.StringVar(&until, "until", "", "only records before `T`")
	fl.StringVar(&f.Action, "action", "", "only records of `action` (exec.request, exec.start, exec.output, exec.exit, syscall, denied, daemon.start, ...)")
	fl.StringVar(&f.Syscall, "syscall", "", "only records of syscall `name`")
	fl.StringVar(&f.Result, "result", "", "only records with `result` (success, error, denied)")
	fl.BoolVar(&asJSON, "json", false, "print each record as stored")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new records as they are written")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		now := time.Now()
		var err error
		if f.Since, err = parseWhen(since, now); err != nil {
			return &exitError{code: exitFailed, msg: "--since: " + err.Error()}
		}
		if f.Until, err = parseWhen(until, now); err != nil {
			return &exitError{code: exitFailed, msg: "--until: " + err.Error()}
		}
		p := newRecordPrinter(os.Stdout, asJSON, follow)
		err = src.query(cmd.Context(), f, follow, p.print)
		return errors.Join(err, p.flush())
	}
	return cmd
}

func newAuditTailCmd() *cobra.Command {
	var (
		n              int
		asJSON, follow bool
	)
	cmd := &cobra.Command{
		Use:   "tail [flags]",
		Short: "Print the last records of the log, then with -f follow it",
		Args:  cobra.NoArgs,
	}
	src := addAuditSource(cmd)
	fl := cmd.Flags()
	fl.IntVarP(&n, "lines", "n", 20, "print the last `N` records")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new records as they are written")
	fl.BoolVar(&asJSON, "json", false, "print each record as stored")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if n < 0 {
			return &exitError{code: exitFailed, msg: "-n must not be negative"}
		}
		p := newRecordPrinter(os.Stdout, asJSON, follow)
		err := src.tail(cmd.Context(), n, follow, p.print)
		return errors.Join(err, p.flush())
	}
	return cmd
}

func newAuditReplayCmd() *cobra.Command {
	var opts audit.ReplayOptions
	cmd := &cobra.Command{
		Use:   "replay EXEC_ID",
		Short: "Show what one exec did and play its output back",
		Long: `replay renders one exec from the audit log: who asked for it and why, the
decision, its process tree, a timeline of what it did (file changes, network,
processes, denials; --all for every record), and its output played back with
the original timing. EXEC_ID may be a unique prefix of the id.

Terminal control sequences in the output, which come from the agent, are
dropped; colour is kept when stdout is a terminal.`,
		Args: cobra.ExactArgs(1),
	}
	src := addAuditSource(cmd)
	fl := cmd.Flags()
	fl.Float64Var(&opts.Speed, "speed", 1, "play output back `X` times as fast")
	fl.BoolVar(&opts.NoTiming, "no-timing", false, "print output at once instead of with its original timing")
	fl.BoolVar(&opts.All, "all", false, "put every record in the timeline")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if opts.Speed <= 0 {
			return &exitError{code: exitFailed, msg: "--speed must be positive"}
		}
		id, err := src.resolveExec(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		var recs []*audit.Record
		err = src.query(cmd.Context(), audit.Filter{ExecID: id}, false, func(_ []byte, r *audit.Record) error {
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return &exitError{code: exitFailed, msg: fmt.Sprintf("no audit records for exec %s", id)}
		}
		opts.Color = isTerminal(os.Stdout)
		if err := audit.Replay(os.Stdout, recs, opts); err != nil {
			return &exitError{code: exitFailed, msg: "replay: " + err.Error()}
		}
		return nil
	}
	return cmd
}

func newAuditVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the log's hash chain; exit 1 if it is broken",
		Long: `verify recomputes the hash of every record and checks that each commits to
the one before it, across all the log files. It exits 0 if the chain is
intact (a torn last line, which a crash leaves, is reported but intact) and
1 if not, naming the first bad record and what is wrong with it.

The last hash it prints anchors everything before it: keep a copy where the
host's root cannot rewrite it.`,
		Args: cobra.NoArgs,
	}
	src := addAuditSource(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v, err := src.verify(cmd.Context())
		if err != nil {
			return err
		}
		fmt.Printf("records:    %d in %d file(s)\n", v.records, v.files)
		if v.ok {
			fmt.Printf("last hash:  %s\n", v.lastHash)
		}
		if v.tail != "" {
			fmt.Printf("torn tail:  %s (what a crash leaves; the daemon cuts it at start)\n", v.tail)
		}
		if v.ok {
			fmt.Println("chain:      intact")
			return nil
		}
		fmt.Println("chain:      BROKEN")
		fmt.Printf("first bad:  %s\n", v.problem)
		if v.badLine != "" {
			fmt.Printf("record:     %s\n", v.badLine)
		}
		return &exitError{code: exitBroken, msg: "audit log chain broken: " + v.problem}
	}
	return cmd
}

// auditSource reads the log through the daemon or, with --dir, from the files.
type auditSource struct {
	socket *string
	dir    string
}

func addAuditSource(cmd *cobra.Command) *auditSource {
	s := &auditSource{socket: socketFlag(cmd)}
	cmd.Flags().StringVar(&s.dir, "dir", "", "read the log files under the daemon's state `dir` (e.g. "+defaults.State+") instead of asking the daemon; needs root")
	return s
}

// recordFunc receives each record and its stored line.
type recordFunc func(line []byte, r *audit.Record) error

// errStop ends a query early from inside a recordFunc.
var errStop = errors.New("stop")

// query calls fn for each record that matches f, and with follow for each new
// one until ctx ends.
func (s *auditSource) query(ctx context.Context, f audit.Filter, follow bool, fn recordFunc) error {
	if s.dir != "" {
		cb := func(r *audit.Record) error {
			b, err := r.MarshalJSON()
			if err != nil {
				return fmt.Errorf("encode seq %d: %w", r.Seq, err)
			}
			return fn(b, r)
		}
		dir := s.auditDir()
		if follow {
			return s.fileErr(audit.TailFilter(ctx, dir, f, true, cb))
		}
		return s.fileErr(audit.Query(dir, f, cb))
	}
	client, conn, err := dial(socketPath(*s.socket))
	if err != nil {
		return &exitError{code: exitFailed, msg: err.Error()}
	}
	defer conn.Close()
	// Cancelling ends the stream when fn stops early.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.QueryAudit(ctx, auditQuery(f, follow))
	if err != nil {
		return s.daemonErr(err)
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return s.daemonErr(err)
		}
		r := new(audit.Record)
		if err := r.UnmarshalJSON(m.GetJson()); err != nil {
			return &exitError{code: exitFailed, msg: fmt.Sprintf("the daemon sent a record that does not parse: %v", err)}
		}
		if err := fn(m.GetJson(), r); err != nil {
			return err
		}
	}
}

// tail calls fn for the last n records and, with follow, for each new one.
func (s *auditSource) tail(ctx context.Context, n int, follow bool, fn recordFunc) error {
	if s.dir != "" {
		// The files give the last seq cheaply; start n before it.
		head, _, err := audit.Head(s.auditDir())
		if err != nil {
			return s.fileErr(err)
		}
		from := uint64(1)
		if head >= uint64(n) {
			from = head - uint64(n) + 1
		}
		return s.query(ctx, audit.Filter{Seq: from}, follow, fn)
	}
	// The API has no "last n", so keep the last n of a full read, then
	// follow from the record after them: nothing written in between is
	// lost.
	type rec struct {
		line []byte
		r    *audit.Record
	}
	ring := make([]rec, 0, n)
	var last uint64
	err := s.query(ctx, audit.Filter{}, false, func(line []byte, r *audit.Record) error {
		last = r.Seq
		if n == 0 {
			return nil
		}
		if len(ring) == n {
			copy(ring, ring[1:])
			ring = ring[:n-1]
		}
		ring = append(ring, rec{line, r})
		return nil
	})
	if err != nil {
		return err
	}
	for _, x := range ring {
		if err := fn(x.line, x.r); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	return s.query(ctx, audit.Filter{Seq: last + 1}, true, fn)
}

// verifyResult is a VerifyReport from either source.
type verifyResult struct {
	ok             bool
	records, files uint64
	tail           string // where the torn tail is, if there is one
	problem        string
	lastHash       string
	badLine        string // the first bad record as stored, when it can be read
}

func (s *auditSource) verify(ctx context.Context) (*verifyResult, error) {
	if s.dir != "" {
		rep, err := audit.Verify(s.auditDir())
		if err != nil {
			return nil, s.fileErr(err)
		}
		v := &verifyResult{ok: rep.OK, records: uint64(rep.Records), files: uint64(rep.Files), lastHash: rep.LastHash}
		if rep.Tail != nil {
			v.tail = rep.Tail.String()
		}
		if p := rep.FirstBad; p != nil {
			v.problem = p.String()
			if p.Line > 0 {
				v.badLine = readLine(p.File, p.Line)
			}
		}
		return v, nil
	}
	client, conn, err := dial(socketPath(*s.socket))
	if err != nil {
		return nil, &exitError{code: exitFailed, msg: err.Error()}
	}
	defer conn.Close()
	resp, err := client.VerifyAudit(ctx, &deputyv1.VerifyAuditRequest{})
	if err != nil {
		return nil, s.daemonErr(err)
	}
	v := &verifyResult{ok: resp.GetOk(), records: resp.GetRecords(), files: uint64(resp.GetFiles()),
		problem: resp.GetProblem(), lastHash: resp.GetLastHash()}
	if resp.GetTruncatedTail() {
		v.tail = "the last file ends in an incomplete line"
	}
	if m := problemSeq.FindStringSubmatch(v.problem); m != nil {
		// Best effort: a record too damaged to parse cannot be shown.
		seq, _ := strconv.ParseUint(m[1], 10, 64)
		_ = s.query(ctx, audit.Filter{Seq: seq}, false, func(line []byte, r *audit.Record) error {
			if r.Seq == seq {
				v.badLine = printable(string(line))
			}
			return errStop
		})
	}
	return v, nil
}

// problemSeq finds the seq in audit.Problem's String.
var problemSeq = regexp.MustCompile(`: seq (\d+): `)

// maxShownLine bounds how much of a bad record verify prints.
const maxShownLine = 4096

// readLine returns line lineNo (1-based) of path, made safe to print, or "".
func readLine(path string, lineNo int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	br := bufio.NewReader(f)
	for i := 1; ; i++ {
		b, err := br.ReadString('\n')
		if i == lineNo {
			b = strings.TrimSuffix(b, "\n")
			if len(b) > maxShownLine {
				b = b[:maxShownLine] + "..."
			}
			return printable(b)
		}
		if err != nil {
			return ""
		}
	}
}

// resolveExec expands a unique prefix of an exec id to the full id.
func (s *auditSource) resolveExec(ctx context.Context, id string) (string, error) {
	found := map[string]bool{}
	// Every exec starts with one exec.request record, so the ids are all in
	// those few records.
	err := s.query(ctx, audit.Filter{Action: audit.ActionExecRequest}, false, func(_ []byte, r *audit.Record) error {
		if strings.HasPrefix(r.ExecID, id) {
			found[r.ExecID] = true
			if r.ExecID == id {
				return errStop
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return "", err
	}
	switch {
	case found[id]:
		return id, nil
	case len(found) == 1:
		for full := range found {
			return full, nil
		}
	case len(found) > 1:
		return "", &exitError{code: exitFailed, msg: fmt.Sprintf("exec id prefix %q matches %d execs; give more of it", id, len(found))}
	}
	// No exec.request (a log that lost it, say): the id may still have records.
	return id, nil
}

// auditDir is the log directory under the state directory --dir names; the
// log directory itself is accepted too.
func (s *auditSource) auditDir() string {
	d := defaults.AuditDir(filepath.Clean(s.dir))
	if _, err := os.Stat(d); errors.Is(err, fs.ErrNotExist) && filepath.Base(filepath.Clean(s.dir)) == "audit" {
		return filepath.Clean(s.dir)
	}
	return d
}

// fileErr explains a failure to read the log files.
func (s *auditSource) fileErr(err error) error {
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, errStop), errors.As(err, &ee):
		return err
	case errors.Is(err, fs.ErrPermission):
		return &exitError{code: exitDenied, msg: fmt.Sprintf("permission denied reading the audit log in %s: the log is root-only; run as root, or ask the daemon if you are an auditor: %v", s.auditDir(), err)}
	case errors.Is(err, fs.ErrNotExist):
		return &exitError{code: exitFailed, msg: fmt.Sprintf("no audit log in %s (--dir is the daemon's state directory, such as %s): %v", s.auditDir(), defaults.State, err)}
	case errors.Is(err, audit.ErrCorrupt):
		return &exitError{code: exitFailed, msg: fmt.Sprintf("%v (run `deputy audit verify --dir %s`)", err, s.dir)}
	}
	return &exitError{code: exitFailed, msg: err.Error()}
}

// daemonErr explains a failure of the daemon, suggesting --dir when it is
// not there.
func (s *auditSource) daemonErr(err error) error {
	socket := socketPath(*s.socket)
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return &exitError{code: exitFailed, msg: fmt.Sprintf("daemon unavailable at %s (is deputyd running?): %s\nto read the log files directly, run as root with --dir %s", socket, st.Message(), defaults.State)}
	}
	return statusExit(err, socket)
}

// auditQuery converts a filter to the wire.
func auditQuery(f audit.Filter, follow bool) *deputyv1.AuditQuery {
	q := &deputyv1.AuditQuery{
		Agent:         f.Agent,
		ExecId:        f.ExecID,
		CorrelationId: f.CorrelationID,
		Action:        f.Action,
		Syscall:       f.Syscall,
		Result:        f.Result,
		Follow:        follow,
		FromSeq:       f.Seq,
	}
	if !f.Since.IsZero() {
		q.Since = timestamppb.New(f.Since)
	}
	if !f.Until.IsZero() {
		q.Until = timestamppb.New(f.Until)
	}
	return q
}

// parseWhen reads an RFC 3339 time or a duration before now ("10m", "3d").
// The empty string is the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n float64
		if n, err = strconv.ParseFloat(days, 64); err == nil {
			d = time.Duration(n * float64(24*time.Hour))
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2006-01-02T15:04:05Z) nor a positive duration ago (10m, 2h, 3d)", s)
	}
	return now.Add(-d), nil
}

// recordPrinter prints records as stored (--json) or one readable line each.
type recordPrinter struct {
	w         *bufio.Writer
	json      bool
	flushEach bool // following: show each record as it comes
}

func newRecordPrinter(w io.Writer, asJSON, flushEach bool) *recordPrinter {
	return &recordPrinter{w: bufio.NewWriter(w), json: asJSON, flushEach: flushEach}
}

func (p *recordPrinter) print(line []byte, r *audit.Record) error {
	if p.json {
		p.w.Write(line)
		p.w.WriteByte('\n')
	} else {
		p.w.WriteString(formatRecord(r))
		p.w.WriteByte('\n')
	}
	if p.flushEach {
		return p.flush()
	}
	return nil
}

func (p *recordPrinter) flush() error {
	if err := p.w.Flush(); err != nil {
		return &exitError{code: exitFailed, msg: "write: " + err.Error()}
	}
	return nil
}

// formatRecord renders a record on one line: time, seq, agent, short exec id,
// action, then what the action concerns. Strings the agent controls (comm,
// paths, argv) are quoted if they hold anything a terminal would act on.
func formatRecord(r *audit.Record) string {
	var b strings.Builder
	agent := r.PrincipalID
	if agent == "" {
		agent = "-"
	}
	exec := r.ExecID
	if len(exec) > 8 {
		exec = exec[:8]
	}
	if exec == "" {
		exec = "-"
	}
	fmt.Fprintf(&b, "%s %7d %-12s %-8s %-12s", r.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z"), r.Seq,
		printable(agent), printable(exec), printable(r.Action))
	add := func(s string) {
		if s != "" {
			b.WriteByte(' ')
			b.WriteString(s)
		}
	}
	if r.PID != 0 {
		add(fmt.Sprintf("pid=%d", r.PID))
	}
	if r.Comm != "" {
		add("comm=" + printable(r.Comm))
	}
	add(printable(r.Syscall))
	add(printable(r.Resource))
	add(printable(r.Result))
	if r.Ret != 0 {
		add("= " + strconv.FormatInt(r.Ret, 10))
	}
	add(printable(r.Errno))
	add(detailSummary(r))
	return b.String()
}

// detailSummary is the gist of an exec record's details.
func detailSummary(r *audit.Record) string {
	if r.Details == nil {
		return ""
	}
	switch r.Action {
	case audit.ActionExecRequest:
		var d struct {
			audit.ExecRequestDetails
			Reason string `json:"reason"`
		}
		if r.DecodeDetails(&d) != nil {
			return ""
		}
		s := printable(d.Decision)
		if d.Reason != "" {
			s += " (" + printable(d.Reason) + ")"
		}
		return strings.TrimSpace(s + " " + quoteArgv(d.Argv))
	case audit.ActionExecExit:
		var d audit.ExecExitDetails
		if r.DecodeDetails(&d) != nil {
			return ""
		}
		s := "exit " + strconv.Itoa(d.ExitCode)
		if d.Signal != "" {
			s = "killed by " + printable(d.Signal)
		}
		if d.TimedOut {
			s += ", timed out"
		}
		if d.OOMKilled {
			s += ", OOM killed"
		}
		return s
	case audit.ActionExecOutput:
		var d audit.ExecOutputDetails
		if r.DecodeDetails(&d) != nil {
			return ""
		}
		return fmt.Sprintf("%s %d bytes", printable(d.Stream), len(d.Data))
	}
	return ""
}

// printable returns s, or s quoted if a terminal would act on any of it: the
// log holds strings the agent chose.
func printable(s string) string {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			q := strconv.QuoteToGraphic(s)
			return q[1 : len(q)-1]
		}
	}
	return s
}

func quoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\"'\\$`") || printable(a) != a {
			a = strconv.QuoteToGraphic(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
