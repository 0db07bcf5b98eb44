// Command deputyd is Deputy's root daemon: it serves the Exec API on a Unix
// socket and runs each agent's commands under the agent's own uid, confined
// and audited.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"

	"github.com/deputyhq/deputy/daemon"
	"github.com/deputyhq/deputy/daemon/defaults"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("deputyd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: deputyd [--config FILE] [--socket PATH] [--profiles DIR] [--state DIR]
       deputyd --lint [--config FILE] PROFILE...   (what deputy profile lint runs)
       deputyd --doctor [--config FILE]            (what deputy doctor runs without a daemon)

deputyd runs commands for AI agents under each agent's own unprivileged uid,
confined by namespaces, cgroups, Landlock and seccomp. It must run as root.

The config file (YAML) holds socket, profiles, state, protectedPaths,
auditors, allowWeakerEnforcement, maxConcurrentExecs and cgroupRoot; the
flags below override it. SIGHUP reloads the profiles (an invalid set is
rejected and the old one stays); SIGTERM shuts down cleanly.

Flags:
`)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "config `file` (YAML)")
	var over daemon.Config
	fs.StringVar(&over.Socket, "socket", "", "Unix socket `path` (default "+daemon.DefaultSocket+")")
	fs.StringVar(&over.Profiles, "profiles", "", "profiles `directory` (default "+daemon.DefaultProfiles+")")
	fs.StringVar(&over.State, "state", "", "state `directory` (default "+daemon.DefaultState+")")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn, error")
	version := fs.Bool("version", false, "print the version and exit")
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile of the daemon to `file` until it stops (for performance work)")
	lintMode := fs.Bool("lint", false, "validate the profile files given as arguments, as a start would, and exit")
	doctorMode := fs.Bool("doctor", false, "probe this host's isolation and audit layers, print them and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 && !*lintMode {
		fmt.Fprintf(os.Stderr, "deputyd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *version {
		fmt.Println("deputyd", defaults.Version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "deputyd: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := daemon.LoadConfig(*configPath, over)
	if err != nil {
		fmt.Fprintf(os.Stderr, "deputyd: %v\n", err)
		return 1
	}
	switch {
	case *lintMode:
		return lint(cfg, fs.Args())
	case *doctorMode:
		return doctor(cfg)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "deputyd: --cpu-profile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "deputyd: --cpu-profile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if err := daemon.Run(context.Background(), cfg, log); err != nil {
		fmt.Fprintf(os.Stderr, "deputyd: %v\n", err)
		return 1
	}
	return 0
}
