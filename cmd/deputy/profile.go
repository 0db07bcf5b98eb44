package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy/daemon/defaults"
)

func newProfileCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Short: "Work with agent profiles"}
	var configPath string
	lint := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check profiles offline with the daemon's own validation",
		Long: `lint parses and validates the given profile files exactly as deputyd does
at start and on reload, including the checks across files (shared uids,
duplicate names and peers). Errors print as file:line: reason and make the
exit status 1; warnings (grants that overlap protected paths, seccomp
overrides, host networking) print but do not fail.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lintArgs := []string{"--lint"}
			if configPath != "" {
				lintArgs = append(lintArgs, "--config", configPath)
			}
			return execDeputyd(append(append(lintArgs, "--"), args...)...)
		},
	}
	lint.Flags().StringVar(&configPath, "config", "", "deputyd config `file`, for its protected paths (default: /var/log)")
	cmd.AddCommand(lint)
	return cmd
}

func newVersionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print deputy's version, and the daemon's when it is reachable",
		Args:  cobra.NoArgs,
	}
	socket := socketFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		fmt.Println("deputy", defaults.Version)
		client, conn, err := dial(socketPath(*socket))
		if err != nil {
			return nil
		}
		defer conn.Close()
		v, err := client.Version(cmd.Context(), nil)
		if err != nil {
			fmt.Println("deputyd: unreachable:", statusExit(err, socketPath(*socket)).msg)
			return nil
		}
		agent := v.GetAgent()
		if agent == "" {
			agent = "(none: this uid is not an agent)"
		}
		fmt.Printf("deputyd %s (your uid %d acts as agent %s)\n", v.GetVersion(), v.GetPeerUid(), agent)
		return nil
	}
	return cmd
}
