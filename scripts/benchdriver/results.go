package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything the run measured, as written to the JSON file.
type results struct {
	Started    time.Time                `json:"started"`
	Quick      bool                     `json:"quick"`
	Host       map[string]string        `json:"host"`
	Latency    map[string]*latencyStats `json:"latency_ms"`
	Throughput *throughputStats         `json:"throughput"`
	Audit      auditStats               `json:"audit"`
	Memory     map[string]float64       `json:"memory_mib"`
	Targets    []target                 `json:"targets"`

	order []string // latency keys in the order measured
}

type latencyStats struct {
	What string  `json:"what"`
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

type throughputStats struct {
	Clients     int      `json:"clients"`
	Seconds     float64  `json:"seconds"`
	Execs       int      `json:"execs"`
	Errors      int      `json:"errors"`
	ErrorSample []string `json:"error_sample,omitempty"`
	ExecsPerSec float64  `json:"execs_per_s"`
	P50ms       float64  `json:"p50_ms"`
	P99ms       float64  `json:"p99_ms"`
	// The same clients running bwrap instead, for scale.
	BwrapExecsPerSec float64 `json:"bwrap_execs_per_s"`
	BwrapErrors      int     `json:"bwrap_errors"`
}

type auditStats struct {
	Workloads        map[string]*auditWorkload `json:"workloads"`
	EventsPerSec     float64                   `json:"events_per_s"` // flood, audit on: events / client wall time, median over runs
	LostTotal        uint64                    `json:"lost_total"`   // every exec on the audit-on daemon
	LostBy           map[string]uint64         `json:"lost_by"`
	LogBytesPerEvent float64                   `json:"log_bytes_per_event"` // audit log growth during the floods / their events
	FloodNativeMs    float64                   `json:"flood_native_ms"`     // the flood program outside deputy, as root: the host's syscall cost
}

type auditWorkload struct {
	What       string    `json:"what"`
	OnMs       []float64 `json:"on_ms"`
	OffMs      []float64 `json:"off_ms"`
	OnMedian   float64   `json:"on_median_ms"`
	OffMedian  float64   `json:"off_median_ms"`
	Ratio      float64   `json:"ratio"`
	Events     []uint64  `json:"events"`
	Lost       []uint64  `json:"lost"`
	DaemonOnMs []float64 `json:"daemon_duration_on_ms"` // Exited.duration, for comparison with the client's wall time
}

// target is one pass/fail line of the report.
type target struct {
	ID    string  `json:"id"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Cmp   string  `json:"cmp"` // how value must compare with limit: "<=", "<" or ">="
	Unit  string  `json:"unit,omitempty"`
	Pass  bool    `json:"pass"`
}

func newResults(o *options) *results {
	return &results{
		Started: time.Now().UTC(), Quick: o.quick, Host: hostInfo(),
		Latency: map[string]*latencyStats{}, Memory: map[string]float64{},
		Audit: auditStats{Workloads: map[string]*auditWorkload{}},
	}
}

func (r *results) latency(key, what string, samples []time.Duration) {
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	st := &latencyStats{What: what, N: len(s), P50: ms(percentile(s, 50)), P99: ms(percentile(s, 99))}
	if len(s) > 0 {
		st.Mean, st.Min, st.Max = ms(sum/time.Duration(len(s))), ms(s[0]), ms(s[len(s)-1])
	}
	r.Latency[key] = st
	r.order = append(r.order, key)
}

func (r *results) throughput(clients int, rep throughputReport) {
	s := slices.Clone(rep.Samples)
	slices.Sort(s)
	r.Throughput = &throughputStats{
		Clients: clients, Seconds: rep.Elapsed.Seconds(), Execs: rep.Execs, Errors: rep.Errors,
		ErrorSample: rep.ErrorSample, ExecsPerSec: float64(rep.Execs) / rep.Elapsed.Seconds(),
		P50ms: ms(percentile(s, 50)), P99ms: ms(percentile(s, 99)),
	}
}

func (r *results) auditWorkload(key, what string, on, off []*execResult) {
	w := &auditWorkload{What: what}
	var onW, offW []time.Duration
	var rates []float64
	for _, x := range on {
		onW = append(onW, x.Wall)
		w.OnMs = append(w.OnMs, ms(x.Wall))
		w.DaemonOnMs = append(w.DaemonOnMs, ms(x.Duration))
		w.Events = append(w.Events, x.AuditEvents)
		w.Lost = append(w.Lost, x.AuditLost)
		rates = append(rates, float64(x.AuditEvents)/x.Wall.Seconds())
	}
	for _, x := range off {
		offW = append(offW, x.Wall)
		w.OffMs = append(w.OffMs, ms(x.Wall))
	}
	w.OnMedian, w.OffMedian = ms(median(onW)), ms(median(offW))
	if w.OffMedian > 0 {
		w.Ratio = w.OnMedian / w.OffMedian
	}
	r.Audit.Workloads[key] = w
	if key == "flood" && len(rates) > 0 {
		slices.Sort(rates)
		r.Audit.EventsPerSec = rates[len(rates)/2]
	}
}

// evaluate turns the figures into the targets.
func (r *results) evaluate() {
	add := func(id string, value float64, cmp string, limit float64, unit string) {
		t := target{ID: id, Value: value, Limit: limit, Cmp: cmp, Unit: unit}
		switch cmp {
		case "<=":
			t.Pass = value <= limit
		case "<":
			t.Pass = value < limit
		case ">=":
			t.Pass = value >= limit
		}
		r.Targets = append(r.Targets, t)
	}
	ratio := func(a, b string) float64 {
		if r.Latency[b].P50 == 0 {
			return 0
		}
		return r.Latency[a].P50 / r.Latency[b].P50
	}
	add("exec_api_p50_vs_bwrap", ratio("exec_api", "bwrap"), "<=", 1.0, "x")
	add("exec_cli_p50_vs_sudo", ratio("exec_cli", "sudo"), "<=", 1.0, "x")
	add("throughput_execs_per_s", r.Throughput.ExecsPerSec, ">=", 200, "execs/s")
	add("throughput_errors", float64(r.Throughput.Errors), "<=", 0, "errors")
	add("audit_overhead_flood", r.Audit.Workloads["flood"].Ratio, "<=", 2.0, "x")
	add("audit_overhead_churn", r.Audit.Workloads["churn"].Ratio, "<=", 2.0, "x")
	add("audit_overhead_real", r.Audit.Workloads["real"].Ratio, "<=", 1.1, "x")
	add("audit_events_per_s", r.Audit.EventsPerSec, ">=", 500000, "events/s")
	add("audit_lost_events", float64(r.Audit.LostTotal), "<=", 0, "events")
	add("rss_idle_mib", r.Memory["rss_idle_on_mib"], "<", 40, "MiB")
	add("rss_after_load_mib", r.Memory["rss_after_load_mib"], "<", 100, "MiB")
}

func (r *results) print(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	f := func(v float64) string { return fmt.Sprintf("%.3f", v) }
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(out, "\ndeputy benchmark (%s run), kernel %s, %s CPUs, load %s\n\n", mode, r.Host["kernel"], r.Host["cpus"], r.Host["loadavg"])
	row("figure", "p50", "p99", "ratio / notes")
	row("------", "---", "---", "-------------")
	api, bwrap, cli, sudo := r.Latency["exec_api"], r.Latency["bwrap"], r.Latency["exec_cli"], r.Latency["sudo"]
	for _, k := range r.order {
		l := r.Latency[k]
		note := fmt.Sprintf("ms, n=%d", l.N)
		switch k {
		case "exec_api":
			note += fmt.Sprintf("; p50 %.2fx bwrap", api.P50/bwrap.P50)
		case "exec_api_audit_off":
			note += fmt.Sprintf("; p50 %.2fx bwrap; audit on/off %.2fx", l.P50/bwrap.P50, api.P50/l.P50)
		case "exec_cli":
			note += fmt.Sprintf("; p50 %.2fx sudo", cli.P50/sudo.P50)
		}
		row("latency "+k, f(l.P50), f(l.P99), note)
	}
	t := r.Throughput
	row(fmt.Sprintf("throughput, %d clients", t.Clients), f(t.P50ms), f(t.P99ms), fmt.Sprintf("ms per exec; %.1f execs/s, %d errors in %.1fs; bwrap, same clients: %.1f execs/s (%.2fx), %d errors",
		t.ExecsPerSec, t.Errors, t.Seconds, t.BwrapExecsPerSec, t.ExecsPerSec/t.BwrapExecsPerSec, t.BwrapErrors))
	for _, k := range []string{"flood", "churn", "real"} {
		w := r.Audit.Workloads[k]
		note := fmt.Sprintf("median ms audit on; off %.1f ms; on/off %.2fx; events %v; lost %v", w.OffMedian, w.Ratio, w.Events, w.Lost)
		if k == "flood" {
			note += fmt.Sprintf("; outside deputy %.1f ms", r.Audit.FloodNativeMs)
		}
		row("audit "+k, f(w.OnMedian), "", note)
	}
	row("audit events/s (flood)", fmt.Sprintf("%.0f", r.Audit.EventsPerSec), "", fmt.Sprintf("lost in all audit-on execs: %d; log %.1f bytes/event", r.Audit.LostTotal, r.Audit.LogBytesPerEvent))
	m := r.Memory
	row("deputyd RSS idle", fmt.Sprintf("%.1f", m["rss_idle_on_mib"]), "", fmt.Sprintf("MiB (anon %.1f, file %.1f, shmem %.1f); audit-off daemon %.1f",
		m["rss_idle_on_anon_mib"], m["rss_idle_on_file_mib"], m["rss_idle_on_shmem_mib"], m["rss_idle_off_mib"]))
	row("deputyd RSS after load", fmt.Sprintf("%.1f", m["rss_after_load_mib"]), "", fmt.Sprintf("MiB (anon %.1f); peak during load %.1f; after the audit runs %.1f",
		m["rss_after_load_anon_mib"], m["rss_peak_during_load_mib"], m["rss_end_on_mib"]))
	tw.Flush()
	fmt.Fprintln(out)
	for _, t := range r.Targets {
		verdict := "PASS"
		if !t.Pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(out, "%s %s value=%s limit=%s\n", verdict, t.ID, num(t.Value), num(t.Limit))
	}
}

// num prints a figure compactly: integers without decimals, small ratios
// with three.
func num(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	if v >= 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func (r *results) write(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Printf("\nresults written to %s\n", path)
	return nil
}
