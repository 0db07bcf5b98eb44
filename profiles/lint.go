package profiles

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Warning is something legal that an admin should look at twice.
type Warning struct {
	File string
	Line int
	Msg  string
}

func (w Warning) String() string {
	return fmt.Sprintf("%s:%d: warning: %s", w.File, w.Line, w.Msg)
}

// Lint returns the warnings for every profile in set, by file and line.
// protected are the daemon config's protected paths, which always win over
// a profile's grants; a grant that overlaps one does less than it says.
func Lint(set *Set, protected []string) []Warning {
	var ws []Warning
	for _, p := range set.All() {
		pp := set.src[p]
		warn := func(path, format string, args ...any) {
			ws = append(ws, Warning{File: p.File, Line: pp.idx.line(path), Msg: fmt.Sprintf(format, args...)})
		}
		fs := p.Filesystem
		for _, g := range []struct {
			kind, effect string
			paths        []string
		}{
			{"read", "the daemon's protection of that path wins over this grant", fs.Read},
			{"write", "the protected path stays read-only", fs.Write},
			{"exec", "the daemon's protection of that path wins over this grant", fs.Exec},
		} {
			for i, path := range g.paths {
				for _, prot := range protected {
					prot = filepath.Clean(prot)
					if overlaps(path, prot) {
						warn(fmt.Sprintf("filesystem.%s[%d]", g.kind, i), "%s grant %s overlaps protected path %s: %s", g.kind, path, prot, g.effect)
					}
				}
			}
		}
		// Write plus exec on one tree lets the agent run code it wrote,
		// which makes the exec list no boundary at all.
		for i, w := range fs.Write {
			for _, x := range fs.Exec {
				if overlaps(w, x) {
					warn(fmt.Sprintf("filesystem.write[%d]", i), "write grant %s overlaps exec grant %s: the agent can run programs it writes", w, x)
				}
			}
		}
		if p.Network == NetworkHost {
			warn("network", "network: host shares the host's network namespace: the agent can reach every local service")
		}
		for i, o := range p.Seccomp.Allow {
			warn(fmt.Sprintf("seccomp.allow[%d]", i), "seccomp override allows %s (reason: %s)", o.Syscall, o.Reason)
		}
		if c := p.Commands; c != nil {
			if c.Default == ActionAllow {
				warn("commands.default", "commands.default: allow runs every program filesystem.exec grants that no rule denies: a copy or a new name of a denied program is not denied")
			}
			for i, r := range c.Rules {
				if !r.Allows() {
					continue
				}
				path := fmt.Sprintf("commands.rules[%d].allow", i)
				if isInterpreter(r.Allow) {
					warn(path, "rule %s allows %s, an interpreter: argument rules can be bypassed through it", r.ID, r.Allow)
				}
				// The rule trusts a path, not a file: whoever can write the
				// path picks the program.
				for _, w := range fs.Write {
					if within(r.Allow, w) {
						warn(path, "rule %s allows %s, under write grant %s: the agent can replace the program", r.ID, r.Allow, w)
					}
				}
			}
		}
	}
	return ws
}

// overlaps reports whether a and b are equal or one lies inside the other,
// comparing whole path elements: /var/logs is not inside /var/log.
func overlaps(a, b string) bool {
	return within(a, b) || within(b, a)
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	if dir == "/" || path == dir {
		return true
	}
	return strings.HasPrefix(path, dir+"/")
}

// interpreters run code given as arguments, on stdin or in files, which a
// glob over argv cannot inspect. env, xargs and busybox run any program
// they are told to.
var interpreters = []string{"sh", "bash", "dash", "zsh", "ksh", "python", "python3", "perl", "ruby", "node", "env", "busybox", "xargs"}

// isInterpreter reports whether program's base name is an interpreter,
// versioned names included (python3.11, perl5.36).
func isInterpreter(program string) bool {
	base := filepath.Base(program)
	for _, name := range interpreters {
		if base == name {
			return true
		}
		if rest, ok := strings.CutPrefix(base, name); ok && strings.Trim(rest, "0123456789.") == "" && name != "sh" {
			return true
		}
	}
	return false
}
