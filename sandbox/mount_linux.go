package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setupMounts builds the exec's mount namespace. The namespace was created
// by clone, so nothing here is visible on the host.
func setupMounts(m *Mounts) error {
	// Stop propagation both ways first: without this, a shared root mount
	// would copy every mount below into the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", os.NewSyscallError("mount", err))
	}
	// Protected paths first, while the host's tree is still what we see:
	// one under /tmp is then covered by the private /tmp, as it should be.
	for _, p := range m.ReadOnly {
		if err := bindReadOnly(p); err != nil {
			return err
		}
	}
	// Private, size-limited scratch space. /dev/shm too: otherwise "move to
	// another filesystem" would land in the host's shared memory.
	if m.TmpBytes > 0 {
		opts := "mode=1777,size=" + strconv.FormatInt(m.TmpBytes, 10)
		for _, dir := range []string{"/tmp", "/dev/shm"} {
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
				return fmt.Errorf("mount tmpfs on %s: %w", dir, os.NewSyscallError("mount", err))
			}
		}
	}
	// A /proc that matches the new pid namespace: the agent sees only its
	// own processes and no host process's /proc/<pid>/root or fd links.
	if m.Proc {
		if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mount proc on /proc: %w", os.NewSyscallError("mount", err))
		}
	}
	// Hidden paths go last so that they also cover anything inside a
	// read-only tree.
	for _, p := range m.Hidden {
		if err := hide(p); err != nil {
			return err
		}
	}
	return nil
}

// bindReadOnly makes p and every mount below it read-only, nosuid and nodev
// in this namespace. mount_setattr with AT_RECURSIVE covers submounts
// atomically, which a per-mount MS_REMOUNT loop would race with.
func bindReadOnly(p string) error {
	// Fail closed. A missing protected path could be created by an agent
	// with write access to its parent (the daemon creates them at start);
	// a symlink would make the mount protect whatever it points to.
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("protected path %s: %w", p, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("protected path %s is a symlink; protect its target instead", p)
	}
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", p, os.NewSyscallError("mount", err))
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(unix.AT_FDCWD, p, unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW, &attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", p, os.NewSyscallError("mount_setattr", err))
	}
	return nil
}

// hide covers p: a directory with an empty read-only tmpfs, anything else
// (a file, a socket such as /dev/log) with /dev/null. Symlinks are followed,
// so the target is what gets covered.
func hide(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hide %s: %w", p, err)
	}
	if fi.IsDir() {
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=000"); err != nil {
			return fmt.Errorf("hide %s: %w", p, os.NewSyscallError("mount", err))
		}
		return nil
	}
	if err := unix.Mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("hide %s: %w", p, os.NewSyscallError("mount", err))
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, &attr); err != nil {
		return fmt.Errorf("hide %s read-only: %w", p, os.NewSyscallError("mount_setattr", err))
	}
	return nil
}
