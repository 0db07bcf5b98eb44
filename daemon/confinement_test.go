package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deputyhq/deputy/daemon/audit"
	"github.com/deputyhq/deputy/daemon/daemontest"
	"github.com/deputyhq/deputy/sandbox/sandboxtest"
)

// Uids of the confinement tests: peers (who runs the CLI) and runAs (who
// the commands run as). Uncommon numbers, so that a stray process of
// another test or of the host is not mistaken for ours.
const (
	cfPeerA, cfRunA       = 47101, 47201
	cfPeerB, cfRunB       = 47102, 47202
	cfPeerBomb, cfRunBomb = 47103, 47203
	cfPeerHog, cfRunHog   = 47104, 47204
	cfPeerHost, cfRunHost = 47105, 47205
	ranMark, endMark      = "DPT-RAN", "DPT-END"
	attackMarkedWrapper   = `echo ` + ranMark + `; "$@"; echo ` + endMark
)

// attack is one way to tamper with a tree. argv gets the tree and its
// writable parent.
type attack struct {
	name string
	argv func(tree, parent string) []string
	// control: the same attack on an unprotected copy of the tree (in the
	// writable parent) must change it, which proves the attack is real
	// and that only Deputy stops it on the protected tree.
	control bool
	needs   string // a program that must exist on the host
}

func shc(script string) func(tree, parent string) []string {
	return func(tree, parent string) []string { return []string{"sh", "-c", script, "sh", tree, parent} }
}

func py(prog string) func(tree, parent string) []string {
	return func(tree, parent string) []string { return []string{"python3", "-c", prog, tree, parent} }
}

const treeFiles = `syslog app.log app/data.log`

