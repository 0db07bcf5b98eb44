package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

func newApprovalsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approvals",
		Short: "List the execs waiting for an approver",
		Long: `An exec that a rule marks "approval: required" waits until an approver
decides it with ` + "`deputy approve ID`" + ` or ` + "`deputy deny ID --reason TEXT`" + `, or until
the profile's approval.timeout passes. Approvers are root and the daemon
config's approvers (uids, groups); nobody may decide an exec of an agent
they are a peer of.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newApprovalsListCmd())
	return cmd
}

func newApprovalsListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "Print the pending approvals, oldest first",
		Long: `list prints each pending approval: its id, the agent and the uid that asked,
the command line, working directory, justification and correlation id, the
rule that requires approval, how long it has waited and when it expires.
--json prints one JSON array of approvals (proto field names).

Exit status: 0 on success; 126 if the daemon refused (not an approver); 125
on any other failure.`,
		Args: cobra.NoArgs,
	}
	socket := socketFlag(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		sock := socketPath(*socket)
		client, conn, err := dialExit(sock)
		if err != nil {
			return err
		}
		defer conn.Close()
		resp, err := client.ListApprovals(cmd.Context(), &deputyv1.ListApprovalsRequest{})
		if err != nil {
			return rpcExit(err, sock)
		}
		if asJSON {
			return printJSONArray(resp.GetApprovals())
		}
		if len(resp.GetApprovals()) == 0 {
			fmt.Println("no pending approvals")
			return nil
		}
		printApprovals(resp.GetApprovals(), time.Now())
		return nil
	}
	return cmd
}

// printApprovals writes one block per approval: the command line and the
// justification are too long and too free-form for table columns. Every
// string but the times comes from the agent, so all are made printable.
func printApprovals(list []*deputyv1.Approval, now time.Time) {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 1, ' ', 0)
	for i, a := range list {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "approval %s\n", printable(a.GetId()))
		fmt.Fprintf(tw, "  agent:\t%s (peer uid %d)\n", printable(a.GetAgent()), a.GetPeerUid())
		fmt.Fprintf(tw, "  command:\t%s\n", quoteArgv(a.GetArgv()))
		fmt.Fprintf(tw, "  cwd:\t%s\n", orDash(printable(a.GetCwd())))
		fmt.Fprintf(tw, "  justification:\t%s\n", orDash(printable(a.GetJustification())))
		fmt.Fprintf(tw, "  correlation id:\t%s\n", orDash(printable(a.GetCorrelationId())))
		fmt.Fprintf(tw, "  rule:\t%s\n", orDash(printable(a.GetRule())))
		if c := a.GetCreated(); c != nil {
			fmt.Fprintf(tw, "  waiting since:\t%s (%s)\n", c.AsTime().UTC().Format(time.RFC3339), ago(c, now))
		}
		if e := a.GetExpires(); e != nil {
			fmt.Fprintf(tw, "  expires:\t%s (in %s)\n", e.AsTime().UTC().Format(time.RFC3339), roundAge(e.AsTime().Sub(now)))
		}
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newApproveCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "approve ID [--reason TEXT]",
		Short: "Let a waiting exec run",
		Long: `approve lets the waiting exec ID (from ` + "`deputy approvals list`" + `) run. The
decision, who made it and the reason are recorded in the audit log.

Exit status: 0 on success; 126 if the daemon refused (not an approver, or a
peer of the exec's agent); 125 on any other failure, an unknown or expired
ID included.`,
		Args: cobra.ExactArgs(1),
	}
	socket := socketFlag(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return decide(cmd, socketPath(*socket), args[0], true, reason)
	}
	return cmd
}

func newDenyCmd() *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "deny ID --reason TEXT",
		Short: "Refuse a waiting exec, saying why",
		Long: `deny refuses the waiting exec ID (from ` + "`deputy approvals list`" + `): its
client gets "permission denied" with the reason, which is also recorded in
the audit log. The reason is required.

Exit status: 0 on success; 126 if the daemon refused (not an approver, or a
peer of the exec's agent); 125 on any other failure, an unknown or expired
ID or a missing reason included.`,
		Args: cobra.ExactArgs(1),
	}
	socket := socketFlag(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; the agent sees it and the audit log records it)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		// The daemon refuses it too; checking here saves a round trip and
		// gives the flag's name.
		if strings.TrimSpace(reason) == "" {
			return &exitError{code: exitFailed, msg: "deny needs --reason TEXT: the agent and the audit log are told why"}
		}
		return decide(cmd, socketPath(*socket), args[0], false, reason)
	}
	return cmd
}

func decide(cmd *cobra.Command, socket, id string, approve bool, reason string) error {
	client, conn, err := dialExit(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = client.DecideApproval(cmd.Context(), &deputyv1.DecideApprovalRequest{Id: id, Approve: approve, Reason: reason})
	if err != nil {
		return rpcExit(err, socket)
	}
	verb := "approved"
	if !approve {
		verb = "denied"
	}
	fmt.Printf("%s %s\n", verb, printable(id))
	return nil
}
