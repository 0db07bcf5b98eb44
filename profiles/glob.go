package profiles

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// ErrBadGlob is wrapped by CheckGlob's errors.
var ErrBadGlob = errors.New("not a valid glob")

// The argument globs of command rules follow the shell rather than
// path.Match: an argument is not a path, so '*' and '?' match '/' too
// ("--state=/var/*" must match "--state=/var/tmp/x"), and a class is
// negated by '!' as well as '^', so the shell idiom "-[!-]*" works (it is
// a syntax error for path.Match). '-' is literal first or last in a class
// and ']' is literal first, as in the shell.

// CheckGlob returns an error wrapping ErrBadGlob if pattern is malformed:
// an unterminated class, a reversed range, a trailing '\' or a NUL byte.
func CheckGlob(pattern string) error {
	bad := func(why string) error { return fmt.Errorf("%q: %s: %w", pattern, why, ErrBadGlob) }
	for i := 0; i < len(pattern); {
		switch pattern[i] {
		case 0:
			return bad("contains a NUL byte")
		case '\\':
			if i+1 >= len(pattern) {
				return bad(`ends in '\'`)
			}
			_, w := utf8.DecodeRuneInString(pattern[i+1:])
			i += 1 + w
		case '[':
			n, err := scanClass(pattern[i:])
			if err != "" {
				return bad(err)
			}
			i += n
		default:
			i++
		}
	}
	return nil
}

// scanClass checks the class at the start of p and returns its length.
func scanClass(p string) (int, string) {
	i := 1
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		i++
	}
	for first := true; ; first = false {
		if i >= len(p) {
			return 0, "unterminated '['"
		}
		if p[i] == ']' && !first {
			return i + 1, ""
		}
		lo, w, ok := classChar(p, i)
		if !ok {
			return 0, `ends in '\'`
		}
		i += w
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi, w, ok := classChar(p, i+1)
			if !ok {
				return 0, `ends in '\'`
			}
			if hi < lo {
				return 0, fmt.Sprintf("range %c-%c is reversed", lo, hi)
			}
			i += 1 + w
		}
	}
}

// classChar decodes one possibly escaped character of a class at p[i].
func classChar(p string, i int) (r rune, width int, ok bool) {
	if p[i] == '\\' {
		if i+1 >= len(p) {
			return 0, 0, false
		}
		r, w := utf8.DecodeRuneInString(p[i+1:])
		return r, 1 + w, true
	}
	r, w := utf8.DecodeRuneInString(p[i:])
	return r, w, true
}

// matchClass matches r against the class at the start of p, which
// CheckGlob has accepted, and returns the class's length.
func matchClass(p string, r rune) (bool, int) {
	i, negate, matched := 1, false, false
	if p[i] == '!' || p[i] == '^' {
		negate = true
		i++
	}
	for first := true; ; first = false {
		if p[i] == ']' && !first {
			return matched != negate, i + 1
		}
		lo, w, _ := classChar(p, i)
		i += w
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi, w, _ = classChar(p, i+1)
			i += 1 + w
		}
		if lo <= r && r <= hi {
			matched = true
		}
	}
}

// MatchGlob reports whether s matches the whole of pattern. A pattern that
// CheckGlob refuses matches nothing.
func MatchGlob(pattern, s string) bool {
	if CheckGlob(pattern) != nil {
		return false
	}
	// Iterative matching with one backtrack point, the last '*': on a
	// mismatch, let that star swallow one more character and retry. Linear
	// memory, and at worst len(pattern)*len(s) steps, with no recursion a
	// hostile argument could deepen.
	px, sx := 0, 0
	starPx, starSx := -1, -1
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				if sx < len(s) {
					_, w := utf8.DecodeRuneInString(s[sx:])
					px, sx = px+1, sx+w
					continue
				}
			case '[':
				if sx < len(s) {
					r, w := utf8.DecodeRuneInString(s[sx:])
					if ok, n := matchClass(pattern[px:], r); ok {
						px, sx = px+n, sx+w
						continue
					}
				}
			default:
				lit := px
				if c == '\\' {
					lit++
				}
				pr, pw := utf8.DecodeRuneInString(pattern[lit:])
				if sx < len(s) {
					if r, w := utf8.DecodeRuneInString(s[sx:]); r == pr {
						px, sx = lit+pw, sx+w
						continue
					}
				}
			}
		}
		if starPx >= 0 && starSx < len(s) {
			_, w := utf8.DecodeRuneInString(s[starSx:])
			starSx += w
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	return true
}
