// Package identity tells the daemon who is calling: the kernel's peer
// credentials of the Unix socket connection (SO_PEERCRED, and a pidfd from
// SO_PEERPIDFD where the kernel has it), read once in the gRPC transport
// handshake. The client claims nothing.
package identity

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Peer is the kernel's account of the process at the other end.
type Peer struct {
	UID uint32
	GID uint32
	PID int32
	// PidFD refers to the peer process race-free, -1 when the kernel lacks
	// SO_PEERPIDFD. Closed with the connection.
	PidFD int
}

func (p Peer) String() string { return fmt.Sprintf("uid %d (pid %d)", p.UID, p.PID) }

// AuthInfo carries the Peer through gRPC's credentials machinery.
type AuthInfo struct {
	credentials.CommonAuthInfo
	Peer Peer
}

// AuthType implements credentials.AuthInfo.
func (AuthInfo) AuthType() string { return "peercred" }

// ErrNoPeer means a request arrived without peer credentials: a transport
// other than ours, which must never be trusted.
var ErrNoPeer = errors.New("no peer credentials on this connection")

// FromContext returns the caller of a gRPC handler.
func FromContext(ctx context.Context) (Peer, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, ErrNoPeer
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return Peer{}, ErrNoPeer
	}
	return ai.Peer, nil
}
