package landlock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	golandlock "github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

const (
	accessRead golandlock.AccessFSSet = ll.AccessFSReadFile | ll.AccessFSReadDir
	accessExec                        = accessRead | ll.AccessFSExecute
	// accessWrite deliberately leaves out MakeChar and MakeBlock (device
	// nodes) and IoctlDev: no agent needs them.
	accessWrite = accessRead | ll.AccessFSWriteFile | ll.AccessFSRemoveDir | ll.AccessFSRemoveFile |
		ll.AccessFSMakeDir | ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo |
		ll.AccessFSMakeSym | ll.AccessFSRefer | ll.AccessFSTruncate
	// accessFileOnly are the rights that apply to a non-directory; the
	// kernel refuses directory rights on a file rule.
	accessFileOnly = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile |
		ll.AccessFSTruncate | ll.AccessFSIoctlDev
)

// ABI returns the kernel's Landlock ABI version, 0 when Landlock is absent
// or disabled.
func ABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0
	}
	return v
}

// Check reports whether the kernel can enforce everything Deputy relies on.
func Check() error {
	if abi := ABI(); abi < RequiredABI {
		return fmt.Errorf("%w: kernel Landlock ABI %d, need %d (refer, truncate, device ioctl, signal scoping)", ErrNotSupported, abi, RequiredABI)
	}
	return nil
}

// RestrictThread enforces base plus r on the calling OS thread and
// everything it executes afterwards. It is irreversible. The caller must
// hold runtime.LockOSThread until it calls execve from this same thread,
// and must have set no_new_privs or hold CAP_SYS_ADMIN: only the init helper
// calls it. Restricting the one thread that executes the command (instead of
// every thread through libpsx) is what go-landlock documents for
// enforce-then-exec, and it costs no cross-thread signalling.
func RestrictThread(r Rules) error {
	if !r.BestEffort {
		if err := Check(); err != nil {
			return err
		}
	}
	cfg := golandlock.V6
	// Network confinement comes from the network namespace; Landlock's TCP
	// rules would only duplicate it for network: host, where the profile
	// asked for the host's network.
	cfg.HandledAccessNet = 0
	if r.BestEffort {
		cfg = cfg.BestEffort()
	}
	var rules []golandlock.Rule
	add := func(paths []string, access golandlock.AccessFSSet) error {
		for _, p := range paths {
			fi, err := os.Stat(p)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return fmt.Errorf("stat %s: %w", p, err)
			}
			a := access
			if !fi.IsDir() {
				a &= accessFileOnly
			}
			rule := golandlock.PathAccess(a, p)
			if a&ll.AccessFSRefer != 0 {
				rule = rule.WithRefer()
			}
			rules = append(rules, rule)
		}
		return nil
	}
	for _, l := range []struct {
		paths  []string
		access golandlock.AccessFSSet
	}{
		{Base.Read, accessRead}, {Base.Write, accessWrite}, {Base.Exec, accessExec},
		{r.Read, accessRead}, {r.Write, accessWrite}, {r.Exec, accessExec},
	} {
		if err := add(l.paths, l.access); err != nil {
			return err
		}
	}
	fd, flags, err := cfg.NewRulesetFD(rules...)
	if err != nil {
		return fmt.Errorf("build landlock ruleset: %w", err)
	}
	if fd < 0 {
		// Best effort on a kernel without Landlock: nothing to enforce.
		return nil
	}
	defer unix.Close(fd)
	if err := ll.LandlockRestrictSelf(fd, flags); err != nil {
		return fmt.Errorf("enforce landlock ruleset: %w", os.NewSyscallError("landlock_restrict_self", err))
	}
	return nil
}
