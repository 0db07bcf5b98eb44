package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Ask the daemon what its policy decides",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newPolicyExplainCmd())
	return cmd
}

type explainOptions struct {
	socket        *string
	agent         string
	justification string
	cwd           string
	json          bool
}

func newPolicyExplainCmd() *cobra.Command {
	var o explainOptions
	cmd := &cobra.Command{
		Use:   "explain --agent NAME [flags] -- CMD [ARG...]",
		Short: "Show what `deputy exec` would decide, without running anything",
		Long: `explain evaluates the loaded policy of agent NAME for a command line, as
` + "`deputy exec`" + ` would at this moment, and runs nothing: the decision (ALLOW,
NEEDS APPROVAL, DENY or INVALID), the rule that decided, why, what the
profile does allow, the program the command resolves to, and the sandbox it
would run in. Root, auditors and approvers may explain any agent; a peer
uid may explain its own agent.

Exit status mirrors ` + "`deputy exec`" + `'s refusals: 0 if the command would run
(also when it first needs approval); 126 if it would be denied; 127 if the
program would not be found; 125 if the request is invalid (a missing
justification, say) or explain itself failed.`,
		Args: cobra.MinimumNArgs(1),
	}
	f := cmd.Flags()
	// Everything after the command is the command's, as with exec.
	f.SetInterspersed(false)
	o.socket = socketFlag(cmd)
	f.StringVar(&o.agent, "agent", "", "the agent `name` to explain for (required)")
	f.StringVar(&o.justification, "justification", "", "the justification exec would send")
	f.StringVar(&o.cwd, "cwd", "", "working `dir` exec would ask for (default: the profile's)")
	f.BoolVar(&o.json, "json", false, "print the daemon's answer as JSON (proto field names)")
	cmd.MarkFlagRequired("agent")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		sock := socketPath(*o.socket)
		client, conn, err := dialExit(sock)
		if err != nil {
			return err
		}
		defer conn.Close()
		resp, err := client.Explain(cmd.Context(), &deputyv1.ExplainRequest{
			Agent: o.agent, Argv: args, Justification: o.justification, Cwd: o.cwd,
		})
		if err != nil {
			return rpcExit(err, sock)
		}
		if o.json {
			if err := printJSON(resp); err != nil {
				return err
			}
		} else {
			printExplain(resp)
		}
		return explainExit(resp, sock)
	}
	return cmd
}

// explainExit is the status exec would end with, without a message: the
// explanation on stdout already says why.
func explainExit(r *deputyv1.ExplainResponse, socket string) error {
	if r.GetAllow() && r.GetCode() == "" {
		return nil
	}
	code := codes.PermissionDenied // a refusal without a code is a denial
	if r.GetCode() != "" {
		var ok bool
		if code, ok = parseCode(r.GetCode()); !ok {
			return &exitError{code: exitFailed, msg: fmt.Sprintf("the daemon sent an unknown status code %q", r.GetCode())}
		}
	}
	// The same mapping as exec's, so that the two always agree.
	return &exitError{code: statusExit(status.Error(code, r.GetReason()), socket).code}
}

// parseCode reads a gRPC code as the proto documents it
// ("PERMISSION_DENIED") or as Go's codes.Code.String writes it
// ("PermissionDenied").
func parseCode(name string) (codes.Code, bool) {
	var c codes.Code
	if c.UnmarshalJSON([]byte(strconv.Quote(name))) == nil {
		return c, true
	}
	for c = codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return c, true
		}
	}
	return 0, false
}

// decisionWord is the one-word verdict of the text output.
func decisionWord(r *deputyv1.ExplainResponse) string {
	code, known := parseCode(r.GetCode())
	switch {
	case r.GetAllow() && r.GetCode() == "" && r.GetNeedsApproval():
		return "NEEDS APPROVAL"
	case r.GetAllow() && r.GetCode() == "":
		return "ALLOW"
	case r.GetCode() == "" || known && code == codes.PermissionDenied:
		return "DENY"
	case known && code == codes.InvalidArgument:
		return "INVALID"
	case known && code == codes.NotFound:
		return "NOT FOUND"
	}
	return "REFUSED (" + r.GetCode() + ")"
}

func printExplain(r *deputyv1.ExplainResponse) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 1, ' ', 0)
	defer tw.Flush()
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("decision", decisionWord(r))
	line("rule", printable(r.GetRule()))
	// The reason may end with the hint, as exec's refusal message does;
	// print it once.
	reason, hint := r.GetReason(), r.GetAllowedHint()
	if hint != "" {
		reason = strings.TrimSuffix(reason, "; "+hint)
	}
	line("reason", printable(reason))
	line("hint", printable(hint))
	line("program", printable(r.GetProgram()))
	line("code", r.GetCode())
	sb := r.GetSandbox()
	if sb == nil {
		return
	}
	fmt.Fprintln(tw, "sandbox:")
	line("  agent", printable(sb.GetAgent()))
	line("  identity", fmt.Sprintf("uid %d, gid %d", sb.GetUid(), sb.GetGid()))
	line("  network", sb.GetNetwork())
	line("  cwd", printable(sb.GetCwd()))
	line("  limits", limitsSummary(sb))
	line("  read", pathList(sb.GetRead()))
	line("  write", pathList(sb.GetWrite()))
	line("  exec", pathList(sb.GetExec()))
	line("  protected", pathList(sb.GetReadOnly()))
	line("  hidden", pathList(sb.GetHidden()))
	sc := fmt.Sprintf("%d syscalls denied", len(sb.GetSeccompDenied()))
	if o := sb.GetSeccompAllowedOverrides(); len(o) > 0 {
		sc += "; allowed by override: " + strings.Join(o, ", ")
	}
	line("  seccomp", sc)
}

func limitsSummary(sb *deputyv1.Sandbox) string {
	var parts []string
	if t := sb.GetTimeout(); t != nil {
		parts = append(parts, "timeout "+t.AsDuration().String())
	}
	if m := sb.GetMemoryBytes(); m > 0 {
		parts = append(parts, "memory "+binarySize(m))
	}
	if p := sb.GetPids(); p > 0 {
		parts = append(parts, fmt.Sprintf("pids %d", p))
	}
	if c := sb.GetCpu(); c > 0 {
		parts = append(parts, "cpu "+strconv.FormatFloat(c, 'g', -1, 64))
	} else {
		parts = append(parts, "cpu unlimited")
	}
	if o := sb.GetOutputBytes(); o > 0 {
		parts = append(parts, "output "+binarySize(o))
	}
	return strings.Join(parts, ", ")
}

// binarySize writes n bytes with the profile syntax's suffixes (Ki, Mi,
// Gi, Ti) where it divides exactly, so that it reads as the profile does.
func binarySize(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func pathList(paths []string) string {
	if len(paths) == 0 {
		return "-"
	}
	q := make([]string, len(paths))
	for i, p := range paths {
		q[i] = printable(p)
	}
	return strings.Join(q, " ")
}