var treeAttacks = []attack{
	// Deletion.
	{name: "rm -rf", control: true, argv: shc(`rm -rf "$1"/* "$1"; rm -rf "$1"`)},
	{name: "rm -f", control: true, argv: shc(`rm -f "$1/syslog" "$1/app.log" "$1/app/data.log"`)},
	{name: "unlink", control: true, argv: shc(`for f in ` + treeFiles + `; do unlink "$1/$f"; done`)},
	{name: "rmdir", control: true, argv: shc(`rmdir "$1/empty"; rmdir "$1/app"; rmdir "$1"`)},
	{name: "find -delete", control: true, argv: shc(`find "$1" -delete`)},
	{name: "python os.unlink", control: true, argv: py(`import os, sys
for f in ("syslog", "app.log", "app/data.log"):
    try:
        os.unlink(os.path.join(sys.argv[1], f))
    except OSError as e:
        print(e)`)},
	{name: "python shutil.rmtree", control: true, argv: py(`import shutil, sys
shutil.rmtree(sys.argv[1], onerror=lambda *a: print(a[2]))`)},
	{name: "perl unlink", control: true, argv: func(tree, parent string) []string {
		return []string{"perl", "-e", `my $d = shift; print unlink("$d/syslog", "$d/app.log", "$d/app/data.log"), " removed\n"; rmdir("$d/empty")`, tree}
	}},

	// Truncation.
	{name: "colon redirect", control: true, argv: shc(`for f in ` + treeFiles + `; do (: > "$1/$f"); done`)},
	{name: "cp /dev/null", control: true, argv: shc(`for f in ` + treeFiles + `; do cp /dev/null "$1/$f"; done`)},
	{name: "python O_RDONLY|O_TRUNC", control: true, argv: py(`import os, sys
for f in ("syslog", "app.log", "app/data.log"):
    try:
        os.close(os.open(os.path.join(sys.argv[1], f), os.O_RDONLY | os.O_TRUNC))
    except OSError as e:
        print(e)`)},
	{name: "truncate -s 0", control: true, argv: shc(`truncate -s 0 "$1/syslog" "$1/app.log" "$1/app/data.log"`)},
	{name: "python os.truncate", control: true, argv: py(`import os, sys
for f in ("syslog", "app.log", "app/data.log"):
    try:
        os.truncate(os.path.join(sys.argv[1], f), 0)
    except OSError as e:
        print(e)`)},

	// Moving and rewriting.
	{name: "mv within the tree", control: true, argv: shc(`mv "$1/app.log" "$1/app.log.1"; mv "$1/syslog" "$1/app/syslog"; mv "$1/app" "$1/app.old"`)},
	{name: "mv out of the tree", control: true, argv: shc(`mv "$1/app.log" "$2/stolen.log"; mv "$1/syslog" "$2/stolen-syslog"; mv "$1/app" "$2/stolen-app"`)},
	{name: "mv to /dev/shm", control: true, argv: shc(`mv "$1/app.log" /dev/shm/; mv "$1/syslog" /dev/shm/; mv "$1/app" /dev/shm/; mv "$1" /dev/shm/tree`)},
	{name: "sed -i", control: true, argv: shc(`sed -i 's/^/FORGED /' "$1/syslog" "$1/app.log" "$1/app/data.log"`)},
	{name: "tar --remove-files", control: true, argv: shc(`tar -C "$1" -cf /tmp/x.tar --remove-files syslog app.log app empty`)},
	{name: "gzip", control: true, argv: shc(`gzip "$1/syslog" "$1/app.log" "$1/app/data.log"`)},
	{name: "hard link out then truncate", control: true, argv: shc(`ln "$1/app.log" "$2/hl" && : > "$2/hl"; ln "$1/app/data.log" "$2/hl2" && : > "$2/hl2"; ln "$1/syslog" "$2/hl3"`)},
	{name: "rename over from parent", control: true, argv: shc(`echo forged > "$2/evil"; mv -f "$2/evil" "$1/app.log"; echo forged > "$2/evil2"; mv -f "$2/evil2" "$1/syslog"`)},
	{name: "python os.rename of the tree", control: true, argv: py(`import os, sys
for dst in (sys.argv[2] + "/moved", "/dev/shm/moved", sys.argv[1] + ".old"):
    try:
        os.rename(sys.argv[1], dst)
        break
    except OSError as e:
        print(e)`)},
	{name: "rename the parent", argv: shc(`mv "$2" "$2.moved"; mv "$2.moved" "$2"`)},

	// Metadata.
	{name: "chmod 000", control: true, argv: shc(`chmod 000 "$1/syslog" "$1/app.log" "$1/app/data.log" "$1/app" "$1"`)},
	{name: "chown", control: true, argv: shc(`u=$(id -u); chown "$u:$u" "$1/app.log" "$1/app/data.log" "$1/app" "$1"; chown "$u" "$1/syslog"`)},
	{name: "touch -d 2001-01-01", control: true, argv: shc(`touch -d 2001-01-01 "$1/syslog" "$1/app.log" "$1/app/data.log" "$1/app" "$1"`)},
	{name: "setfattr", control: true, needs: "/usr/bin/setfattr", argv: shc(`for f in "$1/syslog" "$1/app.log" "$1/app/data.log" "$1"; do setfattr -n user.test -v 2 "$f"; setfattr -n user.evil -v 1 "$f"; setfattr -x user.test "$f"; done`)},
	{name: "python fchmod futime on a read-only fd", control: true, argv: py(`import os, sys
for f in ("syslog", "app.log", "app/data.log", "."):
    try:
        fd = os.open(os.path.join(sys.argv[1], f), os.O_RDONLY)
    except OSError as e:
        print(e)
        continue
    for op in (lambda: os.fchmod(fd, 0), lambda: os.utime(fd, (0, 0)), lambda: os.fchown(fd, os.getuid(), os.getgid())):
        try:
            op()
        except OSError as e:
            print(e)`)},

	// Overwriting and forging.
	{name: "dd conv=notrunc", control: true, argv: shc(`for f in ` + treeFiles + `; do printf FORGED | dd of="$1/$f" conv=notrunc; done`)},
	{name: "append a forged line", control: true, argv: shc(`for f in ` + treeFiles + `; do echo "Jan  1 00:00:01 host sshd: forged" >> "$1/$f"; done`)},
	{name: "fallocate punch hole", control: true, needs: "/usr/bin/fallocate", argv: shc(`for f in ` + treeFiles + `; do fallocate -p -o 0 -l 4 "$1/$f"; fallocate -l 1M "$1/$f"; done`)},
	{name: "create inside", control: true, argv: shc(`echo x > "$1/new.log"; mkdir "$1/newdir"; mkfifo "$1/fifo"; ln -s app.log "$1/link"; echo x > "$1/app/new"`)},
	{name: "symlink in parent then write through it", control: true, argv: shc(`ln -s "$1/app.log" "$2/sl"; echo forged > "$2/sl"; ln -s "$1/syslog" "$2/sl2"; echo forged >> "$2/sl2"; ln -s "$1" "$2/sldir"; rm -f "$2/sldir/app/data.log"; rm -rf "$2/sldir/"`)},
	{name: "reopen /proc/self/fd for write", control: true, argv: shc(`exec 3< "$1/app.log" 4< "$1/syslog" 5< "$1/app/data.log"; echo forged > /proc/self/fd/3; echo forged >> /proc/self/fd/4; (: > /proc/$$/fd/5)`)},

	// The mount table.
	{name: "mount tmpfs over the tree", argv: shc(`mount -t tmpfs none "$1"; mount -t tmpfs none /var/log; mount -o remount,rw "$1"; mount -o remount,bind,rw "$1"; umount -l "$1"; rm -rf "$1"/*`)},
	{name: "unshare -Urm then mount or remount", argv: shc(`unshare -Urm sh -c 'mount -o remount,rw "$1"; mount -o remount,bind,rw "$1"; umount -l "$1"; mount -t tmpfs none "$1"; rm -rf "$1"/*; echo forged > "$1/app.log"' sh "$1"; echo "unshare exit $?"`)},
}

