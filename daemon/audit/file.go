package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrCorrupt is returned (wrapped) when the log holds a record that is not what this package wrote: a complete line
// that does not parse or whose hash does not match its content. Verify says precisely what is wrong.
var ErrCorrupt = errors.New("audit log corrupt")

const (
	filePrefix = "audit-"
	fileSuffix = ".log"

	// hashMember is the fixed tail of every line: ,"hash":"<64 hex>"}
	hashMemberLen = len(`,"hash":"`) + 64 + len(`"}`)
	// prevMember precedes it: "prev_hash":"<64 hex>"
	prevMemberLen = len(`"prev_hash":"`) + 64 + len(`"`)
)

// fileName returns the name of the index'th log file.
func fileName(index int) string {
	return fmt.Sprintf("%s%06d%s", filePrefix, index, fileSuffix)
}

// parseFileName returns the index of a log file name, or false if name is not one.
func parseFileName(name string) (int, bool) {
	if !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
		return 0, false
	}
	digits := name[len(filePrefix) : len(name)-len(fileSuffix)]
	if len(digits) < 6 {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n <= 0 || fileName(n) != name {
		return 0, false
	}
	return n, true
}

type logFile struct {
	index int
	path  string
}

// listFiles returns the log files in dir in index order.
func listFiles(dir string) ([]logFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []logFile
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if n, ok := parseFileName(e.Name()); ok {
			files = append(files, logFile{index: n, path: filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].index < files[j].index })
	return files, nil
}

// line is the chain-relevant part of one record line, sliced out of the line without decoding JSON.
type line struct {
	seq  uint64
	body []byte // the line up to, not including, ,"hash":...
	prev []byte // prev_hash hex
	hash []byte // hash hex
}

// parseLine extracts seq, prev_hash and hash from a line (without its newline). It relies on the fixed member order
// that appendRecordBody writes; a line that does not have it was not written by this package.
func parseLine(b []byte) (line, error) {
	var l line
	const seqPrefix = `{"seq":`
	if !bytes.HasPrefix(b, []byte(seqPrefix)) {
		return l, errors.New(`line does not start with {"seq":`)
	}
	i := len(seqPrefix)
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == i || j == len(b) || b[j] != ',' {
		return l, errors.New("bad seq")
	}
	seq, err := strconv.ParseUint(string(b[i:j]), 10, 64)
	if err != nil {
		return l, fmt.Errorf("bad seq: %w", err)
	}
	l.seq = seq
	n := len(b)
	if n < j+1+prevMemberLen+hashMemberLen {
		return l, errors.New("line too short")
	}
	hm := b[n-hashMemberLen:]
	if !bytes.HasPrefix(hm, []byte(`,"hash":"`)) || !bytes.HasSuffix(hm, []byte(`"}`)) {
		return l, errors.New("hash member missing or not last")
	}
	l.hash = hm[len(`,"hash":"`) : len(hm)-2]
	pm := b[n-hashMemberLen-prevMemberLen : n-hashMemberLen]
	if b[n-hashMemberLen-prevMemberLen-1] != ',' || !bytes.HasPrefix(pm, []byte(`"prev_hash":"`)) || pm[len(pm)-1] != '"' {
		return l, errors.New("prev_hash member missing or misplaced")
	}
	l.prev = pm[len(`"prev_hash":"`) : len(pm)-1]
	if !isHex(l.hash) || !isHex(l.prev) {
		return l, errors.New("hash is not 64 lowercase hex digits")
	}
	l.body = b[:n-hashMemberLen]
	return l, nil
}

func isHex(b []byte) bool {
	if len(b) != 64 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// hasher computes record hashes with one reused sha256 state.
type hasher struct {
	h   hash.Hash
	sum [sha256.Size]byte
	hex [2 * sha256.Size]byte
}

func newHasher() *hasher { return &hasher{h: sha256.New()} }

var closeBrace = []byte{'}'}

// compute returns hex(sha256(prev || body || "}")). The result aliases the hasher and is valid until the next call.
func (h *hasher) compute(prev, body []byte) []byte {
	h.h.Reset()
	h.h.Write(prev)
	h.h.Write(body)
	h.h.Write(closeBrace)
	h.h.Sum(h.sum[:0])
	hex.Encode(h.hex[:], h.sum[:])
	return h.hex[:]
}

// readLastLine returns the offset and content of the last newline-terminated line of f's first size bytes that
// ends at or before end, reading backwards in growing chunks so that opening a large file stays cheap. ok is false
// if there is no complete line before end.
func readLastLine(f *os.File, end int64) (start int64, content []byte, ok bool, err error) {
	if end <= 0 {
		return 0, nil, false, nil
	}
	chunk := int64(16 << 10)
	for {
		from := max(end-chunk, 0)
		buf := make([]byte, end-from)
		if _, err := f.ReadAt(buf, from); err != nil {
			return 0, nil, false, err
		}
		if buf[len(buf)-1] != '\n' {
			return 0, nil, false, errors.New("readLastLine: end is not at a newline")
		}
		body := buf[:len(buf)-1]
		if i := bytes.LastIndexByte(body, '\n'); i >= 0 {
			return from + int64(i) + 1, body[i+1:], true, nil
		}
		if from == 0 {
			return 0, body, true, nil
		}
		chunk *= 4
	}
}

// tornTail returns the offset just past the last newline in f's first size bytes: everything after it is a torn,
// incomplete line.
func tornTail(f *os.File, size int64) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	end := size
	for end > 0 {
		from := max(end-chunk, 0)
		b := buf[:end-from]
		if _, err := f.ReadAt(b, from); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return from + int64(i) + 1, nil
		}
		end = from
	}
	return 0, nil
}
