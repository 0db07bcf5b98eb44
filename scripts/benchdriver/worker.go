package main

// The worker is the part of the driver that talks to deputyd as the
// benchmark's peer uid: the driver (root) re-executes itself with that
// uid's credentials, and the worker prints its measurements as JSON.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"
)

// latencyReport is the worker's answer in latency mode.
type latencyReport struct {
	Samples     []time.Duration `json:"samples_ns"`
	AuditEvents uint64          `json:"audit_events"`
	AuditLost   uint64          `json:"audit_lost"`
}

// throughputReport is the worker's answer in throughput mode.
type throughputReport struct {
	Execs       int             `json:"execs"`
	Errors      int             `json:"errors"`
	ErrorSample []string        `json:"error_sample,omitempty"`
	Elapsed     time.Duration   `json:"elapsed_ns"`
	Samples     []time.Duration `json:"samples_ns"`
	AuditLost   uint64          `json:"audit_lost"`
}

func workerMain(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	socket := fs.String("socket", "", "daemon socket")
	mode := fs.String("mode", "", "latency, throughput or run")
	n := fs.Int("n", 0, "latency: measured execs")
	warmup := fs.Int("warmup", 0, "latency: unmeasured execs first")
	clients := fs.Int("clients", 8, "throughput: concurrent clients, one connection each")
	duration := fs.Duration("duration", 0, "throughput: how long")
	cwd := fs.String("cwd", "", "run: working directory in the sandbox")
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return fmt.Errorf("worker: no command")
	}
	ctx := context.Background()
	var out any
	switch *mode {
	case "latency":
		c, conn, err := dial(*socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		rep := &latencyReport{}
		for i := range *warmup + *n {
			r, err := runExec(ctx, c, argv, "")
			if err != nil {
				return fmt.Errorf("exec %d of %v: %w", i, argv, err)
			}
			if !r.ok() {
				return fmt.Errorf("exec %d of %v: %s", i, argv, r.describe())
			}
			rep.AuditEvents += r.AuditEvents
			rep.AuditLost += r.AuditLost
			if i >= *warmup {
				rep.Samples = append(rep.Samples, r.Wall)
			}
		}
		out = rep
	case "throughput":
		rep, err := throughput(ctx, *socket, argv, *clients, *duration)
		if err != nil {
			return err
		}
		out = rep
	case "run":
		c, conn, err := dial(*socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		r, err := runExec(ctx, c, argv, *cwd)
		if err != nil {
			return fmt.Errorf("exec %v: %w", argv, err)
		}
		out = r
	default:
		return fmt.Errorf("worker: unknown mode %q", *mode)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// throughput runs argv back to back from clients goroutines, each on its
// own connection, until d has passed.
func throughput(ctx context.Context, socket string, argv []string, clients int, d time.Duration) (*throughputReport, error) {
	rep := &throughputReport{}
	var mu sync.Mutex
	fail := func(msg string) {
		rep.Errors++
		if len(rep.ErrorSample) < 5 {
			rep.ErrorSample = append(rep.ErrorSample, msg)
		}
	}
	began := time.Now()
	deadline := began.Add(d)
	var wg sync.WaitGroup
	for range clients {
		c, conn, err := dial(socket)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		wg.Go(func() {
			for time.Now().Before(deadline) {
				r, err := runExec(ctx, c, argv, "")
				mu.Lock()
				switch {
				case err != nil:
					fail(err.Error())
				case !r.ok():
					rep.AuditLost += r.AuditLost
					fail(r.describe())
				default:
					rep.Execs++
					rep.AuditLost += r.AuditLost
					rep.Samples = append(rep.Samples, r.Wall)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	rep.Elapsed = time.Since(began)
	return rep, nil
}
