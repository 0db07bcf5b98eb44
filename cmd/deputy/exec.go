package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

func newExecCmd() *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [flags] -- CMD [ARG...]",
		Short: "Run a command as your agent, confined and audited",
		Long: `exec asks deputyd to run CMD as the agent profile your uid maps to.
stdin is forwarded; stdout and stderr come back as the command writes them.

Exit status: the command's own; 128+N if signal N ended it (a timeout ends it
with SIGKILL: 137); 125 if deputy or the daemon failed; 126 if the request was
denied; 127 if the command was not found.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.argv = args
			return runExec(cmd.Context(), &o)
		},
	}
	f := cmd.Flags()
	// Everything after the command is the command's: never parse its flags.
	f.SetInterspersed(false)
	o.socket = socketFlag(cmd)
	f.StringVar(&o.correlationID, "correlation-id", "", "correlation `id` for the audit trail (default $DEPUTY_CORRELATION_ID, else generated)")
	f.StringVar(&o.justification, "justification", "", "why you run this command (recorded in the audit trail)")
	f.StringVar(&o.cwd, "cwd", "", "working `dir` inside the sandbox (default: the profile's)")
	f.StringArrayVar(&o.env, "env", nil, "pass `KEY=VALUE` (only names the profile's env.pass allows)")
	f.DurationVar(&o.timeout, "timeout", 0, "stop the command after `DUR` (at most the profile's limit)")
	return cmd
}

type execOptions struct {
	socket        *string
	correlationID string
	justification string
	cwd           string
	env           []string
	timeout       time.Duration
	argv          []string
}

func runExec(ctx context.Context, o *execOptions) error {
	socket := socketPath(*o.socket)
	start := &deputyv1.ExecStart{
		Argv:          o.argv,
		Cwd:           o.cwd,
		CorrelationId: o.correlationID,
		Justification: o.justification,
		Env:           map[string]string{},
	}
	if start.CorrelationId == "" {
		start.CorrelationId = os.Getenv("DEPUTY_CORRELATION_ID")
	}
	for _, kv := range o.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return &exitError{code: exitFailed, msg: fmt.Sprintf("--env %q: want KEY=VALUE", kv)}
		}
		start.Env[k] = v
	}
	if o.timeout < 0 {
		return &exitError{code: exitFailed, msg: "--timeout must be positive"}
	}
	if o.timeout > 0 {
		start.Timeout = durationpb.New(o.timeout)
	}

	client, conn, err := dialExit(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Exec(ctx)
	if err != nil {
		return statusExit(err, socket)
	}
	var sendMu sync.Mutex // a gRPC stream allows one sender at a time
	send := func(m *deputyv1.ExecRequest) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	if err := send(&deputyv1.ExecRequest{Kind: &deputyv1.ExecRequest_Start{Start: start}}); err != nil && err != io.EOF {
		return statusExit(err, socket)
	}

	// Forward signals the user sends us to the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	started := false
	for {
		m, err := stream.Recv()
		if err != nil {
			if err == io.EOF {
				return &exitError{code: exitFailed, msg: "daemon closed the stream without an exit status"}
			}
			return statusExit(err, socket)
		}
		switch k := m.Kind.(type) {
		case *deputyv1.ExecResponse_Started:
			if !started {
				started = true
				go forwardStdin(send)
				go forwardSignals(sigs, send)
			}
		case *deputyv1.ExecResponse_Stdout:
			os.Stdout.Write(k.Stdout)
		case *deputyv1.ExecResponse_Stderr:
			os.Stderr.Write(k.Stderr)
		case *deputyv1.ExecResponse_Exited:
			return exitStatus(k.Exited)
		}
	}
}

func forwardStdin(send func(*deputyv1.ExecRequest) error) {
	buf := make([]byte, 32<<10)
	for {
		n, err := os.Stdin.Read(buf)
		if n > 0 {
			if send(&deputyv1.ExecRequest{Kind: &deputyv1.ExecRequest_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
				return
			}
		}
		if err != nil {
			_ = send(&deputyv1.ExecRequest{Kind: &deputyv1.ExecRequest_StdinClose{StdinClose: &deputyv1.StdinClose{}}})
			return
		}
	}
}

func forwardSignals(sigs <-chan os.Signal, send func(*deputyv1.ExecRequest) error) {
	for s := range sigs {
		n := int32(s.(syscall.Signal))
		if send(&deputyv1.ExecRequest{Kind: &deputyv1.ExecRequest_Signal{Signal: &deputyv1.Signal{Number: n}}}) != nil {
			return
		}
	}
}

// exitStatus maps the command's end to deputy's exit status, saying on
// stderr why when the daemon stopped it.
func exitStatus(e *deputyv1.Exited) error {
	var notes []string
	if e.GetTimedOut() {
		notes = append(notes, "command timed out ("+e.GetReason()+")")
	}
	if e.GetOomKilled() {
		notes = append(notes, "command was OOM-killed: it hit its memory limit")
	}
	if e.GetOutputTruncated() {
		notes = append(notes, "command stopped: "+e.GetReason())
	}
	if e.GetAuditLost() > 0 {
		notes = append(notes, fmt.Sprintf("warning: audit trail incomplete, %d events lost", e.GetAuditLost()))
	}
	if len(notes) == 0 && e.GetReason() != "" {
		notes = append(notes, "command stopped: "+e.GetReason())
	}
	msg := strings.Join(notes, "; ")
	switch {
	case e.GetSignal() > 0:
		return &exitError{code: 128 + int(e.GetSignal()), msg: msg}
	case e.GetExitCode() >= 0:
		if e.GetExitCode() == 0 && msg == "" {
			return nil
		}
		return &exitError{code: int(e.GetExitCode()), msg: msg}
	}
	return &exitError{code: exitFailed, msg: "command ended without a status"}
}
