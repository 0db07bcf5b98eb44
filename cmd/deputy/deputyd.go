package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// execDeputyd replaces this process with `deputyd args...`, for the checks
// that are the daemon's own code (see cmd/deputyd/check.go). deputyd is
// looked for beside this binary first, so that a deputy always runs the
// deputyd it was installed with, then in PATH.
func execDeputyd(args ...string) error {
	path := ""
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "deputyd"); isExecutable(p) {
			path = p
		}
	}
	if path == "" {
		p, err := exec.LookPath("deputyd")
		if err != nil {
			return &exitError{code: exitFailed, msg: "deputy: this check runs deputyd's own code, and deputyd is neither beside deputy nor in PATH"}
		}
		path = p
	}
	err := syscall.Exec(path, append([]string{"deputyd"}, args...), os.Environ())
	return &exitError{code: exitFailed, msg: fmt.Sprintf("deputy: run %s: %v", path, err)}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
