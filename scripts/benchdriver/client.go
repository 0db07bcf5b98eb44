package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

// dial connects to deputyd the way the CLI does: plain gRPC on the Unix
// socket; the daemon knows us by our kernel credentials.
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

// execResult is one exec through the API as the client saw it.
type execResult struct {
	Wall        time.Duration `json:"wall_ns"`
	Duration    time.Duration `json:"daemon_duration_ns"` // Exited.duration: the daemon's start-to-exit
	ExitCode    int32         `json:"exit_code"`
	Signal      int32         `json:"signal"`
	Reason      string        `json:"reason,omitempty"`
	AuditEvents uint64        `json:"audit_events"`
	AuditLost   uint64        `json:"audit_lost"`
	Output      string        `json:"output,omitempty"` // stdout+stderr, first 4 KiB, for diagnostics
}

func (r *execResult) ok() bool { return r.ExitCode == 0 && r.Signal == 0 }

func (r *execResult) describe() string {
	return fmt.Sprintf("exit %d, signal %d, reason %q, output %q", r.ExitCode, r.Signal, r.Reason, r.Output)
}

// runExec runs argv in cwd ("" for the profile's default) on one Exec
// stream and waits for its exited message. stdin is closed at once.
func runExec(ctx context.Context, c deputyv1.DeputyClient, argv []string, cwd string) (*execResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	began := time.Now()
	stream, err := c.Exec(ctx)
	if err != nil {
		return nil, err
	}
	start := &deputyv1.ExecStart{Argv: argv, Cwd: cwd, CorrelationId: "bench"}
	if err := stream.Send(&deputyv1.ExecRequest{Kind: &deputyv1.ExecRequest_Start{Start: start}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// Half-closing the stream closes the command's stdin.
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	var out []byte
	keep := func(b []byte) {
		if n := 4096 - len(out); n > 0 {
			out = append(out, b[:min(n, len(b))]...)
		}
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("daemon closed the stream without an exited message")
			}
			return nil, err
		}
		switch k := m.Kind.(type) {
		case *deputyv1.ExecResponse_Stdout:
			keep(k.Stdout)
		case *deputyv1.ExecResponse_Stderr:
			keep(k.Stderr)
		case *deputyv1.ExecResponse_Exited:
			e := k.Exited
			return &execResult{
				Wall:        time.Since(began),
				Duration:    e.GetDuration().AsDuration(),
				ExitCode:    e.GetExitCode(),
				Signal:      e.GetSignal(),
				Reason:      e.GetReason(),
				AuditEvents: e.GetAuditEvents(),
				AuditLost:   e.GetAuditLost(),
				Output:      string(out),
			}, nil
		}
	}
}
