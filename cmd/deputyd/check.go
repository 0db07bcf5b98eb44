package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/deputyhq/deputy/cmd/internal/layers"
	"github.com/deputyhq/deputy/daemon"
	"github.com/deputyhq/deputy/profiles"
)

// The offline checks live in deputyd, not in the deputy CLI: they are the
// daemon's own code (profile parsing, seccomp compilation, the host probe),
// and linking that code into the CLI made every `deputy exec` start about
// 9 ms slower. `deputy profile lint` and `deputy doctor` run these.

// lint validates profile files exactly as a start or reload does:
// errors as file:line: reason and status 1; warnings printed, status 0.
func lint(cfg *daemon.Config, files []string) int {
	if len(files) == 0 {
		fmt.Fprintln(os.Stderr, "deputyd: --lint needs at least one profile file")
		return 2
	}
	set, err := profiles.LoadFiles(files)
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
		return 1
	}
	for _, w := range profiles.Lint(set, cfg.Protected()) {
		fmt.Fprintln(os.Stderr, w.String())
	}
	fmt.Printf("%d profile(s) valid\n", set.Len())
	return 0
}

// doctor probes this host's layers as a starting daemon would.
func doctor(cfg *daemon.Config) int {
	found, _, perr := daemon.ProbeLayers(cfg)
	if err := layers.Print(os.Stdout, "local probe", found); err != nil {
		return 1
	}
	if perr != nil {
		fmt.Fprintf(os.Stderr, "\nthe daemon would refuse to start: %v\n", perr)
	}
	return 0
}
