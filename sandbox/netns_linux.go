package sandbox

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// NewNetNS creates a network namespace with only a loopback interface, up,
// and returns a file referring to it; the caller's namespace is unchanged.
// The daemon keeps one per agent with network: none and has each exec's
// helper join it: creating and destroying a namespace per exec costs about
// 10 ms of CPU, most of it in the kernel's asynchronous cleanup.
func NewNetNS() (*os.File, error) {
	// unshare and setns act on the calling thread: keep this goroutine on
	// it, and if the thread cannot be put back into the host's namespace,
	// never unlock it, so the Go runtime ends the thread instead of reusing
	// it for other goroutines.
	runtime.LockOSThread()
	host, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open host network namespace: %w", err)
	}
	defer host.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("create network namespace: %w", os.NewSyscallError("unshare", err))
	}
	ns, nsErr := os.Open("/proc/thread-self/ns/net")
	if nsErr == nil {
		if err := loopbackUp(); err != nil {
			ns.Close()
			ns, nsErr = nil, err
		}
	}
	if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
		// Stay locked: this thread is in the wrong namespace for good.
		if ns != nil {
			ns.Close()
		}
		return nil, fmt.Errorf("return to the host network namespace: %w", os.NewSyscallError("setns", err))
	}
	runtime.UnlockOSThread()
	if nsErr != nil {
		return nil, fmt.Errorf("set up network namespace: %w", nsErr)
	}
	return ns, nil
}

// loopbackUp sets IFF_UP on "lo" of the current network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("ifreq lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of lo: %w", os.NewSyscallError("ioctl", err))
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", os.NewSyscallError("ioctl", err))
	}
	return nil
}
