// Package audit is Deputy's append-only, hash-chained audit log: the writer the daemon and the eBPF consumer append
// to, and the readers behind `deputy audit` (verify, query, tail, replay).
//
// On disk the log is a directory of JSON-lines files named audit-000001.log, audit-000002.log, ... Each line is one
// Record. Its members are written in a fixed order with no insignificant whitespace, and "prev_hash" and "hash" always
// come last:
//
//	{"seq":1,"timestamp":"...",...,"prev_hash":"<64 hex>","hash":"<64 hex>"}
//
// The canonical form of a record is its line without the trailing newline and with the ,"hash":"..." member removed,
// which is exactly the record encoded with an empty (omitted) hash. Then
//
//	hash = hex(sha256(prev_hash || canonical))
//
// where prev_hash is the 64 ASCII hex digits of the previous record's hash (64 zeros for seq 1). The chain runs across
// file boundaries. Because the hash covers the bytes as written, an external verifier needs no JSON re-encoding: strip
// the hash member from the line and hash the rest.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// Principal types.
const (
	PrincipalAgent    = "agent"
	PrincipalDaemon   = "daemon"
	PrincipalAuditor  = "auditor"
	PrincipalApprover = "approver"
)

// Actions. Producers may add others; readers must tolerate unknown actions.
const (
	ActionSyscall       = "syscall"
	ActionExecRequest   = "exec.request"
	ActionExecStart     = "exec.start"
	ActionExecOutput    = "exec.output"
	ActionExecExit      = "exec.exit"
	ActionDenied        = "denied"
	ActionLost          = "lost"
	ActionProcessFork   = "process.fork"
	ActionProcessExec   = "process.exec"
	ActionProcessExit   = "process.exit"
	ActionDaemonStart   = "daemon.start"
	ActionDaemonStop    = "daemon.stop"
	ActionDaemonRestart = "daemon.restart"
	ActionDaemonReload  = "daemon.reload"
)

// Results.
const (
	ResultSuccess = "success"
	ResultError   = "error"
	ResultDenied  = "denied"
)