// TestThreatProtectedTree runs every tampering attack against a protected
// tree as an agent that may write the tree's parent and owns most of the
// tree, and checks that no file of it changed in any way.
func TestThreatProtectedTree(t *testing.T) {
	sandboxtest.RequireRoot(t)
	parent := scratchDir(t, cfRunA)
	tree := filepath.Join(parent, "logs")
	ctl := filepath.Join(parent, "ctl")
	d := daemontest.Start(t, daemontest.Options{
		Config: fmt.Sprintf("protectedPaths: [/var/log, %s]\n", tree),
		Profiles: profilesOf(confAgent{
			name: "tamper", peer: cfPeerA, runAs: cfRunA, write: []string{parent}, limits: "{timeout: 20s}",
		}),
	})

	// clean empties the parent but for keep.
	clean := func(t *testing.T, keep string) {
		t.Helper()
		if err := os.Chmod(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(parent, e.Name())
			if p == keep {
				continue
			}
			filepath.Walk(p, func(p string, _ os.FileInfo, _ error) error { os.Chmod(p, 0o755); return nil })
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(t *testing.T, argv []string, corr string) daemontest.Result {
		t.Helper()
		r := d.Run(t, cfPeerA, "", append([]string{"exec", "--correlation-id", corr, "--", "sh", "-c", attackMarkedWrapper, "sh"}, argv...)...)
		if !strings.Contains(r.Stdout, ranMark) || !strings.Contains(r.Stdout, endMark) {
			t.Fatalf("the attack did not run to its end in the sandbox:\n%s", r)
		}
		return r
	}

	for i, a := range treeAttacks {
		t.Run(a.name, func(t *testing.T) {
			if a.needs != "" {
				if _, err := os.Stat(a.needs); err != nil {
					sandboxtest.Skip(t, "needs %s: %v", a.needs, err)
				}
			}
			if a.control {
				// The protected tree stays: a missing protected path makes
				// every exec fail closed.
				clean(t, tree)
				buildTree(t, ctl, cfRunA)
				before := snapshot(t, ctl)
				r := run(t, a.argv(ctl, parent), "control")
				if diffSnapshots(before, snapshot(t, ctl)) == "" {
					t.Fatalf("control: the attack changed nothing in the unprotected copy %s, so it proves nothing:\n%s", ctl, r)
				}
			}
			// A fresh parent for the real attack: what the control left
			// there (links, moved files) must not get in its way.
			clean(t, "")
			buildTree(t, tree, cfRunA)
			before := snapshot(t, tree)
			if len(before) != 6 {
				t.Fatalf("protected tree has %d entries, want 6: %v", len(before), before)
			}
			corr := fmt.Sprintf("attack-%d", i)
			r := run(t, a.argv(tree, parent), corr)
			if diff := diffSnapshots(before, snapshot(t, tree)); diff != "" {
				t.Errorf("protected tree %s changed:\n%s\nattack output:\n%s", tree, diff, r)
			}
			// The auditor sees the attempt: failed syscalls with their errno,
			// on absolute paths.
			if failed := failedSyscalls(t, d, corr); len(failed) == 0 {
				t.Errorf("the audit log has no failed syscall with an errno and an absolute path for this attack")
			}
			if m := mountsUnder(t, parent); len(m) != 0 {
				t.Errorf("mounts leaked into the host under %s: %v", parent, m)
			}
		})
	}
	if t.Failed() {
		t.Logf("daemon log:\n%s", lastLines(d.Log(), 10))
	}
}

// TestThreatVarLogDefault checks the default protection of /var/log,
// against an agent whose profile even grants writing it.
func TestThreatVarLogDefault(t *testing.T) {
	sandboxtest.RequireRoot(t)
	work := scratchDir(t, cfRunA)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	rootLog := "/var/log/deputy-test-" + suffix + ".log"
	agentLog := "/var/log/deputy-test-" + suffix + "-agent.log"
	// 0666: plain permissions would let the agent rewrite the root-owned
	// file too; its own file it could also chmod or delete.
	writeOwned(t, rootLog, "root line\n", 0o666, 0)
	writeOwned(t, agentLog, "agent line\n", 0o644, cfRunA)
	t.Cleanup(func() { os.Remove(rootLog); os.Remove(agentLog) })

	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(confAgent{
		name: "varlog", peer: cfPeerA, runAs: cfRunA, read: []string{"/var/log"}, write: []string{work},
	})})

	topBefore := topEntries(t, "/var/log")
	mountsBefore := mountsUnder(t, "/var/log")
	snapRoot, snapAgent := snapshot(t, rootLog), snapshot(t, agentLog)

	// Positive control: the agent does see both files.
	r := d.Exec(t, cfPeerA, "", "cat", rootLog, agentLog)
	if r.Code != 0 || r.Stdout != "root line\nagent line\n" {
		t.Fatalf("agent cannot read its test files in /var/log:\n%s", r)
	}

	script := `echo ` + ranMark + `
rm -rf /var/log/*
for f in "$1" "$2"; do (: > "$f"); echo forged >> "$f"; truncate -s 0 "$f"; chmod 000 "$f"; touch -d 2001-01-01 "$f"; mv "$f" "$3/"; done
mount -t tmpfs none /var/log
echo ` + endMark
	r = d.Exec(t, cfPeerA, "", "sh", "-c", script, "sh", rootLog, agentLog, work)
	if !strings.Contains(r.Stdout, endMark) {
		t.Fatalf("attack did not run:\n%s", r)
	}
	if diff := diffSnapshots(snapRoot, snapshot(t, rootLog)); diff != "" {
		t.Errorf("root-owned %s changed:\n%s\n%s", rootLog, diff, r)
	}
	if diff := diffSnapshots(snapAgent, snapshot(t, agentLog)); diff != "" {
		t.Errorf("agent-owned %s changed:\n%s\n%s", agentLog, diff, r)
	}
	after := topEntries(t, "/var/log")
	for name, ino := range topBefore {
		if got, ok := after[name]; !ok || got != ino {
			t.Errorf("/var/log/%s: inode %d before, %d after (present %v)", name, ino, got, ok)
		}
	}
	if m := mountsUnder(t, "/var/log"); len(m) != len(mountsBefore) {
		t.Errorf("mounts at or under /var/log on the host: %v before, %v after", mountsBefore, m)
	}
}

// topEntries maps the names of dir's entries to their inodes.
func topEntries(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		m[e.Name()] = fi.Sys().(*syscall.Stat_t).Ino
	}
	return m
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

const ioUringProbe = `#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
int main(void) {
	unsigned char params[256];
	memset(params, 0, sizeof params);
	long fd = syscall(__NR_io_uring_setup, 4, params);
	if (fd >= 0) {
		printf("io_uring_setup succeeded: fd %ld\n", fd);
		return 0;
	}
	printf("io_uring_setup failed: %s\n", strerror(errno));
	return errno == EPERM ? 1 : 2;
}
`

// int80Probe calls getpid (i386 number 20) through the 32-bit syscall
// gate from a 64-bit process.
const int80Probe = `#include <stdio.h>
int main(void) {
	long ret;
	__asm__ volatile ("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
	printf("int80 getpid returned %ld\n", ret);
	return 0;
}
`

