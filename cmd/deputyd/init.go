package main

import "github.com/deputyhq/deputy/sandbox"

// The init helper is this same binary re-executed with sandbox.InitArg, as
// `runc init` is runc. Dispatching from init() means it runs before main and
// before any goroutine of ours exists, on the main thread, which
// sandbox.Init locks for the rest of the process's life.
func init() {
	if sandbox.IsInit() {
		sandbox.Init() // never returns
	}
}
