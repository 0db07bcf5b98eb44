package sandboxtest

import (
	"testing"

	"github.com/deputyhq/deputy/sandbox/landlock"
)

// RequireLandlockABI skips (or fails in CI) unless the kernel's Landlock ABI
// is at least n.
func RequireLandlockABI(t testing.TB, n int) {
	t.Helper()
	if abi := landlock.ABI(); abi < n {
		Skip(t, "needs Landlock ABI %d, kernel has %d", n, abi)
	}
}
