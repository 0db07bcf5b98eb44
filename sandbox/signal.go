package sandbox

import (
	"bytes"
	"strconv"
	"syscall"
)

// statusHasSignal reports whether a /proc/<pid>/status text shows sig as
// caught (SigCgt) or ignored (SigIgn).
func statusHasSignal(status []byte, sig syscall.Signal) bool {
	if sig < 1 || sig > 64 {
		return false
	}
	bit := uint64(1) << (uint(sig) - 1)
	for _, line := range bytes.Split(status, []byte("\n")) {
		for _, field := range [][]byte{[]byte("SigCgt:"), []byte("SigIgn:")} {
			if v, ok := bytes.CutPrefix(line, field); ok {
				mask, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
				if err == nil && mask&bit != 0 {
					return true
				}
			}
		}
	}
	return false
}
