package sandbox

// The init helper is C (init_linux.c), run from an ELF constructor before
// the Go runtime starts, as runc's nsexec is. This import makes cgo compile
// it into every binary that links this package.

// #cgo CFLAGS: -Wall -Wextra
import "C"
