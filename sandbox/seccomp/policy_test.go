package seccomp

import (
	"strings"
	"testing"
)

func TestPolicyCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want string // substring of the error; empty for success
	}{
		{"zero", Policy{}, ""},
		{"deny extra", Policy{Deny: []string{"getpid"}}, ""},
		{"allow default", Policy{Allow: []string{"mount", "ptrace"}}, ""},
		{"allow not default", Policy{Allow: []string{"getpid"}}, `"getpid" is not in the default denylist`},
		{"empty name", Policy{Deny: []string{""}}, "empty syscall name"},
		{"deny twice", Policy{Deny: []string{"getpid", "getpid"}}, `"getpid" listed twice`},
		{"both", Policy{Deny: []string{"mount"}, Allow: []string{"mount"}}, `"mount" is both denied and allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("check: got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaultDenyDocumented(t *testing.T) {
	required := []string{
		"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "open_tree_attr", "fsopen", "fsconfig",
		"fsmount", "fspick", "mount_setattr", "unshare", "setns", "bpf", "perf_event_open", "keyctl", "add_key",
		"request_key", "ptrace", "process_vm_readv", "process_vm_writev", "kexec_load", "kexec_file_load",
		"init_module", "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at", "userfaultfd",
		"io_uring_setup", "io_uring_enter", "io_uring_register", "personality", "swapon", "swapoff", "reboot", "acct",
		"syslog", "lookup_dcookie", "quotactl", "quotactl_fd", "iopl", "ioperm", "vhangup", "nfsservctl",
		"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
		"fanotify_init", "pidfd_getfd", "kcmp", "clone", "clone3", "ioctl",
	}
	entries := DefaultDeny()
	names := map[string]bool{}
	unconditional := map[string]bool{}
	for _, e := range entries {
		names[e.Syscall] = true
		if e.Why == "" {
			t.Errorf("%s: no reason documented", e.Syscall)
		}
		if e.Action != ActionEPERM && e.Action != ActionENOSYS {
			t.Errorf("%s: action %v", e.Syscall, e.Action)
		}
		if (e.When == "") != (e.rules == nil) {
			t.Errorf("%s: When %q does not match its %d rules", e.Syscall, e.When, len(e.rules))
		}
		if e.rules == nil {
			if unconditional[e.Syscall] {
				t.Errorf("%s: listed twice", e.Syscall)
			}
			unconditional[e.Syscall] = true
		}
	}
	for _, name := range required {
		if !names[name] {
			t.Errorf("%s: missing from the default denylist", name)
		}
	}

	// DefaultDeny hands out copies: changing them must not change the filter.
	entries[0].Syscall = "changed"
	if DefaultDeny()[0].Syscall == "changed" {
		t.Fatal("DefaultDeny returned the package's own table")
	}
}

func TestFilterFromBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"partial instruction", make([]byte, 12), false},
		{"too long", make([]byte, (maxInsns+1)*insnSize), false},
		{"one instruction", make([]byte, insnSize), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := FilterFromBytes(tc.b)
			if tc.ok != (err == nil) {
				t.Fatalf("FilterFromBytes(%d bytes): %v", len(tc.b), err)
			}
			if err == nil && len(f.Bytes()) != len(tc.b) {
				t.Fatalf("Bytes: %d bytes, want %d", len(f.Bytes()), len(tc.b))
			}
		})
	}
}

func TestPersonalityRules(t *testing.T) {
	// The rules must match exactly the 32-bit personas other than 0 and 0xffffffff, whatever the upper bits.
	match := func(v uint64) bool {
		for _, r := range personalityRules() {
			if v&r[0].mask == r[0].value {
				return true
			}
		}
		return false
	}
	for _, v := range []uint64{0, 0xffffffff, 1 << 32, 0xdead_0000_0000, 0x1_ffff_ffff} {
		if match(v) {
			t.Errorf("persona %#x denied, want allowed", v)
		}
	}
	for i := range uint(32) {
		for _, v := range []uint64{1 << i, 0xffffffff &^ (1 << i), 1<<i | 0xabc0_0000_0000} {
			if !match(v) {
				t.Errorf("persona %#x allowed, want denied", v)
			}
		}
	}
}
