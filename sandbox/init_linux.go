package sandbox

import (
	"fmt"
	"os"
)

// InitArg is argv[1] of the re-executed daemon binary in init-helper mode,
// as `runc init` is for runc. init_linux.c recognizes it in an ELF
// constructor and never returns to Go.
const InitArg = "__deputy_init"

// Environment variables that carry the helper's inherited fd numbers (as
// runc's _LIBCONTAINER_*): the spec pipe (read until EOF) and the sync pipe
// (errors back to the daemon; close-on-exec, so EOF means execve happened).
// init_linux.c reads the same names.
const (
	envSpecFD  = "_DEPUTY_SPECFD"
	envSyncFD  = "_DEPUTY_SYNCFD"
	envNetNSFD = "_DEPUTY_NETNSFD" // the agent's network namespace to join, if any
)

// If Go code runs at all in a process started as the helper, the C
// constructor was not linked in: fail loudly rather than run the daemon's
// main with the helper's arguments.
func init() {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		fmt.Fprintln(os.Stderr, "deputy init: the C init helper did not run (binary built without cgo?)")
		os.Exit(255)
	}
}
