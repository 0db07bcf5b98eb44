// Package sandboxtest holds the skip helpers of privileged tests. A test
// that needs root or a kernel feature calls one; outside CI it skips with
// the reason, and in CI (CI=true) the skip is a failure, because CI runs as
// root on a kernel that has everything.
package sandboxtest

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run in CI.
func InCI() bool { return os.Getenv("CI") == "true" }

// Skip skips t with reason, or fails it in CI.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("privileged test cannot run in CI: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or, in CI, fails) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (uid %d): it starts the real daemon, switches uids and sets up namespaces and cgroups", os.Geteuid())
	}
}
