// Package bpf loads Deputy's eBPF syscall tracer and decodes its records.
//
// The kernel side (trace.bpf.c) records every syscall and every fork, exec and
// exit of the processes in tracked cgroup2 groups into a ring buffer; events.h
// is the record ABI. The generated bindings are committed: run
// `go generate ./bpf/` after changing the C sources, and scripts/update-vmlinux
// to move to a newer pinned kernel BTF.
package bpf

// -target amd64: x86_64 hosts only; events.h, the arch detection and the
// syscall tables are x86-specific. -mcpu=v3 (kernel 5.1+) gives 32-bit ALU and
// jumps, fewer instructions per event.
//go:generate go run ./internal/gensyscalls -in64 include/unistd_64.h -in32 include/unistd_32.h -args include/syscall_args.txt -out syscalls_table.go
//go:generate go tool bpf2go -tags linux -target amd64 -cflags "-O2 -g -Wall -Werror -mcpu=v3" -type dpt_hdr -type dpt_syscall -type dpt_paths -type dpt_path_event -type dpt_execve_data -type dpt_execve_event -type dpt_sockaddr_data -type dpt_sockaddr_event -type dpt_fork_event -type dpt_exec_event -type dpt_exit_event -type dpt_class -type dpt_kind -type dpt_arch -type dpt_flag -type dpt_class_kind -type dpt_class_flag -type dpt_stat trace trace.bpf.c -- -I./include
