package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Errors of ResolveProgram, for the daemon to map to status codes.
var (
	// ErrNotFound: no executable file by that name or path.
	ErrNotFound = errors.New("program not found")
	// ErrRelativeProgram: argv[0] is a relative path such as ./x or bin/x.
	ErrRelativeProgram = errors.New("relative program path")
)

// defaultPath is what the daemon gives a command without PATH in its
// environment (see daemon.buildEnv) and what the init helper searches.
const defaultPath = "/usr/local/bin:/usr/bin:/bin"

// maxLinks bounds symlink hops, as the kernel's ELOOP limit does.
const maxLinks = 40

// ResolveProgram returns the canonical absolute path of the program argv0
// names: a bare name is looked up in pathEnv (":"-separated; empty means
// the default PATH) as a shell would, skipping relative entries as the init
// helper does; an absolute path is taken as is. Then every symlink and ".."
// is resolved, so that /usr/bin/../bin/rm, /bin/rm (where /bin links to
// usr/bin) and a symlink to /usr/bin/rm all come out as /usr/bin/rm.
//
// Resolution is by name, never by content: a copy of /usr/bin/rm is
// another program with another path. That is why a command policy should
// default to deny: an allow rule names the one path it trusts, while a deny
// rule can be walked around by any copy the agent can make and execute.
//
// root, when not "" or "/", is a directory that stands for "/": every
// lookup and every absolute symlink target stays inside it, and the result
// is a path within root ("/usr/bin/rm", not root+"/usr/bin/rm"). Tests use
// it for a fake tree.
//
// A relative argv0 with a '/' (./run.sh) depends on the working directory;
// the caller joins it to the exec's cwd first, else ErrRelativeProgram.
func ResolveProgram(argv0, pathEnv, root string) (string, error) {
	if root == "" {
		root = "/"
	}
	switch {
	case argv0 == "":
		return "", fmt.Errorf("resolve program: empty argv[0]: %w", ErrNotFound)
	case strings.ContainsRune(argv0, '/'):
		if !filepath.IsAbs(argv0) {
			return "", fmt.Errorf("resolve program %s: join it to the working directory first: %w", argv0, ErrRelativeProgram)
		}
		return resolveFile(root, argv0)
	}
	if pathEnv == "" {
		pathEnv = defaultPath
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		// A relative PATH entry would depend on the cwd; the init helper
		// skips it too, so both ends agree on what a name means.
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		if p, err := resolveFile(root, filepath.Join(dir, argv0)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("resolve program %s in PATH %s: %w", argv0, pathEnv, ErrNotFound)
}

// resolveFile canonicalizes path inside root and checks that it names a
// regular file with an execute bit.
func resolveFile(root, path string) (string, error) {
	c, err := canonicalIn(root, path)
	if err != nil {
		return "", fmt.Errorf("resolve program %s: %w", path, err)
	}
	fi, err := os.Stat(hostPath(root, c))
	if err != nil {
		return "", fmt.Errorf("resolve program %s: %v: %w", path, err, ErrNotFound)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("resolve program %s (%s): not an executable file: %w", path, c, ErrNotFound)
	}
	return c, nil
}

func hostPath(root, p string) string {
	if root == "/" {
		return p
	}
	return filepath.Join(root, p)
}

// canonicalIn resolves every symlink and ".." of the absolute path p as
// the kernel would with root as "/": ".." is taken after the links before
// it are resolved (a/link/.. is the parent of the link's target), and ".."
// at the root stays at the root. The result is clean and absolute.
func canonicalIn(root, p string) (string, error) {
	resolved := "/"
	rest := p
	links := 0
	for rest != "" {
		var elem string
		elem, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch elem {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved)
			continue
		}
		next := filepath.Join(resolved, elem)
		fi, err := os.Lstat(hostPath(root, next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("%s does not exist: %w", next, ErrNotFound)
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(hostPath(root, next))
		if err != nil {
			return "", err
		}
		// An absolute target starts again from root; a relative one from
		// the link's directory. Either way the unresolved rest follows.
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = target + "/" + rest
	}
	return resolved, nil
}
