package sandbox

import "fmt"

// ErrorKind classifies a failure of the init helper so the daemon can map it
// to the right gRPC status without parsing messages.
type ErrorKind string

const (
	// KindNotFound: the command does not exist in the sandbox.
	KindNotFound ErrorKind = "not_found"
	// KindPermission: the command or cwd exists but the confinement (or file
	// permissions) forbids it.
	KindPermission ErrorKind = "permission"
	// KindInvalid: the request cannot run as given (a cwd that is missing).
	KindInvalid ErrorKind = "invalid"
	// KindSetup: the sandbox could not be built; the host lacks something or
	// the helper failed.
	KindSetup ErrorKind = "setup"
)

// InitError is a failure the helper reported before execve. Nothing of the
// command ran.
type InitError struct {
	// Step is the setup step that failed ("mount", "landlock", "execve"...).
	Step string    `json:"step"`
	Kind ErrorKind `json:"kind"`
	Msg  string    `json:"msg"`
}

func (e *InitError) Error() string { return fmt.Sprintf("sandbox %s: %s", e.Step, e.Msg) }

// syncMsg is one message on the helper's sync pipe: an error, or the marker
// written right before execve. EOF after the marker (the pipe is
// close-on-exec) means the command is running.
type syncMsg struct {
	Type  string     `json:"type"` // "exec" or "error"
	Error *InitError `json:"error,omitempty"`
}
