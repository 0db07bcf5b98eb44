package profiles

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// lookupUser resolves a user name to its uid. A variable so that tests can
// stub it: the users in examples/ exist only on a demo host.
var lookupUser = func(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	return uint32(uid), nil
}

// Lower bounds of the limits. Below them a sandbox cannot even start a
// shell, so a smaller value is a typo rather than a policy.
const (
	MinMemory    = 4 << 20
	MinOpenFiles = 16
	MinTmp       = 1 << 20
	MaxCPU       = 1024
)

// ReservedEnv are set by the daemon on every exec; a profile may neither pass
// them through from the caller nor set them, or an agent could spoof its
// own audit identity to the tools it runs.
var ReservedEnv = []string{"DEPUTY_AGENT", "DEPUTY_EXEC_ID", "DEPUTY_CORRELATION_ID"}

var (
	nameRE    = lazyRE(`^[a-z][a-z0-9-]{0,62}$`)
	envNameRE = lazyRE(`^[A-Za-z_][A-Za-z0-9_]*$`)
	syscallRE = lazyRE(`^[a-z0-9_]+$`)
)

// parsed is a profile with what the cross-profile checks and Lint need to
// report a line: the position index and where each peer uid came from.
type parsed struct {
	p        *Profile
	idx      *index
	peerPath map[uint32]string // peer uid -> "peers.uids[0]" or "peers.users[1]"
}

func (pp *parsed) errorf(path, format string, args ...any) *Error {
	return &Error{File: pp.p.File, Line: pp.idx.line(path), Msg: fmt.Sprintf(format, args...)}
}

// check is one small named validation step. Checks run in order and may
// rely on earlier ones: limits are checked after defaults are applied.
type check struct {
	name string
	fn   func(pp *parsed) ErrorList
}

var checks = []check{
	{"name", checkName},
	{"peers", checkPeers},
	{"runAs", checkRunAs},
	{"filesystem", checkFilesystem},
	{"network", checkNetwork},
	{"limits", checkLimits},
	{"env", checkEnv},
	{"seccomp", checkSeccomp},
	{"commands", checkCommands},
	{"rateLimit", checkAgentRateLimit},
	{"concurrency", checkConcurrency},
	{"schedule", checkAgentSchedule},
	{"approval", checkApproval},
}

// Parse decodes and validates one profile. It runs every check and returns
// all their errors as an ErrorList; a decode error stops at that error.
// Cross-profile rules (unique names and uids) need LoadDir or LoadFiles.
func Parse(file string, data []byte) (*Profile, error) {
	pp, err := parse(file, data)
	if err != nil {
		return nil, err
	}
	return pp.p, nil
}

