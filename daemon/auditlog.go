package daemon

import (
	"fmt"
	"os"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/defaults"
	"github.com/deputyhq/deputy/profiles"
)

// AuditDir is where the audit log lives under the daemon's state.
func AuditDir(cfg *Config) string { return defaults.AuditDir(cfg.State) }

// openAudit opens the log and records how the previous run ended.
func openAudit(cfg *Config, ls *loadedSet) (*audit.Log, error) {
	l, err := audit.Open(AuditDir(cfg), audit.Options{})
	if err != nil {
		return nil, fmt.Errorf("open audit log in %s: %w", AuditDir(cfg), err)
	}
	rec := l.Recovered()
	if rec.UncleanShutdown {
		err := l.Append(&audit.Record{
			PrincipalType: audit.PrincipalDaemon, PrincipalID: "deputyd", Action: audit.ActionDaemonRestart,
			Result: audit.ResultSuccess, PID: os.Getpid(),
			Details: map[string]any{"reason": "previous run ended without daemon.stop (crash or kill -9)",
				"truncated_bytes": rec.TruncatedBytes, "file": rec.File, "last_seq": rec.LastSeq},
		})
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("record restart: %w", err)
		}
	}
	err = l.Append(&audit.Record{
		PrincipalType: audit.PrincipalDaemon, PrincipalID: "deputyd", Action: audit.ActionDaemonStart,
		Result: audit.ResultSuccess, PID: os.Getpid(),
		Details: map[string]any{"version": defaults.Version, "config": cfg.File, "profiles": profileDigests(ls.set),
			"protected": cfg.Protected()},
	})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("record start: %w", err)
	}
	return l, nil
}

func profileDigests(set *profiles.Set) map[string]string {
	out := map[string]string{}
	for _, p := range set.All() {
		out[p.Name] = p.Digest
	}
	return out
}

// daemonRecord appends a record about the daemon itself.
func (s *Server) daemonRecord(action, result string, details any) {
	err := s.audit.Append(&audit.Record{
		PrincipalType: audit.PrincipalDaemon, PrincipalID: "deputyd", Action: action,
		Result: result, PID: os.Getpid(), Details: details,
	})
	if err != nil {
		s.log.Error("audit append", "action", action, "err", err)
	}
}

// execRecorder stamps one exec's identity on every record it writes.
type execRecorder struct {
	log  *audit.Log
	base audit.Record
}

func (e *execRecorder) append(action, result string, details any) error {
	r := e.base
	r.Action, r.Result, r.Details = action, result, details
	return e.log.Append(&r)
}

// requestDetails is exec.request's details plus why a request was refused.
type requestDetails struct {
	audit.ExecRequestDetails
	Reason string `json:"reason,omitempty"`
}