// TestThreatPrivilege checks that nothing run in the sandbox gains
// privileges or kernel attack surface: no_new_privs, setuid binaries,
// user namespaces, io_uring and the 32-bit syscall gate.
func TestThreatPrivilege(t *testing.T) {
	sandboxtest.RequireRoot(t)
	work := scratchDir(t, cfRunA)
	bin := scratchDir(t, 0)
	// A setuid-root copy of id where the agent may execute: only
	// no_new_privs stops it (the agent's tree is not mounted nosuid).
	suid := filepath.Join(bin, "suid-id")
	data, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(suid, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	uring := compileC(t, bin, "io-uring-probe", ioUringProbe)
	int80 := compileC(t, bin, "int80-probe", int80Probe)

	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(confAgent{
		name: "priv", peer: cfPeerA, runAs: cfRunA, write: []string{work},
		exec: append([]string{bin}, defaultExec...),
	})})
	asAgentOnHost := func(argv ...string) (string, error) {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: cfRunA, Gid: cfRunA, Groups: []uint32{}}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("no_new_privs", func(t *testing.T) {
		r := d.Exec(t, cfPeerA, "", "grep", "NoNewPrivs", "/proc/self/status")
		if r.Code != 0 || strings.Join(strings.Fields(r.Stdout), " ") != "NoNewPrivs: 1" {
			t.Errorf("want NoNewPrivs: 1 in the sandbox:\n%s", r)
		}
	})
	t.Run("setuid binary", func(t *testing.T) {
		// Control: on the host the copy does make the agent root.
		if out, err := asAgentOnHost(suid, "-u"); err != nil || strings.TrimSpace(out) != "0" {
			t.Fatalf("control: setuid copy run by uid %d on the host printed %q (%v), want 0", cfRunA, out, err)
		}
		r := d.Exec(t, cfPeerA, "", suid, "-u")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != strconv.Itoa(cfRunA) {
			t.Errorf("setuid-root binary in the sandbox: want effective uid %d:\n%s", cfRunA, r)
		}
	})
	t.Run("su", func(t *testing.T) {
		r := d.Exec(t, cfPeerA, "", "sh", "-c", "su -c 'id -u' root </dev/null; echo rc=$?")
		if !strings.Contains(r.Stdout, "rc=") || strings.Contains(r.Stdout, "rc=0") || strings.HasPrefix(r.Stdout, "0\n") {
			t.Errorf("su gained something in the sandbox:\n%s", r)
		}
	})
	t.Run("unshare -U", func(t *testing.T) {
		if out, err := asAgentOnHost("unshare", "-U", "true"); err != nil {
			t.Logf("control: unshare -U fails on the host too for uid %d: %v %s", cfRunA, err, out)
		}
		r := d.Exec(t, cfPeerA, "", "unshare", "-U", "true")
		if r.Code == 0 {
			t.Errorf("unshare -U succeeded in the sandbox:\n%s", r)
		}
		r = d.Exec(t, cfPeerA, "", "unshare", "-Ur", "id", "-u")
		if r.Code == 0 || strings.TrimSpace(r.Stdout) == "0" {
			t.Errorf("unshare -Ur made the agent root in a user namespace:\n%s", r)
		}
	})
	t.Run("io_uring_setup", func(t *testing.T) {
		if out, err := exec.Command(uring).CombinedOutput(); err != nil {
			t.Logf("control: io_uring_setup fails on the host too: %v %s", err, out)
		}
		r := d.Exec(t, cfPeerA, "", uring)
		if r.Code != 1 || !strings.Contains(r.Stdout, "Operation not permitted") {
			t.Errorf("io_uring_setup in the sandbox: want EPERM (exit 1):\n%s", r)
		}
	})
	t.Run("int 0x80", func(t *testing.T) {
		// Control: where the host has IA32 emulation the probe succeeds
		// there, so only the filter can stop it in the sandbox; without it
		// the gate does not exist and the probe dies of SIGSEGV anywhere.
		out, _ := exec.Command(int80).CombinedOutput()
		hostGate := strings.Contains(string(out), "returned")
		if !hostGate {
			t.Logf("control: int 0x80 does not work on the host either (IA32 emulation off at run time): %s", out)
		}
		r := d.Exec(t, cfPeerA, "", "sh", "-c", `"$1"; echo rc=$?`, "sh", int80)
		if strings.Contains(r.Stdout, "returned") || !strings.Contains(r.Stdout, "rc=") || strings.Contains(r.Stdout, "rc=0") {
			t.Errorf("int 0x80 syscall succeeded in the sandbox:\n%s", r)
		}
		if want := fmt.Sprintf("rc=%d", 128+int(syscall.SIGSYS)); hostGate && !strings.Contains(r.Stdout, want) {
			t.Errorf("int 0x80: want the process killed by SIGSYS (%s):\n%s", want, r)
		}
	})
}

