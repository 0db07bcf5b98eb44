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
