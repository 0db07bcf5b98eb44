//go:build !linux

package seccomp

import "fmt"

// Install is Linux-only.
func (f *Filter) Install() error {
	return fmt.Errorf("seccomp install: %w", ErrNotSupported)
}

// Supported is Linux-only.
func Supported() error {
	return fmt.Errorf("seccomp: %w", ErrNotSupported)
}
