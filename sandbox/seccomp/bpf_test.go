package seccomp

import (
	"encoding/binary"
	"fmt"
)

// Constants from <linux/seccomp.h>, <linux/audit.h> and <linux/filter.h>, spelled out so that this interpreter
// runs anywhere.
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retAllow       = 0x7fff0000
	retActionFull  = 0xffff0000
	retData        = 0x0000ffff

	auditArchX86_64  = 0xc000003e
	auditArchI386    = 0x40000003
	auditArchAArch64 = 0xc00000b7

	x32SyscallBit = 0x40000000

	seccompDataSize = 64
)

// seccompData is struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
type seccompData struct {
	nr   int32
	arch uint32
	ip   uint64
	args [6]uint64
}

// bytes lays out the struct in host byte order, as the kernel presents it to the filter.
func (d seccompData) bytes() []byte {
	b := make([]byte, seccompDataSize)
	binary.NativeEndian.PutUint32(b[0:], uint32(d.nr))
	binary.NativeEndian.PutUint32(b[4:], d.arch)
	binary.NativeEndian.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		binary.NativeEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// runBPF interprets a classic-BPF seccomp program the way the kernel's seccomp checker allows it to be written:
// loads from seccomp_data, scratch memory, ALU, jumps and returns. It fails on anything else rather than guess.
func runBPF(prog []byte, d seccompData) (uint32, error) {
	if err := checkProgram(prog); err != nil {
		return 0, err
	}
	data := d.bytes()
	n := len(prog) / insnSize
	var a, x uint32
	var mem [16]uint32
	for pc := 0; pc < n; pc++ {
		rec := prog[pc*insnSize:]
		code := binary.NativeEndian.Uint16(rec[0:])
		jt, jf := int(rec[2]), int(rec[3])
		k := binary.NativeEndian.Uint32(rec[4:])
		switch code & 0x07 {
		case 0x00, 0x01: // BPF_LD, BPF_LDX
			var v uint32
			switch code & 0xe0 {
			case 0x00: // BPF_IMM
				v = k
			case 0x20: // BPF_ABS
				if code&0x18 != 0x00 || k%4 != 0 || int(k)+4 > len(data) {
					return 0, fmt.Errorf("pc %d: bad load %#x k=%d", pc, code, k)
				}
				v = binary.NativeEndian.Uint32(data[k:])
			case 0x60: // BPF_MEM
				if k >= 16 {
					return 0, fmt.Errorf("pc %d: bad mem slot %d", pc, k)
				}
				v = mem[k]
			case 0x80: // BPF_LEN
				v = seccompDataSize
			default:
				return 0, fmt.Errorf("pc %d: unsupported load mode %#x", pc, code)
			}
			if code&0x07 == 0x00 {
				a = v
			} else {
				x = v
			}
		case 0x02, 0x03: // BPF_ST, BPF_STX
			if k >= 16 {
				return 0, fmt.Errorf("pc %d: bad mem slot %d", pc, k)
			}
			if code&0x07 == 0x02 {
				mem[k] = a
			} else {
				mem[k] = x
			}
		case 0x04: // BPF_ALU
			src := k
			if code&0x08 != 0 {
				src = x
			}
			switch code & 0xf0 {
			case 0x00:
				a += src
			case 0x10:
				a -= src
			case 0x20:
				a *= src
			case 0x30:
				if src == 0 {
					return 0, nil
				}
				a /= src
			case 0x40:
				a |= src
			case 0x50:
				a &= src
			case 0x60:
				a <<= src
			case 0x70:
				a >>= src
			case 0x80:
				a = -a
			case 0xa0:
				a ^= src
			default:
				return 0, fmt.Errorf("pc %d: unsupported alu %#x", pc, code)
			}
		case 0x05: // BPF_JMP
			src := k
			if code&0x08 != 0 {
				src = x
			}
			var taken bool
			switch code & 0xf0 {
			case 0x00: // BPF_JA
				pc += int(k)
				continue
			case 0x10:
				taken = a == src
			case 0x20:
				taken = a > src
			case 0x30:
				taken = a >= src
			case 0x40:
				taken = a&src != 0
			default:
				return 0, fmt.Errorf("pc %d: unsupported jump %#x", pc, code)
			}
			if taken {
				pc += jt
			} else {
				pc += jf
			}
		case 0x06: // BPF_RET
			switch code & 0x18 {
			case 0x00:
				return k, nil
			case 0x10:
				return a, nil
			default:
				return 0, fmt.Errorf("pc %d: unsupported ret %#x", pc, code)
			}
		case 0x07: // BPF_MISC
			switch code & 0xf8 {
			case 0x00: // BPF_TAX
				x = a
			case 0x80: // BPF_TXA
				a = x
			default:
				return 0, fmt.Errorf("pc %d: unsupported misc %#x", pc, code)
			}
		}
	}
	return 0, fmt.Errorf("program fell off its end")
}

// describeRet names a seccomp return value for test messages.
func describeRet(r uint32) string {
	switch r & retActionFull {
	case retKillProcess:
		return "KILL_PROCESS"
	case retKillThread:
		return "KILL_THREAD"
	case retTrap:
		return "TRAP"
	case retErrno:
		return fmt.Sprintf("ERRNO(%d)", r&retData)
	case retAllow:
		return "ALLOW"
	}
	return fmt.Sprintf("%#x", r)
}
