//go:build linux && cgo

package seccomp

import (
	"fmt"
	"io"
	"os"

	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// fallbackNr holds syscalls newer than some libseccomp releases (Debian 12 ships 2.5.4). With a default-ALLOW
// filter a name libseccomp cannot resolve would otherwise be silently allowed, so such names are added by number.
// Syscalls added since Linux 5.1 share one number on every architecture but alpha, so one value serves both.
var fallbackNr = map[libseccomp.ScmpArch]map[string]libseccomp.ScmpSyscall{
	libseccomp.ArchAMD64: {"open_tree_attr": 467},
	libseccomp.ArchARM64: {"open_tree_attr": 467},
}

// Compile builds the default denylist changed by p for the native architecture and exports it as classic BPF.
// It runs in the daemon; the result is installed by the init helper with Install.
func Compile(p Policy) (*Filter, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	arch, err := libseccomp.GetNativeArch()
	if err != nil {
		return nil, fmt.Errorf("seccomp native arch: %w", err)
	}
	// The argument positions below (clone flags in arg0) and the ABI reasoning (x32 shares the x86_64 audit arch)
	// have been checked for these two only; s390, for one, swaps clone's first two arguments.
	if arch != libseccomp.ArchAMD64 && arch != libseccomp.ArchARM64 {
		return nil, fmt.Errorf("seccomp on %s: %w", arch, ErrNotSupported)
	}

	allow := make(map[string]bool, len(p.Allow))
	for _, name := range p.Allow {
		allow[name] = true
	}
	deny := make(map[string]bool, len(p.Deny))
	for _, name := range p.Deny {
		deny[name] = true
	}

	filter, err := libseccomp.NewFilter(libseccomp.ActAllow)
	if err != nil {
		return nil, fmt.Errorf("seccomp new filter: %w", err)
	}
	defer filter.Release()

	// Only the native arch is in the filter, so i386 (int 0x80 on x86_64) and aarch32 syscalls take the bad-arch
	// action, and libseccomp also routes x32 syscalls (native audit arch, nr | 0x40000000) there when x32 is not
	// added. Their numbers differ from the native ones, so a native denylist means nothing to them: kill.
	if err := filter.SetBadArchAction(libseccomp.ActKillProcess); err != nil {
		return nil, fmt.Errorf("seccomp bad-arch action: %w", err)
	}

	for _, e := range defaultDeny {
		if allow[e.Syscall] {
			continue
		}
		// A profile that denies a conditionally denied syscall outright gets only the unconditional rule below,
		// rather than a mix of conditional and unconditional rules on one syscall for libseccomp to reconcile.
		if deny[e.Syscall] && e.rules != nil {
			continue
		}
		if err := addEntry(filter, arch, e.Syscall, e.Action, e.rules); err != nil {
			return nil, fmt.Errorf("seccomp default %s: %w", e.Syscall, err)
		}
	}
	for _, name := range p.Deny {
		if err := addEntry(filter, arch, name, ActionEPERM, nil); err != nil {
			return nil, fmt.Errorf("seccomp deny %s: %w", name, err)
		}
	}

	prog, err := exportBPF(filter)
	if err != nil {
		return nil, err
	}
	if err := checkProgram(prog); err != nil {
		return nil, err
	}
	return &Filter{prog: prog}, nil
}

// addEntry adds one entry's rules. A name that exists only on other architectures (iopl on arm64) has nothing to
// deny here and is skipped; a name no architecture knows is an error.
func addEntry(filter *libseccomp.ScmpFilter, arch libseccomp.ScmpArch, name string, action Action, rules [][]cond) error {
	nr, err := libseccomp.GetSyscallFromName(name)
	if err != nil {
		fb, ok := fallbackNr[arch][name]
		if !ok {
			return fmt.Errorf("unknown syscall %q (libseccomp %s): %w", name, libseccompVersion(), err)
		}
		nr = fb
	}
	// Negative numbers are libseccomp's pseudo-syscalls: names known on some architecture but not this one.
	if nr < 0 {
		return nil
	}
	act := libseccomp.ActErrno.SetReturnCode(int16(unix.EPERM))
	if action == ActionENOSYS {
		act = libseccomp.ActErrno.SetReturnCode(int16(unix.ENOSYS))
	}
	if rules == nil {
		// AddRuleExact: fail rather than let libseccomp rewrite the rule.
		if err := filter.AddRuleExact(nr, act); err != nil {
			return fmt.Errorf("add rule: %w", err)
		}
		return nil
	}
	for _, conds := range rules {
		scmp := make([]libseccomp.ScmpCondition, 0, len(conds))
		for _, c := range conds {
			if c.op != cmpMaskedEq {
				return fmt.Errorf("condition on arg %d: unknown operator %d", c.arg, c.op)
			}
			// libseccomp takes the mask first, then the value (SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, datum)).
			sc, err := libseccomp.MakeCondition(c.arg, libseccomp.CompareMaskedEqual, c.mask, c.value)
			if err != nil {
				return fmt.Errorf("condition on arg %d: %w", c.arg, err)
			}
			scmp = append(scmp, sc)
		}
		if err := filter.AddRuleConditionalExact(nr, act, scmp); err != nil {
			return fmt.Errorf("add conditional rule: %w", err)
		}
	}
	return nil
}

// exportBPF writes the program into a memfd and reads it back. ExportBPFMem needs libseccomp 2.6, which Debian 12
// lacks; a memfd keeps the program off disk and needs no cleanup.
func exportBPF(filter *libseccomp.ScmpFilter) ([]byte, error) {
	if prog, err := filter.ExportBPFMem(); err == nil {
		return prog, nil
	}
	fd, err := unix.MemfdCreate("deputy-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("seccomp export: %w", os.NewSyscallError("memfd_create", err))
	}
	file := os.NewFile(uintptr(fd), "deputy-seccomp")
	defer file.Close()
	if err := filter.ExportBPF(file); err != nil {
		return nil, fmt.Errorf("seccomp export: %w", err)
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seccomp export: %w", err)
	}
	prog, err := io.ReadAll(file)
	if err != nil {
		return nil, fmt.Errorf("seccomp export: %w", err)
	}
	return prog, nil
}

func libseccompVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}
