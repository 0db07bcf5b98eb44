package daemon

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
	"github.com/deputyhq/deputy/sandbox/cgroup"
	"github.com/deputyhq/deputy/sandbox/landlock"
)

// ProbeLayers finds out which isolation layers this host offers and
// returns the cgroup manager it set up. The error names every required
// layer that is missing (unless cfg opts into weaker enforcement where that
// is possible at all): the daemon then refuses to start.
func ProbeLayers(cfg *Config) ([]*deputyv1.Layer, *cgroup.Manager, error) {
	var layers []*deputyv1.Layer
	var errs []error

	mgr, err := cgroup.New(cfg.CgroupRoot)
	if err != nil {
		layers = append(layers, &deputyv1.Layer{Name: "cgroup", Detail: err.Error(), Consequence: "refuses to start: limits, reliable kill and exec tracking need cgroups"})
		errs = append(errs, fmt.Errorf("cgroups: %w", err))
	} else {
		layers = append(layers, &deputyv1.Layer{Name: "cgroup", Active: true, Detail: mgr.Describe()})
	}

	layers = append(layers, namespaceLayer())

	abi := landlock.ABI()
	ll := &deputyv1.Layer{Name: "landlock", Detail: fmt.Sprintf("ABI %d (need %d)", abi, landlock.RequiredABI)}
	switch err := landlock.Check(); {
	case err == nil:
		ll.Active = true
	case cfg.AllowWeakerEnforcement && abi > 0:
		ll.Active = true
		ll.Consequence = "allowWeakerEnforcement: enforcing only what ABI " + fmt.Sprint(abi) + " offers"
	default:
		ll.Consequence = "refuses to start: filesystem allowlists cannot be enforced (set allowWeakerEnforcement to run with less)"
		errs = append(errs, err)
	}
	layers = append(layers, ll)

	sc := &deputyv1.Layer{Name: "seccomp"}
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		sc.Detail = "kernel without seccomp: " + err.Error()
		sc.Consequence = "refuses to start"
		errs = append(errs, fmt.Errorf("seccomp: %w", err))
	} else {
		sc.Active = true
		sc.Detail = "filter mode, compiled per profile, native ABI only"
	}
	layers = append(layers, sc)

	layers = append(layers, bpfLSMLayer())

	return layers, mgr, errors.Join(errs...)
}

func namespaceLayer() *deputyv1.Layer {
	var missing []string
	for _, ns := range []string{"mnt", "pid", "ipc", "uts", "net"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			missing = append(missing, ns)
		}
	}
	l := &deputyv1.Layer{Name: "namespaces", Active: len(missing) == 0, Detail: "mount, pid, ipc, uts, net (network: none)"}
	if len(missing) > 0 {
		l.Detail = "missing: " + strings.Join(missing, ", ")
		l.Consequence = "execs fail with FAILED_PRECONDITION"
	}
	return l
}

// bpfLSMLayer reports BPF-LSM as an optional extra: Deputy never depends on
// it (it fails to load on many hosts even when listed).
func bpfLSMLayer() *deputyv1.Layer {
	data, err := os.ReadFile("/sys/kernel/security/lsm")
	l := &deputyv1.Layer{Name: "bpf-lsm", Consequence: "not used for enforcement; Landlock, mounts and seccomp enforce"}
	switch {
	case err != nil:
		l.Detail = "securityfs not readable: " + err.Error()
	case strings.Contains(","+strings.TrimSpace(string(data))+",", ",bpf,"):
		l.Detail = "listed in the active LSMs (" + strings.TrimSpace(string(data)) + ")"
	default:
		l.Detail = "not in the active LSMs (" + strings.TrimSpace(string(data)) + ")"
	}
	return l
}
