package profiles

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in one file, at the line of the YAML node that causes
// it, so that an admin can jump straight to it.
type Error struct {
	File string
	// Line is 1-based; 0 means the problem has no position (an unreadable
	// file, a missing directory).
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// ErrorList holds every problem found in a load, so that a caller can print
// all of them at once instead of making the admin fix one per run.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Err returns nil for an empty list, so that `return errs.Err()` never yields
// a non-nil error interface holding an empty list.
func (l ErrorList) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// sort orders the list by file, then line; stable, so that problems on one
// line keep the order of the checks that found them.
func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool {
		if l[i].File != l[j].File {
			return l[i].File < l[j].File
		}
		return l[i].Line < l[j].Line
	})
}

// appendErr adds err to l, flattening an ErrorList and wrapping any other
// error with file and no line.
func (l ErrorList) appendErr(file string, err error) ErrorList {
	switch e := err.(type) {
	case nil:
		return l
	case ErrorList:
		return append(l, e...)
	case *Error:
		return append(l, e)
	default:
		return append(l, &Error{File: file, Msg: err.Error()})
	}
}