// TestIsolationAgents checks that one agent can neither reach another's
// files nor see or signal its processes or the daemon.
func TestIsolationAgents(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	wb := scratchDir(t, cfRunB)
	// World-writable: only Deputy keeps A out of B's directory.
	if err := os.Chmod(wb, 0o777); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(wb, "secret")
	writeOwned(t, secret, "b's secret\n", 0o666, cfRunB)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "agent-a", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
		confAgent{name: "agent-b", peer: cfPeerB, runAs: cfRunB, write: []string{wb}},
	)})

	t.Run("files", func(t *testing.T) {
		// Control: B reads its own secret.
		if r := d.Exec(t, cfPeerB, "", "cat", secret); r.Code != 0 || r.Stdout != "b's secret\n" {
			t.Fatalf("control: agent B cannot read its own file:\n%s", r)
		}
		before := snapshot(t, wb)
		r := d.Exec(t, cfPeerA, "", "sh", "-c", `ls -la "$1"; cat "$1/secret"; echo pwn > "$1/pwn"; echo pwn >> "$1/secret"; rm -f "$1/secret"; mv "$1/secret" "$2/"; echo `+endMark, "sh", wb, wa)
		if !strings.Contains(r.Stdout, endMark) {
			t.Fatalf("attack did not run:\n%s", r)
		}
		if strings.Contains(r.Stdout, "secret") {
			t.Errorf("agent A saw B's files:\n%s", r)
		}
		if diff := diffSnapshots(before, snapshot(t, wb)); diff != "" {
			t.Errorf("agent A changed B's directory:\n%s\n%s", diff, r)
		}
	})

	t.Run("processes", func(t *testing.T) {
		daemon := daemonPID(t, d.Config)
		ctx, cancel := context.WithCancel(context.Background())
		bDone := make(chan struct{})
		cmd := d.Command(ctx, cfPeerB, "exec", "--", "sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { cmd.Wait(); close(bDone) }()
		defer func() {
			cancel()
			<-bDone
			if left := daemontest.WaitNoProcesses(cfRunB, 10*time.Second); len(left) > 0 {
				t.Errorf("B's processes outlived its cancelled exec: %v", left)
			}
		}()
		var sleepPID int
		for deadline := time.Now().Add(10 * time.Second); sleepPID == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, pid := range daemontest.ProcessesOf(cfRunB) {
				if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "sleep" {
					sleepPID = pid
				}
			}
		}
		if sleepPID == 0 {
			t.Fatal("B's sleep did not start within 10s")
		}

		r := d.Exec(t, cfPeerA, "", "sh", "-c", `ps -eo pid=,uid=,comm=; echo PROC; ls /proc | grep '^[0-9]'`)
		if r.Code != 0 {
			t.Fatalf("ps in A's sandbox:\n%s", r)
		}
		psOut, procOut, _ := strings.Cut(r.Stdout, "PROC\n")
		n := 0
		for _, line := range strings.Split(strings.TrimSpace(psOut), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				t.Errorf("ps line %q", line)
				continue
			}
			n++
			if f[1] != strconv.Itoa(cfRunA) || f[2] == "sleep" || f[2] == "deputyd" {
				t.Errorf("agent A sees a process that is not its own: %q", line)
			}
		}
		if n == 0 || n > 3 {
			t.Errorf("agent A sees %d processes, want its own sh and ps:\n%s", n, psOut)
		}
		for _, p := range strings.Fields(procOut) {
			if p == strconv.Itoa(sleepPID) || p == strconv.Itoa(daemon) {
				t.Errorf("A's /proc lists host pid %s (sleep %d, daemon %d)", p, sleepPID, daemon)
			}
		}

		r = d.Exec(t, cfPeerA, "", "sh", "-c", fmt.Sprintf(`kill -9 %d; echo k1=$?; kill -9 %d; echo k2=$?; kill -9 -1; echo k3=$?; echo `+endMark, daemon, sleepPID))
		if !strings.Contains(r.Stdout, endMark) {
			t.Fatalf("kill attempts did not run:\n%s", r)
		}
		time.Sleep(200 * time.Millisecond)
		if !alive(daemon) {
			t.Errorf("agent A killed the daemon (pid %d):\n%s", daemon, r)
		}
		if !alive(sleepPID) {
			t.Errorf("agent A killed B's sleep (host pid %d):\n%s", sleepPID, r)
		}
		for _, k := range []string{"k1=0", "k2=0"} {
			if strings.Contains(r.Stdout, k) {
				t.Errorf("kill reported success (%s):\n%s", k, r)
			}
		}
	})
}

// TestIsolationNetwork checks network: none against a listener on the
// host's loopback, with network: host as the positive control.
func TestIsolationNetwork(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	wh := scratchDir(t, cfRunHost)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "offline", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
		confAgent{name: "online", peer: cfPeerHost, runAs: cfRunHost, write: []string{wh}, network: "host"},
	)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var got []string
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			c.Close()
			mu.Lock()
			got = append(got, string(b))
			mu.Unlock()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	const connect = `import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
s.sendall(b"hello-from-" + sys.argv[2].encode())
s.close()
print("connected")`

	r := d.Exec(t, cfPeerA, "", "python3", "-c", connect, port, "none")
	if r.Code == 0 || strings.Contains(r.Stdout, "connected") {
		t.Errorf("network: none reached the host's 127.0.0.1:%s:\n%s", port, r)
	}
	r2 := d.Exec(t, cfPeerA, "", "sh", "-c", `exec 3<>/dev/tcp/127.0.0.1/`+port+` && echo connected`)
	if strings.Contains(r2.Stdout, "connected") {
		t.Errorf("network: none: /dev/tcp reached the host:\n%s", r2)
	}
	r = d.Exec(t, cfPeerHost, "", "python3", "-c", connect, port, "host")
	if r.Code != 0 || !strings.Contains(r.Stdout, "connected") {
		t.Errorf("control: network: host could not reach 127.0.0.1:%s:\n%s", port, r)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	joined := strings.Join(got, "|")
	if strings.Contains(joined, "hello-from-none") {
		t.Errorf("the listener got a connection from the network: none agent: %q", joined)
	}
	if !strings.Contains(joined, "hello-from-host") {
		t.Errorf("control: the listener got nothing from the network: host agent: %q", joined)
	}
}

