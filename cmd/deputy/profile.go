package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/deputyhq/deputy/daemon"
	"github.com/deputyhq/deputy/profiles"
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
			cfg, err := daemon.LoadConfig(configPath, daemon.Config{})
			if err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			set, err := profiles.LoadFiles(args)
			if err == nil {
				err = daemon.CheckSeccomp(set)
			}
			if err != nil {
				var list profiles.ErrorList
				if errors.As(err, &list) {
					for _, e := range list {
						fmt.Fprintln(os.Stderr, e.Error())
					}
				} else {
					fmt.Fprintln(os.Stderr, err.Error())
				}
				return &exitError{code: 1}
			}
			for _, w := range profiles.Lint(set, cfg.Protected()) {
				fmt.Fprintln(os.Stderr, w.String())
			}
			fmt.Printf("%d profile(s) valid\n", set.Len())
			return nil
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
		fmt.Println("deputy", daemon.Version)
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