func parse(file string, data []byte) (*parsed, error) {
	p := &Profile{}
	idx, err := decode(file, data, p)
	if err != nil {
		return nil, ErrorList{err.(*Error)}
	}
	sum := sha256.Sum256(data)
	p.File = file
	p.Digest = "sha256:" + hex.EncodeToString(sum[:])
	pp := &parsed{p: p, idx: idx, peerPath: map[uint32]string{}}
	var errs ErrorList
	for _, c := range checks {
		errs = append(errs, c.fn(pp)...)
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return pp, nil
}

func checkName(pp *parsed) ErrorList {
	switch n := pp.p.Name; {
	case n == "":
		return ErrorList{pp.errorf("name", "name is required")}
	case !nameRE().MatchString(n):
		return ErrorList{pp.errorf("name", "name %q: want a lowercase letter then up to 62 lowercase letters, digits or '-'", n)}
	}
	return nil
}

// checkPeers resolves peers.users and fills PeerUIDs. An unknown user is an
// error, not a skipped entry: a typo would otherwise lock the agent out, or
// worse, start matching once someone creates that user.
func checkPeers(pp *parsed) ErrorList {
	p := pp.p
	if len(p.Peers.UIDs) == 0 && len(p.Peers.Users) == 0 {
		return ErrorList{pp.errorf("peers", "peers: want at least one uid or user")}
	}
	var errs ErrorList
	add := func(uid uint32, path string) {
		if _, dup := pp.peerPath[uid]; dup {
			return
		}
		pp.peerPath[uid] = path
		p.PeerUIDs = append(p.PeerUIDs, uid)
	}
	for i, uid := range p.Peers.UIDs {
		add(uid, fmt.Sprintf("peers.uids[%d]", i))
	}
	for i, name := range p.Peers.Users {
		path := fmt.Sprintf("peers.users[%d]", i)
		uid, err := lookupUser(name)
		if err != nil {
			errs = append(errs, pp.errorf(path, "peers.users: unknown user %q: %v", name, err))
			continue
		}
		add(uid, path)
	}
	return errs
}

func checkRunAs(pp *parsed) ErrorList {
	p := pp.p
	var errs ErrorList
	// 0 is both "unset" and root; either way the agent would run as root.
	if p.RunAs.UID == 0 {
		errs = append(errs, pp.errorf("runAs.uid", "runAs.uid is required and must not be 0 (root)"))
	}
	if p.RunAs.GID == 0 {
		errs = append(errs, pp.errorf("runAs.gid", "runAs.gid is required and must not be 0 (root)"))
	}
	// A peer that is also the run-as uid could use the agent's own commands
	// to act as the agent: the sandbox would be a caller of itself.
	if path, ok := pp.peerPath[p.RunAs.UID]; ok && p.RunAs.UID != 0 {
		errs = append(errs, pp.errorf("runAs.uid", "runAs.uid %d is also a peer uid of this agent (%s)", p.RunAs.UID, path))
	}
	return errs
}

func checkFilesystem(pp *parsed) ErrorList {
	var errs ErrorList
	fs := pp.p.Filesystem
	for _, l := range []struct {
		key   string
		paths []string
	}{{"read", fs.Read}, {"write", fs.Write}, {"exec", fs.Exec}} {
		for i, path := range l.paths {
			field := fmt.Sprintf("filesystem.%s[%d]", l.key, i)
			if err := checkPath(path); err != "" {
				errs = append(errs, pp.errorf(field, "%s: %s", field, err))
			}
		}
	}
	if fs.Workdir != "" {
		if err := checkPath(fs.Workdir); err != "" {
			errs = append(errs, pp.errorf("filesystem.workdir", "filesystem.workdir: %s", err))
		}
	}
	return errs
}

// checkPath wants an absolute, clean path: Landlock rules and protected-path
// comparisons work on the literal string, so "/var/../etc" or "/var/tmp/"
// would not mean what it looks like.
func checkPath(path string) string {
	switch {
	case path == "":
		return "empty path"
	case strings.ContainsRune(path, 0):
		return fmt.Sprintf("%q contains a NUL byte", path)
	case !filepath.IsAbs(path):
		return fmt.Sprintf("%q is not absolute", path)
	case strings.Contains("/"+path+"/", "/../"):
		return fmt.Sprintf("%q contains \"..\"", path)
	case filepath.Clean(path) != path:
		return fmt.Sprintf("%q is not clean: write %q", path, filepath.Clean(path))
	}
	return ""
}

func checkNetwork(pp *parsed) ErrorList {
	if pp.p.Network == "" {
		pp.p.Network = NetworkNone
	}
	if !pp.p.Network.valid() {
		return ErrorList{pp.errorf("network", "network %q: want none or host", pp.p.Network)}
	}
	return nil
}

// checkLimits applies the defaults, then bounds every limit. An explicit 0
// is refused rather than read as "default": whoever wrote "pids: 0" most
// likely meant "none", and silently getting 256 is a surprise.
func checkLimits(pp *parsed) ErrorList {
	l := &pp.p.Limits
	var errs ErrorList
	explicitZero := func(field string, zero bool, def string) {
		if zero && pp.idx.has("limits."+field) {
			errs = append(errs, pp.errorf("limits."+field, "limits.%s: 0 is not allowed; leave it out for the default of %s", field, def))
		}
	}
	explicitZero("pids", l.PIDs == 0, strconv.Itoa(DefaultPIDs))
	explicitZero("memory", l.Memory == 0, Bytes(DefaultMemory).String())
	explicitZero("output", l.Output == 0, Bytes(DefaultOutput).String())
	explicitZero("openFiles", l.OpenFiles == 0, strconv.Itoa(DefaultOpenFiles))
	explicitZero("tmp", l.Tmp == 0, Bytes(DefaultTmp).String())

	if l.Timeout == 0 {
		l.Timeout = Duration(DefaultTimeout)
	}
	if l.Memory == 0 {
		l.Memory = DefaultMemory
	}
	if l.PIDs == 0 {
		l.PIDs = DefaultPIDs
	}
	if l.Output == 0 {
		l.Output = DefaultOutput
	}
	if l.OpenFiles == 0 {
		l.OpenFiles = DefaultOpenFiles
	}
	if l.Tmp == 0 {
		l.Tmp = DefaultTmp
	}

	bound := func(field string, bad bool, format string, args ...any) {
		if bad {
			errs = append(errs, pp.errorf("limits."+field, "limits.%s: "+format, append([]any{field}, args...)...))
		}
	}
	bound("timeout", l.Timeout <= 0, "must be greater than zero")
	bound("memory", l.Memory < MinMemory, "%s is below the minimum of %s", l.Memory, Bytes(MinMemory))
	bound("pids", l.PIDs < 1, "%d: want at least 1", l.PIDs)
	// NaN compares false with everything, so test for the valid range.
	bound("cpu", !(l.CPU >= 0 && l.CPU <= MaxCPU), "%v: want 0 (unlimited) to %d cores", l.CPU, MaxCPU)
	bound("output", l.Output < 1, "%d: want at least 1 byte", int64(l.Output))
	bound("openFiles", l.OpenFiles < MinOpenFiles, "%d: want at least %d", l.OpenFiles, MinOpenFiles)
	bound("tmp", l.Tmp < MinTmp, "%s is below the minimum of %s", l.Tmp, Bytes(MinTmp))
	return errs
}

func isReservedEnv(name string) bool {
	for _, r := range ReservedEnv {
		if name == r {
			return true
		}
	}
	return false
}

func checkEnv(pp *parsed) ErrorList {
	var errs ErrorList
	for i, name := range pp.p.Env.Pass {
		path := fmt.Sprintf("env.pass[%d]", i)
		switch {
		case !envNameRE().MatchString(name):
			errs = append(errs, pp.errorf(path, "env.pass: %q is not a valid variable name", name))
		case isReservedEnv(name):
			errs = append(errs, pp.errorf(path, "env.pass: %s is set by the daemon and cannot be passed", name))
		// The dynamic loader reads LD_* before the program's own code runs:
		// a caller-chosen LD_PRELOAD or LD_AUDIT is code execution inside
		// the sandbox with whatever the target binary was trusted for.
		case strings.HasPrefix(name, "LD_"):
			errs = append(errs, pp.errorf(path, "env.pass: %s is read by the dynamic loader and cannot be passed from the caller", name))
		}
	}
	for _, name := range sortedKeys(pp.p.Env.Set) {
		path := "env.set." + name
		switch {
		case !envNameRE().MatchString(name):
			errs = append(errs, pp.errorf(path, "env.set: %q is not a valid variable name", name))
		case isReservedEnv(name):
			errs = append(errs, pp.errorf(path, "env.set: %s is set by the daemon and cannot be overridden", name))
		case strings.ContainsRune(pp.p.Env.Set[name], 0):
			errs = append(errs, pp.errorf(path, "env.set: the value of %s contains a NUL byte", name))
		}
	}
	return errs
}

func checkSeccomp(pp *parsed) ErrorList {
	var errs ErrorList
	denied := map[string]bool{}
	for i, name := range pp.p.Seccomp.Deny {
		if !syscallRE().MatchString(name) {
			errs = append(errs, pp.errorf(fmt.Sprintf("seccomp.deny[%d]", i), "seccomp.deny: %q is not a syscall name", name))
		}
		denied[name] = true
	}
	for i, o := range pp.p.Seccomp.Allow {
		path := fmt.Sprintf("seccomp.allow[%d]", i)
		switch {
		case !syscallRE().MatchString(o.Syscall):
			errs = append(errs, pp.errorf(path+".syscall", "seccomp.allow: %q is not a syscall name", o.Syscall))
		case denied[o.Syscall]:
			errs = append(errs, pp.errorf(path+".syscall", "seccomp.allow: %s is also in seccomp.deny", o.Syscall))
		}
		if strings.TrimSpace(o.Reason) == "" {
			errs = append(errs, pp.errorf(path+".reason", "seccomp.allow: %s needs a reason", o.Syscall))
		}
	}
	return errs
}
