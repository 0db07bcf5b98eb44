// Command deputy is the client of deputyd: agents run commands with
// `deputy exec` instead of sudo; admins lint profiles; auditors query the
// log.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses of deputy itself, as env(1) and chroot(1) use them. A
// command's own status passes through unchanged.
const (
	exitFailed   = 125 // deputy or the daemon failed
	exitDenied   = 126 // the daemon refused (policy, permission)
	exitNotFound = 127 // the command does not exist in the sandbox
)

// exitError carries an exit status out of a cobra command.
type exitError struct {
	code int
	msg  string // printed to stderr unless empty
}

func (e *exitError) Error() string { return e.msg }

func main() {
	root := &cobra.Command{
		Use:   "deputy",
		Short: "Run commands as an AI agent's own confined, audited identity",
		Long: `deputy talks to deputyd over its Unix socket. The daemon identifies the
caller by its kernel credentials, maps it to an agent profile, and runs the
command as that agent's own unprivileged uid inside the agent's sandbox.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newExecCmd(), newProfileCmd(), newVersionCmd(), newDoctorCmd(), newAuditCmd())
	root.AddCommand(newAgentsCmd(), newApprovalsCmd(), newApproveCmd(), newDenyCmd(), newPolicyCmd())
	err := root.Execute()
	if err == nil {
		return
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, "deputy: "+ee.msg)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "deputy: "+err.Error())
	os.Exit(exitFailed)
}
