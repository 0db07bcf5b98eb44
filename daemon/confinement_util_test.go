package daemon_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// agent describes one profile of a confinement test.
type confAgent struct {
	name    string
	peer    uint32 // the uid the CLI runs as
	runAs   uint32 // the uid (and gid) the commands run as
	read    []string
	write   []string
	exec    []string
	network string // "" means the default (none)
	limits  string // YAML flow mapping, e.g. "{pids: 32}"; "" for defaults
}

// defaultExec is what every test profile may execute.
var defaultExec = []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"}

// yaml renders the agent as a profile file.
func (a confAgent) yaml() string {
	list := func(l []string) string {
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	exe := a.exec
	if exe == nil {
		exe = defaultExec
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\npeers:\n  uids: [%d]\nrunAs:\n  uid: %d\n  gid: %d\n", a.name, a.peer, a.runAs, a.runAs)
	fmt.Fprintf(&b, "filesystem:\n  read: %s\n  write: %s\n  exec: %s\n", list(a.read), list(a.write), list(exe))
	if a.network != "" {
		fmt.Fprintf(&b, "network: %s\n", a.network)
	}
	if a.limits != "" {
		fmt.Fprintf(&b, "limits: %s\n", a.limits)
	}
	return b.String()
}

// profilesOf renders agents as the Profiles map of daemontest.Options.
func profilesOf(agents ...confAgent) map[string]string {
	m := map[string]string{}
	for _, a := range agents {
		m[a.name+".yaml"] = a.yaml()
	}
	return m
}

// scratchDir creates a fresh directory under /var/tmp (which, unlike /tmp,
// the sandbox sees), owned by uid (0 keeps root), mode 0755, removed when
// the test ends.
func scratchDir(t *testing.T, uid uint32) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "dpt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(uid), int(uid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mkdirOwned creates dir (mode) owned by uid.
func mkdirOwned(t *testing.T, dir string, mode os.FileMode, uid uint32) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, int(uid), int(uid)); err != nil {
		t.Fatal(err)
	}
}

// writeOwned writes a file with mode owned by uid and tags it with the
// xattr user.test=1.
func writeOwned(t *testing.T, path, content string, mode os.FileMode, uid uint32) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, int(uid), int(uid)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(path, "user.test", []byte("1"), 0); err != nil {
		t.Fatalf("setxattr %s: %v", path, err)
	}
}

// buildTree fills dir (which must not exist) with the tree every attack
// targets: dir itself and most files belong to the agent, so that plain
// file permissions would allow every attack, and one file belongs to root.
//
//	dir/            agent 0755
//	dir/syslog      root  0644
//	dir/app.log     agent 0644
//	dir/app/        agent 0755
//	dir/app/data.log agent 0644
//	dir/empty/      agent 0755
func buildTree(t *testing.T, dir string, agentUID uint32) {
	t.Helper()
	mkdirOwned(t, dir, 0o755, agentUID)
	writeOwned(t, filepath.Join(dir, "syslog"), "Jan  1 00:00:00 host kernel: root-owned line\n", 0o644, 0)
	writeOwned(t, filepath.Join(dir, "app.log"), "2026-01-01 app started\n2026-01-01 app stopped\n", 0o644, agentUID)
	mkdirOwned(t, filepath.Join(dir, "app"), 0o755, agentUID)
	writeOwned(t, filepath.Join(dir, "app", "data.log"), "data line x\n", 0o644, agentUID)
	mkdirOwned(t, filepath.Join(dir, "empty"), 0o755, agentUID)
	for _, d := range []string{dir, filepath.Join(dir, "app"), filepath.Join(dir, "empty")} {
		if err := unix.Setxattr(d, "user.test", []byte("1"), 0); err != nil {
			t.Fatalf("setxattr %s: %v", d, err)
		}
	}
}

// entry is everything about one file that an attack could change.
type entry struct {
	Ino, Nlink, Mode, UID, GID uint64
	Size                       int64
	Mtime, Ctime               int64 // ns
	SHA256                     string
	Link                       string
	Xattrs                     string
}

// snapshot records every entry of the tree at root (root itself as ".").
// A tree that cannot be walked at all yields a single "<error>" entry so
// that the comparison fails loudly.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	snap := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		e := entry{
			Ino: st.Ino, Nlink: uint64(st.Nlink), Mode: uint64(st.Mode), UID: uint64(st.Uid), GID: uint64(st.Gid),
			Size:  st.Size,
			Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			e.SHA256 = hex.EncodeToString(sum[:8])
		case unix.S_IFLNK:
			e.Link, _ = os.Readlink(p)
		}
		e.Xattrs = xattrs(p)
		snap[rel] = e
		return nil
	})
	if err != nil {
		snap["<error>"] = entry{Link: err.Error()}
	}
	return snap
}

// xattrs lists name=value of every xattr of p (not following symlinks).
func xattrs(p string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	var out []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 1024)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			out = append(out, name+"=<"+err.Error()+">")
			continue
		}
		out = append(out, name+"="+string(val[:m]))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// diffSnapshots describes how after differs from before, "" if not at all.
func diffSnapshots(before, after map[string]entry) string {
	var lines []string
	for p, b := range before {
		a, ok := after[p]
		switch {
		case !ok:
			lines = append(lines, fmt.Sprintf("  %s: gone (was %+v)", p, b))
		case a != b:
			lines = append(lines, fmt.Sprintf("  %s: changed\n    before %+v\n    after  %+v", p, b, a))
		}
	}
	for p, a := range after {
		if _, ok := before[p]; !ok {
			lines = append(lines, fmt.Sprintf("  %s: new %+v", p, a))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// mountCount is the number of mounts in the host's (this process's) mount
// namespace.
func mountCount(t *testing.T) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	s := bufio.NewScanner(f)
	for s.Scan() {
		n++
	}
	return n
}

// mountsUnder lists host mountinfo mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// compileC compiles a C program into dir (root-owned, world-executable).
func compileC(t *testing.T, dir, name, src string) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("gcc is needed to build the %s probe: %v", name, err)
	}
	cfile := filepath.Join(t.TempDir(), name+".c")
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	if out, err := exec.Command("gcc", "-O0", "-o", bin, cfile).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// daemonPID finds the deputyd process that serves configPath.
func daemonPID(t *testing.T, configPath string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 2 && strings.HasSuffix(args[0], "deputyd") && slices.Contains(args, configPath) {
			return pid
		}
	}
	t.Fatalf("no deputyd process with --config %s", configPath)
	return 0
}

// alive reports whether pid exists on the host and is not a zombie.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// cgroupExecDirs lists exec-* groups left under the daemon's cgroup root in
// every hierarchy (cgroup2 at both possible mounts, and the v1 limit
// controllers).
func cgroupExecDirs(t *testing.T) (found []string, checked []string) {
	t.Helper()
	root := fmt.Sprintf("deputy-test-%d", os.Getpid())
	for _, base := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/freezer"} {
		dir := filepath.Join(base, root)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Errorf("read %s: %v", dir, err)
			continue
		}
		checked = append(checked, dir)
		for _, e := range entries {
			if e.IsDir() {
				found = append(found, filepath.Join(dir, e.Name()))
			}
		}
	}
	return found, checked
}

// dirEntriesOwnedBy lists entries of dir whose owner is one of uids.
func dirEntriesOwnedBy(dir string, uids ...uint32) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(dir, e.Name()), &st) != nil {
			continue
		}
		if slices.Contains(uids, st.Uid) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}
