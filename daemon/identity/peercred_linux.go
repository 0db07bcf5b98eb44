package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
)

// Credentials returns gRPC server transport credentials that read the
// peer's credentials from each Unix socket connection. TLS is pointless on
// a local socket; the kernel's word is the authentication.
func Credentials() credentials.TransportCredentials { return peerCreds{} }

type peerCreds struct{}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("peer credentials: %T is not a Unix socket", conn)
	}
	p, err := Read(uc)
	if err != nil {
		return nil, nil, err
	}
	return &pidfdConn{Conn: conn, pidfd: p.PidFD}, AuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, Peer: p}, nil
}

func (peerCreds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return conn, AuthInfo{}, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (c peerCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName implements a deprecated interface method.
func (peerCreds) OverrideServerName(string) error { return nil }

// Read asks the kernel who is at the other end of uc. The credentials are
// those of the process that connect()ed, captured at connect time, so a
// client cannot pass the socket to a more privileged process to borrow its
// identity after the fact, nor vice versa.
func Read(uc *net.UnixConn) (Peer, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred   *unix.Ucred
		pidfd  = -1
		sysErr error
	)
	ctrlErr := raw.Control(func(fd uintptr) {
		cred, sysErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if sysErr != nil {
			return
		}
		// SO_PEERPIDFD (Linux 6.5+): a pidfd for the peer; absent on older
		// kernels, which is fine.
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			pidfd = v
		}
	})
	if ctrlErr != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", ctrlErr)
	}
	if sysErr != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", os.NewSyscallError("getsockopt SO_PEERCRED", sysErr))
	}
	return Peer{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid, PidFD: pidfd}, nil
}

// pidfdConn closes the peer's pidfd with the connection.
type pidfdConn struct {
	net.Conn
	pidfd int
}

func (c *pidfdConn) Close() error {
	err := c.Conn.Close()
	if c.pidfd >= 0 {
		if cerr := unix.Close(c.pidfd); cerr != nil && !errors.Is(cerr, unix.EBADF) {
			err = errors.Join(err, cerr)
		}
		c.pidfd = -1
	}
	return err
}
