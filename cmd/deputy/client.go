package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

const defaultSocket = "/run/deputy/deputy.sock"

// socketFlag adds --socket; the value falls back to $DEPUTY_SOCKET, then
// the default path.
func socketFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("socket", "", "daemon socket `path` (default $DEPUTY_SOCKET, else "+defaultSocket+")")
}

func socketPath(flag string) string {
	if flag != "" {
		return flag
	}
	if env := os.Getenv("DEPUTY_SOCKET"); env != "" {
		return env
	}
	return defaultSocket
}

// dial connects to the daemon. No transport security: the daemon
// authenticates us by our kernel credentials on the Unix socket.
func dial(socket string) (deputyv1.DeputyClient, *grpc.ClientConn, error) {
	abs, err := filepath.Abs(socket)
	if err != nil {
		return nil, nil, err
	}
	conn, err := grpc.NewClient("unix://"+abs,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(8<<20)),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", abs, err)
	}
	return deputyv1.NewDeputyClient(conn), conn, nil
}

// dialExit is dial for commands that cannot work without the daemon: a
// failure is deputy's own (exit 125).
func dialExit(socket string) (deputyv1.DeputyClient, *grpc.ClientConn, error) {
	client, conn, err := dial(socket)
	if err != nil {
		return nil, nil, &exitError{code: exitFailed, msg: err.Error()}
	}
	return client, conn, nil
}

// statusExit turns a daemon refusal into deputy's exit status and message.
func statusExit(err error, socket string) *exitError {
	st, ok := status.FromError(err)
	if !ok {
		return &exitError{code: exitFailed, msg: err.Error()}
	}
	switch st.Code() {
	case codes.PermissionDenied:
		return &exitError{code: exitDenied, msg: "denied: " + st.Message()}
	case codes.NotFound:
		return &exitError{code: exitNotFound, msg: st.Message()}
	case codes.Unavailable:
		return &exitError{code: exitFailed, msg: fmt.Sprintf("daemon unavailable at %s (is deputyd running?): %s", socket, st.Message())}
	default:
		return &exitError{code: exitFailed, msg: fmt.Sprintf("%s: %s", codeName(st.Code()), st.Message())}
	}
}

func codeName(c codes.Code) string {
	switch c {
	case codes.InvalidArgument:
		return "invalid request"
	case codes.FailedPrecondition:
		return "sandbox setup failed"
	case codes.ResourceExhausted:
		return "resource exhausted"
	}
	return c.String()
}
