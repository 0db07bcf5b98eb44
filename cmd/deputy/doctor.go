package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy/cmd/internal/layers"
	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

func newDoctorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Show which isolation and audit layers are active on this host",
		Long: `doctor asks the running daemon which layers it found at start (cgroup
mode, namespaces, Landlock ABI, seccomp, BPF-LSM) and what it refuses or
degrades because of them. Without a reachable daemon it probes the host
itself (run it as root for a complete answer).`,
		Args: cobra.NoArgs,
	}
	socket := socketFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var found []*deputyv1.Layer
		source := "daemon at " + socketPath(*socket)
		client, conn, err := dial(socketPath(*socket))
		if err == nil {
			defer conn.Close()
			var resp *deputyv1.DoctorResponse
			if resp, err = client.Doctor(cmd.Context(), &deputyv1.DoctorRequest{}); err == nil {
				found = resp.GetLayers()
			}
		}
		if err != nil {
			// No daemon to ask: deputyd probes this host itself.
			fmt.Fprintf(os.Stderr, "deputy doctor: daemon unreachable at %s (%v); probing this host with deputyd --doctor\n", socketPath(*socket), err)
			return execDeputyd("--doctor")
		}
		return layers.Print(os.Stdout, source, found)
	}
	return cmd
}