// TestIsolationCwd checks that a working directory under /proc or outside
// the profile is refused before anything runs.
func TestIsolationCwd(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "cwd", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
	)})
	if r := d.Run(t, cfPeerA, "", "exec", "--cwd", wa, "--", "pwd"); r.Code != 0 || strings.TrimSpace(r.Stdout) != wa {
		t.Fatalf("control: --cwd %s:\n%s", wa, r)
	}
	for _, tc := range []struct{ cwd, mention string }{
		{"/proc", "/proc"},
		{"/proc/self", "/proc"},
		{"/proc/1/root", "/proc"},
		{"/etc", "/etc"},
		{"/var/tmp", "/var/tmp"},
		{wa + "/../..", "clean"},
		{"relative", "absolute"},
	} {
		marker := filepath.Join(wa, "ran")
		r := d.Run(t, cfPeerA, "", "exec", "--cwd", tc.cwd, "--", "touch", marker)
		if r.Code != 125 || !strings.Contains(r.Stderr, "invalid request") || !strings.Contains(r.Stderr, tc.mention) {
			t.Errorf("--cwd %s: want exit 125, an invalid request mentioning %q:\n%s", tc.cwd, tc.mention, r)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("--cwd %s: the command ran", tc.cwd)
			os.Remove(marker)
		}
	}
}

// TestIsolationPrivateTmp checks that /tmp and /dev/shm are private to
// each exec.
func TestIsolationPrivateTmp(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "tmp", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
	)})
	name := "dpt-mark-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	hostFile := filepath.Join(os.TempDir(), name+"-host")
	if err := os.WriteFile(hostFile, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(hostFile)

	r := d.Exec(t, cfPeerA, "", "sh", "-c", `echo s > /tmp/$1 && echo s > /dev/shm/$1 && cat /tmp/$1 /dev/shm/$1; test -e `+hostFile+` && echo HOSTVISIBLE; true`, "sh", name)
	if r.Code != 0 || r.Stdout != "s\ns\n" {
		t.Fatalf("writing /tmp and /dev/shm in the sandbox:\n%s", r)
	}
	r = d.Exec(t, cfPeerA, "", "sh", "-c", `test -e /tmp/$1 && echo LEAK-tmp; test -e /dev/shm/$1 && echo LEAK-shm; echo `+endMark, "sh", name)
	if r.Stdout != endMark+"\n" {
		t.Errorf("the next exec sees the previous exec's /tmp or /dev/shm:\n%s", r)
	}
	for _, p := range []string{"/tmp/" + name, "/dev/shm/" + name} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s appeared on the host", p)
			os.Remove(p)
		}
	}
}

// TestIsolationNoInheritedFDs checks that the command starts with stdio
// pipes and nothing else.
func TestIsolationNoInheritedFDs(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "fds", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
	)})
	r := d.Exec(t, cfPeerA, "", "ls", "-l", "/proc/self/fd")
	if r.Code != 0 {
		t.Fatalf("ls /proc/self/fd:\n%s", r)
	}
	fds := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[len(f)-2] != "->" {
			continue
		}
		fds[f[len(f)-3]] = f[len(f)-1]
	}
	for fd, target := range fds {
		switch fd {
		case "0", "1", "2":
			if !strings.HasPrefix(target, "pipe:[") {
				t.Errorf("fd %s is %s, want a pipe", fd, target)
			}
		case "3":
			if !strings.HasPrefix(target, "/proc/") || !strings.HasSuffix(target, "/fd") {
				t.Errorf("fd 3 is %s, want ls's own /proc/<pid>/fd", target)
			}
		default:
			t.Errorf("inherited fd %s -> %s", fd, target)
		}
	}
	if len(fds) != 4 {
		t.Errorf("want fds 0-3, got %v:\n%s", fds, r)
	}
}

// forkBomb forks until the pids limit stops it. Its leader, init of the
// exec's pid namespace, then turns into sleep (exec needs no fork): were it
// to exit, the kernel would kill the whole namespace and end the bomb.
const forkBomb = `f() { f | f & }; f; exec sleep 30`

// TestLimitsForkBomb checks that a fork bomb stops at the pids limit and
// that other agents keep working meanwhile.
func TestLimitsForkBomb(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	wb := scratchDir(t, cfRunBomb)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "worker", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
		confAgent{name: "bomber", peer: cfPeerBomb, runAs: cfRunBomb, write: []string{wb}, limits: "{pids: 32}"},
	)})

	done := make(chan daemontest.Result, 1)
	go func() {
		done <- d.Run(t, cfPeerBomb, "", "exec", "--timeout", "5s", "--", "sh", "-c", forkBomb)
	}()
	maxSeen := 0
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			maxSeen = max(maxSeen, len(daemontest.ProcessesOf(cfRunBomb)))
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	for i := 0; i < 3; i++ {
		r := d.Exec(t, cfPeerA, "", "echo", "ok")
		if r.Code != 0 || r.Stdout != "ok\n" || r.Elapsed > 4*time.Second {
			t.Errorf("another agent's exec during the fork bomb (took %s):\n%s", r.Elapsed, r)
		}
		t.Logf("other agent's exec %d during the bomb took %s", i, r.Elapsed)
	}
	var r daemontest.Result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the fork bomb's exec did not end within 30s")
	}
	close(stop)
	<-sampled
	if r.Code == 0 {
		t.Errorf("fork bomb exec succeeded:\n%s", r)
	}
	if r.Elapsed > 15*time.Second {
		t.Errorf("fork bomb exec took %s with --timeout 5s", r.Elapsed)
	}
	if maxSeen > 32 {
		t.Errorf("saw %d processes of uid %d, over pids: 32", maxSeen, cfRunBomb)
	}
	if maxSeen < 8 {
		t.Errorf("saw at most %d processes of uid %d: the bomb did not fork, the test proves nothing", maxSeen, cfRunBomb)
	}
	waitFrom := time.Now()
	if left := daemontest.WaitNoProcesses(cfRunBomb, 10*time.Second); len(left) > 0 {
		t.Errorf("fork bomb processes outlived the exec: %v", left)
	}
	t.Logf("bomb processes gone %s after the exec ended", time.Since(waitFrom))
	t.Logf("fork bomb: %d processes at most; exec ended after %s with %d", maxSeen, r.Elapsed, r.Code)
}

