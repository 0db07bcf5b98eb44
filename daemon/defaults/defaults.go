// Package defaults holds deputyd's built-in locations and version, so that
// the deputy CLI can name them without linking the daemon (whose eBPF,
// cgroup and seccomp packages would slow every CLI start).
package defaults

import "path/filepath"

// Version is set at build time (-ldflags "-X github.com/deputyhq/deputy/daemon/defaults.Version=...").
var Version = "0.1.0-dev"

const (
	// Socket is where deputyd serves its API.
	Socket = "/run/deputy/deputy.sock"
	// Profiles is the directory of agent profiles.
	Profiles = "/etc/deputy/profiles"
	// State holds the audit log and the rate-limit state.
	State = "/var/lib/deputy"
)

// AuditDir is where the audit log of a daemon with state directory state lives.
func AuditDir(state string) string { return filepath.Join(state, "audit") }
