package seccomp

import (
	"fmt"
	"slices"
)

const (
	// insnSize is sizeof(struct sock_filter): u16 code, u8 jt, u8 jf, u32 k.
	insnSize = 8
	// maxInsns is BPF_MAXINSNS; the kernel refuses longer programs with EINVAL.
	maxInsns = 4096
)

// Filter is a compiled classic-BPF seccomp program in the host's byte order, ready for Install.
// It is immutable: Bytes and FilterFromBytes copy.
type Filter struct {
	prog []byte
}

// Bytes returns a copy of the program as the kernel reads it: struct sock_filter records in host byte order.
// This is what the daemon passes to the init helper.
func (f *Filter) Bytes() []byte {
	return slices.Clone(f.prog)
}

// FilterFromBytes rebuilds a Filter from Bytes, as the init helper does with what the daemon sent.
func FilterFromBytes(b []byte) (*Filter, error) {
	if err := checkProgram(b); err != nil {
		return nil, err
	}
	return &Filter{prog: slices.Clone(b)}, nil
}

// checkProgram catches truncation in transit early, with a clearer error than the kernel's EINVAL.
func checkProgram(b []byte) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("seccomp program: empty")
	case len(b)%insnSize != 0:
		return fmt.Errorf("seccomp program: length %d is not a multiple of %d", len(b), insnSize)
	case len(b)/insnSize > maxInsns:
		return fmt.Errorf("seccomp program: %d instructions exceed the kernel limit of %d", len(b)/insnSize, maxInsns)
	}
	return nil
}
