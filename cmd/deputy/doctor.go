package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy/daemon"
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
		var layers []*deputyv1.Layer
		source := "daemon at " + socketPath(*socket)
		client, conn, err := dial(socketPath(*socket))
		if err == nil {
			defer conn.Close()
			var resp *deputyv1.DoctorResponse
			if resp, err = client.Doctor(cmd.Context(), &deputyv1.DoctorRequest{}); err == nil {
				layers = resp.GetLayers()
			}
		}
		if err != nil {
			source = "local probe (daemon unreachable)"
			cfg, cerr := daemon.LoadConfig("", daemon.Config{})
			if cerr != nil {
				return &exitError{code: exitFailed, msg: cerr.Error()}
			}
			var perr error
			layers, _, perr = daemon.ProbeLayers(cfg)
			if perr != nil {
				defer fmt.Fprintf(os.Stderr, "\nthe daemon would refuse to start: %v\n", perr)
			}
		}
		fmt.Println("layers, from the " + source + ":")
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LAYER\tACTIVE\tDETAIL\tCONSEQUENCE")
		for _, l := range layers {
			active := "no"
			if l.GetActive() {
				active = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.GetName(), active, l.GetDetail(), l.GetConsequence())
		}
		return tw.Flush()
	}
	return cmd
}
