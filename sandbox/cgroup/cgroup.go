// Package cgroup places each exec in its own cgroup and enforces its memory, pids and CPU limits.
//
// It supports two host layouts, detected once by New with containerd/cgroups/v3's Mode:
//
//   - Unified (pure cgroup v2, the common production case): one group per exec under
//     /sys/fs/cgroup/<root>/<name> carries the limits, the id, cgroup.kill and cgroup.freeze.
//   - Hybrid (v1 controllers plus a controller-less cgroup2 mount at /sys/fs/cgroup/unified):
//     the cgroup2 group gives the exec its id (for eBPF), CLONE_INTO_CGROUP placement,
//     cgroup.kill and cgroup.freeze; v1 groups under /sys/fs/cgroup/{memory,pids,cpu,...}
//     carry the limits and the process is moved into them by AddProc before it runs user code.
//
// Legacy hosts (v1 without any cgroup2 mount) have no way to clone a process straight into
// a group or to read a cgroup id, so New refuses them with ErrNotSupported.
//
// The cgroup files are written directly rather than through the cgroup1/cgroup2 subpackages:
// those pull in runtime-spec, containerd/log, go-systemd and godbus, and the few files used
// here are stable kernel ABI.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrNotSupported reports that the host's cgroup setup cannot give the guarantees this
// package promises (a missing hierarchy, controller or kernel feature).
var ErrNotSupported = errors.New("cgroups not supported")

// Mode is the cgroup layout of the host.
type Mode int

const (
	// Unavailable means no cgroup filesystem was found.
	Unavailable Mode = iota
	// Legacy is cgroup v1 only; unsupported.
	Legacy
	// Hybrid is cgroup v1 controllers with a controller-less cgroup2 mount.
	Hybrid
	// Unified is pure cgroup v2.
	Unified
)