// TestLimitsMemoryOOM checks that allocating past the memory limit ends
// in an OOM kill that the exit status and the CLI report.
func TestLimitsMemoryOOM(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wh := scratchDir(t, cfRunHog)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "hog", peer: cfPeerHog, runAs: cfRunHog, write: []string{wh}, limits: "{memory: 64Mi}"},
	)})
	// Control: well under the limit works.
	if r := d.Exec(t, cfPeerHog, "", "python3", "-c", "b = bytearray(16 << 20); print('ok')"); r.Code != 0 || r.Stdout != "ok\n" {
		t.Fatalf("control: 16 MiB under a 64 MiB limit:\n%s", r)
	}
	for _, argv := range [][]string{
		{"python3", "-c", "b = bytearray(1 << 30); print('allocated')"},
		{"sh", "-c", "head -c 1G /dev/zero | tail"},
	} {
		r := d.Exec(t, cfPeerHog, "", argv...)
		if r.Code != 137 || !strings.Contains(r.Stderr, "OOM") || strings.Contains(r.Stdout, "allocated") {
			t.Errorf("%v with memory: 64Mi: want exit 137 and an OOM note:\n%s", argv, r)
		}
	}
	if left := daemontest.WaitNoProcesses(cfRunHog, 5*time.Second); len(left) > 0 {
		t.Errorf("processes left after OOM: %v", left)
	}
}

// TestLimitsCleanupAfterManyExecs runs fifty execs that end every way
// (success, failure, timeout, OOM, fork bomb, not found, refused) and
// checks that nothing of them is left on the host.
func TestLimitsCleanupAfterManyExecs(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	wb := scratchDir(t, cfRunBomb)
	wh := scratchDir(t, cfRunHog)
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "worker", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
		confAgent{name: "bomber", peer: cfPeerBomb, runAs: cfRunBomb, write: []string{wb}, limits: "{pids: 32}"},
		confAgent{name: "hog", peer: cfPeerHog, runAs: cfRunHog, write: []string{wh}, limits: "{memory: 64Mi}"},
	)})
	uids := []uint32{cfRunA, cfRunBomb, cfRunHog}
	mountsBefore := mountCount(t)
	ownedBefore := map[string]bool{}
	for _, dir := range []string{"/tmp", "/dev/shm", "/var/tmp"} {
		for _, p := range dirEntriesOwnedBy(dir, uids...) {
			ownedBefore[p] = true
		}
	}

	type job struct {
		peer uint32
		args []string
		want func(daemontest.Result) bool
	}
	var jobs []job
	add := func(n int, j job) {
		for i := 0; i < n; i++ {
			jobs = append(jobs, j)
		}
	}
	code := func(c int) func(daemontest.Result) bool {
		return func(r daemontest.Result) bool { return r.Code == c }
	}
	add(104, job{cfPeerA, []string{"exec", "--", "sh", "-c", "echo x > /tmp/f; echo y > /dev/shm/f; sleep 0.05 & wait"}, code(0)})
	add(24, job{cfPeerA, []string{"exec", "--timeout", "1s", "--", "sleep", "30"}, code(137)})
	add(16, job{cfPeerA, []string{"exec", "--", "sh", "-c", "sleep 10 & exit 3"}, code(3)})
	add(16, job{cfPeerA, []string{"exec", "--", "no-such-command"}, code(127)})
	add(12, job{cfPeerA, []string{"exec", "--cwd", "/proc", "--", "true"}, code(125)})
	add(16, job{cfPeerHog, []string{"exec", "--", "python3", "-c", "b = bytearray(1 << 30)"}, code(137)})
	add(12, job{cfPeerBomb, []string{"exec", "--timeout", "2s", "--", "sh", "-c", forkBomb}, func(r daemontest.Result) bool { return r.Code != 0 }})
	if len(jobs) != 200 {
		t.Fatalf("%d jobs", len(jobs))
	}

	var wg sync.WaitGroup
	work := make(chan job)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				r := d.Run(t, j.peer, "", j.args...)
				if !j.want(r) {
					t.Errorf("%v as %d:\n%s", j.args, j.peer, r)
				}
			}
		}()
	}
	for i := range jobs {
		// Interleave the kinds of job.
		work <- jobs[(i*7)%len(jobs)]
	}
	close(work)
	wg.Wait()

	for _, uid := range uids {
		if left := daemontest.WaitNoProcesses(uid, 10*time.Second); len(left) > 0 {
			t.Errorf("processes of uid %d left: %v", uid, left)
		}
	}
	var groups, checked []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		groups, checked = cgroupExecDirs(t)
		if len(groups) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(checked) == 0 {
		t.Errorf("found no cgroup root deputy-test-%d in any hierarchy: the check proves nothing", os.Getpid())
	}
	if len(groups) > 0 {
		t.Errorf("cgroups left after the execs ended: %v", groups)
	}
	if got := mountCount(t); got != mountsBefore {
		t.Errorf("host mount count %d before, %d after", mountsBefore, got)
	}
	for _, dir := range []string{"/tmp", "/dev/shm", "/var/tmp"} {
		for _, p := range dirEntriesOwnedBy(dir, uids...) {
			if !ownedBefore[p] {
				t.Errorf("leftover on the host: %s", p)
			}
		}
	}
	if strings.Contains(d.Log(), "delete exec cgroup") || strings.Contains(d.Log(), "kill exec cgroup") {
		t.Errorf("daemon reported cgroup cleanup failures:\n%s", grepLines(d.Log(), "cgroup"))
	}
	t.Logf("checked cgroup roots %v", checked)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestThreatProtectedPathAbsent checks that a protected path which does not
