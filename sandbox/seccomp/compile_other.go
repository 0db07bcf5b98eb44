//go:build !linux || !cgo

package seccomp

import "fmt"

// Compile needs libseccomp through cgo on Linux; elsewhere it reports ErrNotSupported after checking p, so that
// profile validation still runs.
func Compile(p Policy) (*Filter, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("seccomp compile: %w", ErrNotSupported)
}
