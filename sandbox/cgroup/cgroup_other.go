//go:build !linux

package cgroup

import (
	"context"
	"fmt"
	"runtime"
)

// Manager is only implemented on Linux.
type Manager struct{}

// Group is only implemented on Linux.
type Group struct{}

// New always fails off Linux.
func New(root string) (*Manager, error) {
	return nil, fmt.Errorf("cgroups on %s: %w", runtime.GOOS, ErrNotSupported)
}

func (m *Manager) Mode() Mode                            { return Unavailable }
func (m *Manager) Describe() string                      { return describe(Unavailable, "", nil, "") }
func (m *Manager) Create(string, Limits) (*Group, error) { return nil, ErrNotSupported }
func (m *Manager) CleanupStale() (int, error)            { return 0, ErrNotSupported }
func (g *Group) FD() int                                 { return -1 }
func (g *Group) ID() uint64                              { return 0 }
func (g *Group) Path() string                            { return "" }
func (g *Group) Name() string                            { return "" }
func (g *Group) Close() error                            { return nil }
func (g *Group) AddProc(int) error                       { return ErrNotSupported }
func (g *Group) Kill() error                             { return ErrNotSupported }
func (g *Group) OOMKilled() (bool, error)                { return false, ErrNotSupported }
func (g *Group) Stats() (Usage, error)                   { return Usage{}, ErrNotSupported }
func (g *Group) Freeze() error                           { return ErrNotSupported }
func (g *Group) Thaw() error                             { return ErrNotSupported }
func (g *Group) Empty() (bool, error)                    { return true, ErrNotSupported }
func (g *Group) WaitEmpty(context.Context) error         { return ErrNotSupported }
func (g *Group) Delete() error                           { return nil }