func (m Mode) String() string {
	switch m {
	case Unavailable:
		return "unavailable"
	case Legacy:
		return "legacy"
	case Hybrid:
		return "hybrid"
	case Unified:
		return "unified"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Limits are the resource limits of one exec. A zero field means unlimited.
type Limits struct {
	// MemoryBytes caps memory; swap is capped too so that it cannot be used to dodge the limit.
	MemoryBytes int64
	// PIDs caps the number of tasks (processes and threads) in the group.
	PIDs int64
	// CPU caps CPU time in cores (1.5 = one and a half cores), enforced by CFS bandwidth.
	CPU float64
}

// Validate checks that every limit is zero or positive and finite.
func (l Limits) Validate() error {
	if l.MemoryBytes < 0 {
		return fmt.Errorf("memory limit %d: must not be negative", l.MemoryBytes)
	}
	if l.PIDs < 0 {
		return fmt.Errorf("pids limit %d: must not be negative", l.PIDs)
	}
	if l.CPU < 0 || math.IsNaN(l.CPU) || math.IsInf(l.CPU, 0) {
		return fmt.Errorf("cpu limit %v: must be a finite number of cores, 0 or more", l.CPU)
	}
	return nil
}

// Usage is what an exec consumed, best effort: fields the kernel does not report stay zero.
type Usage struct {
	MemoryPeakBytes int64
	CPUUser         time.Duration
	CPUSystem       time.Duration
}

const (
	// cpuPeriodUs is the CFS period, the kernel default: long enough to keep the scheduling
	// overhead low, short enough that a throttled exec stalls for at most 100ms at a time.
	cpuPeriodUs = 100000
	// cpuMinQuotaUs is the smallest quota the kernel accepts (1ms).
	cpuMinQuotaUs = 1000
)

// cpuQuota converts cores into a CFS quota and period in microseconds. The quota is rounded
// up so that a small limit never becomes a zero (and rejected) quota.
func cpuQuota(cores float64) (quotaUs, periodUs int64) {
	q := int64(math.Ceil(cores * cpuPeriodUs))
	if q < cpuMinQuotaUs {
		q = cpuMinQuotaUs
	}
	return q, cpuPeriodUs
}

// setting is one value written into one cgroup file when a group is created.
type setting struct {
	ctrl  string // v1 controller whose group holds the file; "" for the cgroup2 group
	file  string
	value string
	// optional files are skipped when the kernel lacks them (swap accounting off,
	// CONFIG_MEMCG_SWAP unset): the main limit still holds, swap use just is not capped.
	optional bool
}

// v2Settings lists the cgroup2 files that carry l, in the order they must be written.
func v2Settings(l Limits) []setting {
	var s []setting
	if l.MemoryBytes > 0 {
		s = append(s,
			setting{file: "memory.max", value: strconv.FormatInt(l.MemoryBytes, 10)},
			// With swap available, memory.max alone only limits RAM: the exec could keep
			// growing into swap.
			setting{file: "memory.swap.max", value: "0", optional: true})
	}
	if l.PIDs > 0 {
		s = append(s, setting{file: "pids.max", value: strconv.FormatInt(l.PIDs, 10)})
	}
	if l.CPU > 0 {
		q, p := cpuQuota(l.CPU)
		s = append(s, setting{file: "cpu.max", value: fmt.Sprintf("%d %d", q, p)})
	}
	return s
}

// v1Settings lists the cgroup v1 files that carry l, in the order they must be written.
func v1Settings(l Limits) []setting {
	var s []setting
	if l.MemoryBytes > 0 {
		v := strconv.FormatInt(l.MemoryBytes, 10)
		s = append(s,
			// memory.memsw.limit_in_bytes must stay >= memory.limit_in_bytes, so the RAM
			// limit is lowered first; equal values leave no room for swap.
			setting{ctrl: "memory", file: "memory.limit_in_bytes", value: v},
			setting{ctrl: "memory", file: "memory.memsw.limit_in_bytes", value: v, optional: true})
	}
	if l.PIDs > 0 {
		s = append(s, setting{ctrl: "pids", file: "pids.max", value: strconv.FormatInt(l.PIDs, 10)})
	}
	if l.CPU > 0 {
		q, p := cpuQuota(l.CPU)
		// The period goes first: the kernel checks the quota against the current period.
		s = append(s,
			setting{ctrl: "cpu", file: "cpu.cfs_period_us", value: strconv.FormatInt(p, 10)},
			setting{ctrl: "cpu", file: "cpu.cfs_quota_us", value: strconv.FormatInt(q, 10)})
	}
	return s
}

// v1LimitControllers are the v1 hierarchies a hybrid exec group must join for its limits.
var v1LimitControllers = []string{"memory", "pids", "cpu"}

// describe is Manager.Describe, kept pure for tests.
func describe(mode Mode, v2Mount string, v1 map[string]string, kill string) string {
	switch mode {
	case Unified:
		return fmt.Sprintf("unified: cgroup2 at %s with memory,pids,cpu limits, ids and %s", v2Mount, kill)
	case Hybrid:
		var ctrls []string
		for _, c := range v1LimitControllers {
			if _, ok := v1[c]; ok {
				ctrls = append(ctrls, c)
			}
		}
		return fmt.Sprintf("hybrid: v1 %s limits; cgroup2 at %s for ids and %s",
			strings.Join(ctrls, ","), v2Mount, kill)
	}
	return mode.String() + ": not supported"
}

// parseKeyed parses "key value" lines (memory.events, cpu.stat, memory.oom_control, pids.events).
func parseKeyed(data []byte) map[string]int64 {
	out := make(map[string]int64)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		out[k] = n
	}
	return out
}

// parseV1Mounts maps each cgroup v1 controller to its mount point, from /proc/self/mountinfo.
// Co-mounted controllers (cpu,cpuacct) map to the same directory.
func parseV1Mounts(mountinfo []byte) map[string]string {
	out := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		p := strings.Fields(post)
		if len(f) < 5 || len(p) < 3 || p[0] != "cgroup" {
			continue
		}
		mnt := unescapeMount(f[4])
		for _, opt := range strings.Split(p[2], ",") {
			if _, seen := out[opt]; !seen && isV1Controller(opt) {
				out[opt] = mnt
			}
		}
	}
	return out
}

func isV1Controller(opt string) bool {
	switch opt {
	case "memory", "pids", "cpu", "cpuacct", "freezer":
		return true
	}
	return false
}

// unescapeMount undoes the octal escapes (\040 for space) of mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// validName checks a group name: one path component, nothing the kernel would treat specially.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00\n") {
		return fmt.Errorf("cgroup name %q: must be a single path component", name)
	}
	if strings.HasPrefix(name, "cgroup.") {
		return fmt.Errorf("cgroup name %q: the cgroup. prefix is reserved by the kernel", name)
	}
	return nil
}

// validRoot checks the root: a relative path of valid names, e.g. "deputy" or "deputy.slice/execs".
func validRoot(root string) error {
	if root == "" || strings.HasPrefix(root, "/") {
		return fmt.Errorf("cgroup root %q: must be a non-empty relative path", root)
	}
	for _, c := range strings.Split(root, "/") {
		if err := validName(c); err != nil {
			return fmt.Errorf("cgroup root %q: %w", root, err)
		}
	}
	return nil
}