// exist yet cannot be created by an agent that may write its parent: a
// planted directory of forged logs, or a symlink that a root service later
// follows, would defeat the protection. The daemon creates it, root-owned,
// at start; every sandbox then mounts it read-only.
func TestThreatProtectedPathAbsent(t *testing.T) {
	sandboxtest.RequireRoot(t)
	parent := scratchDir(t, cfRunA)
	missing := filepath.Join(parent, "logs")
	if _, err := os.Lstat(missing); !os.IsNotExist(err) {
		t.Fatalf("%s exists before the daemon starts: %v", missing, err)
	}
	d := daemontest.Start(t, daemontest.Options{
		Config: fmt.Sprintf("protectedPaths: [/var/log, %s]\n", missing),
		Profiles: profilesOf(confAgent{
			name: "planter", peer: cfPeerA, runAs: cfRunA, write: []string{parent},
		}),
	})
	checkCreated := func() {
		t.Helper()
		fi, err := os.Lstat(missing)
		if err != nil {
			t.Fatalf("the daemon did not create protected path %s: %v", missing, err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || st.Uid != 0 || fi.Mode().Perm() != 0o755 {
			t.Fatalf("protected path %s: %s owner %d, want a root-owned 0755 directory", missing, fi.Mode(), st.Uid)
		}
		entries, _ := os.ReadDir(missing)
		if len(entries) != 0 {
			t.Fatalf("something was planted in %s: %v", missing, entries)
		}
	}
	checkCreated()
	for _, script := range []string{
		`mkdir "$1"; echo "Jan  1 00:00:00 host sshd: forged" > "$1/syslog"; echo ok > "$2/control"`,
		`rmdir "$1"; mv "$1" "$2/moved"; ln -s "$2/elsewhere" "$1"; echo ok > "$2/control"`,
	} {
		r := d.Exec(t, cfPeerA, "", "sh", "-c", script, "sh", missing, parent)
		control := filepath.Join(parent, "control")
		if _, err := os.Stat(control); err != nil {
			t.Fatalf("control: the agent could not write its parent directory: %v\n%s", err, r)
		}
		os.Remove(control)
		checkCreated()
	}

	// A protected path that is a symlink is refused at start: the
	// read-only mount would protect whatever it points to.
	deputyd, _ := daemontest.Binaries(t)
	dir := t.TempDir()
	link := filepath.Join(parent, "link")
	if err := os.Symlink(parent, link); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "profiles"), 0o755)
	out, err := exec.Command(deputyd, "--config", writeFile(t, dir, "c.yaml", fmt.Sprintf("protectedPaths: [%s]\n", link)),
		"--profiles", filepath.Join(dir, "profiles"), "--state", filepath.Join(dir, "state"), "--socket", filepath.Join(dir, "run", "s.sock")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "symlink") {
		t.Fatalf("deputyd with a symlinked protected path: want a refusal naming the symlink, got %v\n%s", err, out)
	}
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIsolationCwdSymlink checks the cwd rules against a symlink in the
// agent's own tree: the working directory the command gets must obey the
// same rules as a --cwd written out (not under /proc, not outside the
// profile's paths).
func TestIsolationCwdSymlink(t *testing.T) {
	sandboxtest.RequireRoot(t)
	wa := scratchDir(t, cfRunA)
	for name, target := range map[string]string{"to-proc": "/proc", "to-etc": "/etc", "to-self": "."} {
		if err := os.Symlink(target, filepath.Join(wa, name)); err != nil {
			t.Fatal(err)
		}
	}
	d := daemontest.Start(t, daemontest.Options{Profiles: profilesOf(
		confAgent{name: "cwd", peer: cfPeerA, runAs: cfRunA, write: []string{wa}},
	)})
	// Control: a symlink that stays inside the grant works.
	if r := d.Run(t, cfPeerA, "", "exec", "--cwd", filepath.Join(wa, "to-self"), "--", "pwd", "-P"); r.Code != 0 || strings.TrimSpace(r.Stdout) != wa {
		t.Fatalf("control: --cwd through a symlink inside the grant:\n%s", r)
	}
	for _, link := range []string{"to-proc", "to-etc"} {
		r := d.Run(t, cfPeerA, "", "exec", "--cwd", filepath.Join(wa, link), "--", "pwd", "-P")
		if r.Code == 0 {
			t.Errorf("--cwd %s/%s: the command ran in %s; want the cwd refused (125) like --cwd %s:\n%s",
				wa, link, strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stdout), r)
		}
	}
}

// failedSyscalls returns the exec's failed syscall records that name an
// errno and an absolute path (or are a namespace or mount call, which take
// none), once the exec's exec.exit record is on disk.
func failedSyscalls(t *testing.T, d *daemontest.Daemon, corr string) []*audit.Record {
	t.Helper()
	recs := waitExit(t, d, audit.Filter{CorrelationID: corr})
	var out []*audit.Record
	for _, r := range recs {
		if r.Action != audit.ActionSyscall || r.Result == audit.ResultSuccess || r.Errno == "" {
			continue
		}
		if strings.HasPrefix(r.Resource, "/") || r.Syscall == "unshare" || r.Syscall == "setns" {
			out = append(out, r)
		}
	}
	return out
}
