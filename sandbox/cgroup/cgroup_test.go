package cgroup

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Unavailable: "unavailable", Legacy: "legacy", Hybrid: "hybrid", Unified: "unified", 9: "mode(9)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	v1 := map[string]string{"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids", "cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct"}
	got := describe(Hybrid, "/sys/fs/cgroup/unified", v1, "cgroup.kill")
	want := "hybrid: v1 memory,pids,cpu limits; cgroup2 at /sys/fs/cgroup/unified for ids and cgroup.kill"
	if got != want {
		t.Errorf("describe(hybrid) = %q, want %q", got, want)
	}
	got = describe(Unified, "/sys/fs/cgroup", nil, "cgroup.kill")
	if want := "unified: cgroup2 at /sys/fs/cgroup with memory,pids,cpu limits, ids and cgroup.kill"; got != want {
		t.Errorf("describe(unified) = %q, want %q", got, want)
	}
	if got := describe(Legacy, "", nil, ""); !strings.Contains(got, "not supported") {
		t.Errorf("describe(legacy) = %q", got)
	}
}

func TestValidate(t *testing.T) {
	good := []Limits{{}, {MemoryBytes: 1 << 20, PIDs: 10, CPU: 0.5}}
	for _, l := range good {
		if err := l.Validate(); err != nil {
			t.Errorf("%+v: %v", l, err)
		}
	}
	bad := []Limits{{MemoryBytes: -1}, {PIDs: -1}, {CPU: -0.1}, {CPU: math.NaN()}, {CPU: math.Inf(1)}}
	for _, l := range bad {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v: want error", l)
		}
	}
}

func TestCPUQuota(t *testing.T) {
	for cores, want := range map[float64]int64{1: 100000, 0.5: 50000, 2.25: 225000, 0.001: 1000, 0.0001: 1000, 0.333333: 33334} {
		q, p := cpuQuota(cores)
		if q != want || p != 100000 {
			t.Errorf("cpuQuota(%v) = %d %d, want %d 100000", cores, q, p, want)
		}
	}
}

func TestSettings(t *testing.T) {
	l := Limits{MemoryBytes: 32 << 20, PIDs: 5, CPU: 1.5}
	wantV2 := []setting{
		{file: "memory.max", value: "33554432"},
		{file: "memory.swap.max", value: "0", optional: true},
		{file: "pids.max", value: "5"},
		{file: "cpu.max", value: "150000 100000"},
	}
	if got := v2Settings(l); !reflect.DeepEqual(got, wantV2) {
		t.Errorf("v2Settings = %+v, want %+v", got, wantV2)
	}
	wantV1 := []setting{
		{ctrl: "memory", file: "memory.limit_in_bytes", value: "33554432"},
		{ctrl: "memory", file: "memory.memsw.limit_in_bytes", value: "33554432", optional: true},
		{ctrl: "pids", file: "pids.max", value: "5"},
		{ctrl: "cpu", file: "cpu.cfs_period_us", value: "100000"},
		{ctrl: "cpu", file: "cpu.cfs_quota_us", value: "150000"},
	}
	if got := v1Settings(l); !reflect.DeepEqual(got, wantV1) {
		t.Errorf("v1Settings = %+v, want %+v", got, wantV1)
	}
	if got := v2Settings(Limits{}); len(got) != 0 {
		t.Errorf("v2Settings(unlimited) = %+v, want none", got)
	}
	if got := v1Settings(Limits{}); len(got) != 0 {
		t.Errorf("v1Settings(unlimited) = %+v, want none", got)
	}
}

func TestParseKeyed(t *testing.T) {
	got := parseKeyed([]byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\nbogus\nbad x\n"))
	want := map[string]int64{"low": 0, "high": 0, "max": 3, "oom": 1, "oom_kill": 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseKeyed = %v, want %v", got, want)
	}
}

func TestParseV1Mounts(t *testing.T) {
	mi := `25 1 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup rw shared:9 - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw shared:11 - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/pids rw shared:13 - cgroup cgroup rw,pids
35 30 0:31 / /sys/fs/cgroup/systemd rw shared:14 - cgroup cgroup rw,xattr,name=systemd
36 30 0:32 / /mnt/my\040freezer rw shared:15 - cgroup cgroup rw,freezer
`
	want := map[string]string{
		"cpu":     "/sys/fs/cgroup/cpu,cpuacct",
		"cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
		"memory":  "/sys/fs/cgroup/memory",
		"pids":    "/sys/fs/cgroup/pids",
		"freezer": "/mnt/my freezer",
	}
	if got := parseV1Mounts([]byte(mi)); !reflect.DeepEqual(got, want) {
		t.Errorf("parseV1Mounts = %v, want %v", got, want)
	}
}

func TestNames(t *testing.T) {
	for _, n := range []string{"exec-1", "a.b", "x_y"} {
		if err := validName(n); err != nil {
			t.Errorf("validName(%q): %v", n, err)
		}
	}
	for _, n := range []string{"", ".", "..", "a/b", "cgroup.procs", "a\x00"} {
		if err := validName(n); err == nil {
			t.Errorf("validName(%q): want error", n)
		}
	}
	for _, r := range []string{"deputy", "deputy.slice/execs"} {
		if err := validRoot(r); err != nil {
			t.Errorf("validRoot(%q): %v", r, err)
		}
	}
	for _, r := range []string{"", "/deputy", "deputy/../x", "deputy/", "a//b"} {
		if err := validRoot(r); err == nil {
			t.Errorf("validRoot(%q): want error", r)
		}
	}
}