// ZeroHash is the prev_hash of the first record in a log.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Record is one audit log entry. The JSON names are a stable, documented format: `deputy audit --json` prints one
// Record per line exactly as stored.
type Record struct {
	Seq           uint64    `json:"seq"`
	Timestamp     time.Time `json:"timestamp"`
	PrincipalType string    `json:"principal_type,omitempty"`
	PrincipalID   string    `json:"principal_id,omitempty"`
	UID           uint32    `json:"uid"`
	ExecID        string    `json:"exec_id,omitempty"`
	CorrelationID string    `json:"correlation_id,omitempty"`
	PID           int       `json:"pid,omitempty"`
	PPID          int       `json:"ppid,omitempty"`
	// TID is the thread of a syscall record when it differs from PID.
	TID      int      `json:"tid,omitempty"`
	Comm     string   `json:"comm,omitempty"`
	Action   string   `json:"action"`
	Syscall  string   `json:"syscall,omitempty"`
	Arch     string   `json:"arch,omitempty"`
	Args     []string `json:"args,omitempty"`
	Resource string   `json:"resource,omitempty"`
	Result   string   `json:"result,omitempty"`
	Ret      int64    `json:"ret,omitempty"`
	Errno    string   `json:"errno,omitempty"`
	// Details holds action-specific fields (see ExecRequestDetails and friends). When appending it may be any value
	// encoding/json can marshal, json.RawMessage included; records read back from disk carry a json.RawMessage.
	Details  any    `json:"details,omitempty"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// DecodeDetails unmarshals r.Details into v.
func (r *Record) DecodeDetails(v any) error {
	var raw []byte
	switch d := r.Details.(type) {
	case nil:
		return errors.New("record has no details")
	case json.RawMessage:
		raw = d
	case []byte:
		raw = d
	default:
		var err error
		if raw, err = json.Marshal(d); err != nil {
			return fmt.Errorf("marshal details: %w", err)
		}
	}
	return json.Unmarshal(raw, v)
}

// MarshalJSON encodes r in the canonical on-disk form, hash included.
func (r Record) MarshalJSON() ([]byte, error) {
	b, err := appendRecordBody(nil, &r, r.PrevHash)
	if err != nil {
		return nil, err
	}
	if r.Hash != "" {
		b = append(b, `,"hash":`...)
		b = appendString(b, r.Hash)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON decodes a record, keeping Details as a json.RawMessage.
func (r *Record) UnmarshalJSON(b []byte) error {
	type plain Record
	var p struct {
		*plain
		Details json.RawMessage `json:"details,omitempty"`
	}
	p.plain = (*plain)(r)
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	if len(p.Details) > 0 && string(p.Details) != "null" {
		r.Details = p.Details
	} else {
		r.Details = nil
	}
	return nil
}

// ExecRequestDetails are the details of an exec.request record.
type ExecRequestDetails struct {
	PeerUID       uint32   `json:"peer_uid"`
	PeerPID       int      `json:"peer_pid"`
	Argv          []string `json:"argv,omitempty"`
	Cwd           string   `json:"cwd,omitempty"`
	EnvNames      []string `json:"env_names,omitempty"`
	Justification string   `json:"justification,omitempty"`
	Profile       string   `json:"profile,omitempty"`
	ProfileDigest string   `json:"profile_digest,omitempty"`
	Decision      string   `json:"decision,omitempty"`
	Rule          string   `json:"rule,omitempty"`
}

// ExecOutputDetails are the details of an exec.output record. Data is base64 in JSON; readers also accept a plain
// string.
type ExecOutputDetails struct {
	Stream string `json:"stream"`
	Data   []byte `json:"data"`
	Offset int64  `json:"offset"`
}

// Rusage is the resource usage reported in exec.exit.
type Rusage struct {
	UserMicros   int64 `json:"user_us,omitempty"`
	SystemMicros int64 `json:"sys_us,omitempty"`
	MaxRSSKiB    int64 `json:"max_rss_kib,omitempty"`
}

// ExecExitDetails are the details of an exec.exit record.
type ExecExitDetails struct {
	ExitCode  int     `json:"exit_code"`
	Signal    string  `json:"signal,omitempty"`
	TimedOut  bool    `json:"timed_out,omitempty"`
	OOMKilled bool    `json:"oom_killed,omitempty"`
	Rusage    *Rusage `json:"rusage,omitempty"`
	Events    uint64  `json:"events,omitempty"`
	Lost      uint64  `json:"lost,omitempty"`
}

// ProcessDetails are the details of process.fork, process.exec and process.exit records; the record's PID and PPID
// name the process.
type ProcessDetails struct {
	Path     string   `json:"path,omitempty"`
	Argv     []string `json:"argv,omitempty"`
	ExitCode *int     `json:"exit_code,omitempty"`
	Signal   string   `json:"signal,omitempty"`
}

// appendRecordBody appends the canonical encoding of r up to, but not including, the closing brace and the hash
// member. prevHash is written as the prev_hash member.
func appendRecordBody(b []byte, r *Record, prevHash string) ([]byte, error) {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"timestamp":"`...)
	b = appendTime(b, r.Timestamp)
	b = append(b, '"')
	b = appendField(b, `,"principal_type":`, r.PrincipalType)
	b = appendField(b, `,"principal_id":`, r.PrincipalID)
	b = append(b, `,"uid":`...)
	b = strconv.AppendUint(b, uint64(r.UID), 10)
	b = appendField(b, `,"exec_id":`, r.ExecID)
	b = appendField(b, `,"correlation_id":`, r.CorrelationID)
	if r.PID != 0 {
		b = append(b, `,"pid":`...)
		b = strconv.AppendInt(b, int64(r.PID), 10)
	}
	if r.PPID != 0 {
		b = append(b, `,"ppid":`...)
		b = strconv.AppendInt(b, int64(r.PPID), 10)
	}
	if r.TID != 0 {
		b = append(b, `,"tid":`...)
		b = strconv.AppendInt(b, int64(r.TID), 10)
	}
	b = appendField(b, `,"comm":`, r.Comm)
	b = append(b, `,"action":`...)
	b = appendString(b, r.Action)
	b = appendField(b, `,"syscall":`, r.Syscall)
	b = appendField(b, `,"arch":`, r.Arch)
	if len(r.Args) > 0 {
		b = append(b, `,"args":[`...)
		for i, a := range r.Args {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	}
	b = appendField(b, `,"resource":`, r.Resource)
	b = appendField(b, `,"result":`, r.Result)
	if r.Ret != 0 {
		b = append(b, `,"ret":`...)
		b = strconv.AppendInt(b, r.Ret, 10)
	}
	b = appendField(b, `,"errno":`, r.Errno)
	if r.Details != nil {
		// Details are rare (exec records only), so encoding/json is fine here. Marshal compacts a json.RawMessage,
		// which also guarantees there is no newline to break the line framing.
		d, err := json.Marshal(r.Details)
		if err != nil {
			return b, fmt.Errorf("marshal details: %w", err)
		}
		if string(d) != "null" {
			b = append(b, `,"details":`...)
			b = append(b, d...)
		}
	}
	b = append(b, `,"prev_hash":`...)
	b = appendString(b, prevHash)
	return b, nil
}

func appendField(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, name...)
	return appendString(b, v)
}

// safe marks the bytes that need no escaping in a JSON string.
var safe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as with encoding/json; U+2028 and U+2029 are
// escaped so that the output is also valid JavaScript.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if safe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Invalid UTF-8 becomes U+FFFD, written raw (not as \ufffd) so
			// that decoding and re-encoding a stored record gives back its
			// exact bytes, and with them its hash.
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendTime appends t in UTC as RFC 3339 with exactly nine fractional digits, so that timestamps are fixed-width and
// sort as strings.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
	}
	hour, min, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, t.Nanosecond(), 9)
	return append(b, 'Z')
}

func appendDigits(b []byte, v, width int) []byte {
	var tmp [9]byte
	for i := width - 1; i >= 0; i-- {
		tmp[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, tmp[:width]...)
}
