package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

func newAgentsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "agents [--json]",
		Short: "List the agents and what they did in the last 24 hours",
		Long: `agents is the daemon's inventory: one line per loaded profile with its peer
uids, the identity it runs as, when it last started a command, how many
execs it started and how many were refused in the last 24 hours (counted
since the daemon started), how many run now, and the profile file with the
start of its digest. Root, auditors and approvers only.

--json prints one JSON array of agents (proto field names, every field
present).

Exit status: 0 on success; 126 if the daemon refused; 125 on any other
failure.`,
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
		resp, err := client.ListAgents(cmd.Context(), &deputyv1.ListAgentsRequest{})
		if err != nil {
			return rpcExit(err, sock)
		}
		if asJSON {
			return printJSONArray(resp.GetAgents())
		}
		now := time.Now()
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tPEERS\tRUNAS\tLAST EXEC\tEXECS 24H\tDENIALS 24H\tRUNNING\tPROFILE")
		for _, a := range resp.GetAgents() {
			fmt.Fprintf(tw, "%s\t%s\t%d:%d\t%s\t%d\t%d\t%d\t%s\n",
				printable(a.GetName()), uidList(a.GetPeerUids()), a.GetRunAsUid(), a.GetRunAsGid(),
				ago(a.GetLastExec(), now), a.GetExecs_24H(), a.GetDenials_24H(), a.GetRunning(),
				profileRef(a.GetProfileFile(), a.GetProfileDigest()))
		}
		return tw.Flush()
	}
	return cmd
}

// rpcExit is statusExit for the admin commands, where NOT_FOUND means an
// unknown agent or approval id: deputy's 127 says "command not found in
// the sandbox", which these commands never run, so it becomes 125.
func rpcExit(err error, socket string) *exitError {
	ee := statusExit(err, socket)
	if status.Code(err) == codes.NotFound {
		ee.code = exitFailed
	}
	return ee
}

// jsonOptions print proto messages for scripts: the .proto field names, and
// every field, so that a zero count is 0 rather than absent.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// printJSONArray prints msgs as one indented JSON array. protojson has no
// array form, so each message is marshalled alone, then the whole is
// re-indented: protojson's own spacing is deliberately unstable.
func printJSONArray[M proto.Message](msgs []M) error {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		data, err := jsonOptions.Marshal(m)
		if err != nil {
			return &exitError{code: exitFailed, msg: "encode JSON: " + err.Error()}
		}
		b.Write(data)
	}
	b.WriteByte(']')
	return printIndented(b.Bytes())
}

// printJSON prints one proto message, indented.
func printJSON(m proto.Message) error {
	data, err := jsonOptions.Marshal(m)
	if err != nil {
		return &exitError{code: exitFailed, msg: "encode JSON: " + err.Error()}
	}
	return printIndented(data)
}

func printIndented(data []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		return &exitError{code: exitFailed, msg: "encode JSON: " + err.Error()}
	}
	out.WriteByte('\n')
	if _, err := os.Stdout.Write(out.Bytes()); err != nil {
		return &exitError{code: exitFailed, msg: "write: " + err.Error()}
	}
	return nil
}

func uidList(uids []uint32) string {
	if len(uids) == 0 {
		return "-"
	}
	s := make([]string, len(uids))
	for i, u := range uids {
		s[i] = strconv.FormatUint(uint64(u), 10)
	}
	return strings.Join(s, ",")
}

// ago writes a past time as "3m ago", or "never" when unset.
func ago(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "never"
	}
	return roundAge(now.Sub(ts.AsTime())) + " ago"
}

// roundAge writes a duration to the precision a person reads a table at.
func roundAge(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	return fmt.Sprintf("%dd", d/(24*time.Hour))
}

// shortDigest keeps 12 hex digits of "sha256:<hex>", as docker and git
// abbreviate: enough to tell two versions of a profile apart.
func shortDigest(digest string) string {
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok {
		algo, hex = "", digest
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	if algo == "" {
		return hex
	}
	return algo + ":" + hex
}

func profileRef(file, digest string) string {
	if file == "" {
		file = "-"
	} else {
		file = printable(filepath.Base(file))
	}
	if digest == "" {
		return file
	}
	return file + " " + shortDigest(digest)
}
