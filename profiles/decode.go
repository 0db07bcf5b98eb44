package profiles

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// DecodeStrict decodes one YAML document into v, refusing unknown fields,
// duplicate keys, wrong types, an empty file and a file with more than one
// document. The error is an *Error whose message names the offending field
// ("runAs.uid: ...") and whose Line is that field's line. The daemon config
// loader uses it too, so that every file Deputy reads fails the same way.
func DecodeStrict(file string, data []byte, v any) error {
	_, err := decode(file, data, v)
	return err
}

// decode is DecodeStrict that also returns the position index of the
// document, which validation uses to put a line on semantic errors.
func decode(file string, data []byte, v any) (*index, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, convertErr(file, nil, err)
	}
	if len(f.Docs) == 0 || f.Docs[0].Body == nil {
		return nil, &Error{File: file, Line: 1, Msg: "empty document: want a mapping"}
	}
	// A second document would be silently ignored by a plain decode; one
	// file is one profile, so say so instead.
	if len(f.Docs) > 1 {
		line := 1
		if d := f.Docs[1]; d.Start != nil {
			line = d.Start.Position.Line
		} else if d.Body != nil {
			line = d.Body.GetToken().Position.Line
		}
		return nil, &Error{File: file, Line: line, Msg: "more than one YAML document: a file holds exactly one"}
	}
	idx := newIndex(f.Docs[0].Body)
	if err := yaml.NodeToValue(f.Docs[0].Body, v, yaml.Strict()); err != nil {
		return nil, convertErr(file, idx, err)
	}
	return idx, nil
}

// pos is a token's position, the key that joins a decoder error back to the
// YAML path of the node it is about.
type pos struct{ line, col int }

func posOf(t *token.Token) pos {
	if t == nil || t.Position == nil {
		return pos{}
	}
	return pos{t.Position.Line, t.Position.Column}
}

// index maps YAML paths ("runAs.uid", "filesystem.write[0]") to lines, and
// token positions back to paths. It is built by one walk of the AST rather
// than a yaml.PathString query per field, which would need escaping for env
// names and costs a walk each.
type index struct {
	lines   map[string]int
	keyAt   map[pos]string // key token -> path of the value it names
	valueAt map[pos]string // value token -> its path
}

func newIndex(root ast.Node) *index {
	idx := &index{lines: map[string]int{}, keyAt: map[pos]string{}, valueAt: map[pos]string{}}
	idx.walk(root, "")
	return idx
}

func (idx *index) walk(n ast.Node, path string) {
	if n == nil {
		return
	}
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, mv := range n.Values {
			idx.walk(mv, path)
		}
	case *ast.MappingValueNode:
		kt := n.Key.GetToken()
		child := joinPath(path, kt.Value)
		idx.lines[child] = kt.Position.Line
		idx.keyAt[posOf(kt)] = child
		if n.Value != nil {
			idx.valueAt[posOf(n.Value.GetToken())] = child
		}
		idx.walk(n.Value, child)
	case *ast.SequenceNode:
		for i, v := range n.Values {
			child := fmt.Sprintf("%s[%d]", path, i)
			if v != nil {
				idx.lines[child] = v.GetToken().Position.Line
				idx.valueAt[posOf(v.GetToken())] = child
			}
			idx.walk(v, child)
		}
	case *ast.TagNode:
		idx.walk(n.Value, path)
	case *ast.AnchorNode:
		idx.walk(n.Value, path)
	}
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// line returns the line of path or, for a field that is missing, of its
// nearest present ancestor, so that "runAs.uid is required" points at
// runAs. Line 1 when nothing on the path is present.
func (idx *index) line(path string) int {
	for path != "" {
		if l, ok := idx.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 1
}

// has reports whether path is written in the document.
func (idx *index) has(path string) bool {
	_, ok := idx.lines[path]
	return ok
}

// nodeError is returned by the custom unmarshalers below: the decoder passes
// it through unchanged, and convertErr turns it into an *Error.
type nodeError struct {
	tok *token.Token
	msg string
}

func (e *nodeError) Error() string { return e.msg }

var dupKeyRE = lazyRE(`^mapping key "(.*)" already defined at \[(\d+):\d+\]$`)

// convertErr turns a goccy error into an *Error naming the YAML path rather
// than Go types, which mean nothing to whoever writes the file.
func convertErr(file string, idx *index, err error) error {
	var (
		ne   *nodeError
		unk  *yaml.UnknownFieldError
		te   *yaml.TypeError
		ovf  *yaml.OverflowError
		unt  *yaml.UnexpectedNodeTypeError
		syn  *yaml.SyntaxError
		yerr yaml.Error
	)
	pathAt := func(t *token.Token) string {
		if idx == nil {
			return ""
		}
		return idx.valueAt[posOf(t)]
	}
	at := func(t *token.Token, msg string) *Error {
		line := 1
		if t != nil && t.Position != nil {
			line = t.Position.Line
		}
		return &Error{File: file, Line: line, Msg: msg}
	}
	withPath := func(path, msg string) string {
		if path == "" {
			return msg
		}
		return path + ": " + msg
	}
	switch {
	case errors.As(err, &ne):
		return at(ne.tok, withPath(pathAt(ne.tok), ne.msg))
	case errors.As(err, &unk):
		field := unk.Token.Value
		msg := fmt.Sprintf("unknown field %q", field)
		if idx != nil {
			if p := idx.keyAt[posOf(unk.Token)]; strings.Contains(p, ".") {
				msg += " in " + p[:strings.LastIndex(p, ".")]
			}
		}
		return at(unk.Token, msg)
	case errors.As(err, &te):
		return at(te.Token, withPath(pathAt(te.Token),
			fmt.Sprintf("want %s, got %s", describeType(te.DstType), describeType(te.SrcType))))
	case errors.As(err, &ovf):
		return at(ovf.Token, withPath(pathAt(ovf.Token),
			fmt.Sprintf("%s is out of range %s", ovf.SrcNum, describeRange(ovf.DstType))))
	case errors.As(err, &unt):
		return at(unt.Token, withPath(pathAt(unt.Token),
			fmt.Sprintf("want %s, got %s", describeNodeType(unt.Expected), describeNodeType(unt.Actual))))
	case errors.As(err, &syn):
		msg := syn.Message
		if m := dupKeyRE().FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("duplicate key %q (first on line %s)", m[1], m[2])
		}
		return at(syn.Token, msg)
	case errors.As(err, &yerr):
		return at(yerr.GetToken(), yerr.GetMessage())
	default:
		return &Error{File: file, Line: 1, Msg: err.Error()}
	}
}

func describeType(t reflect.Type) string {
	if t == nil {
		return "nothing"
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return t.String()
}

func describeRange(t reflect.Type) string {
	if t == nil {
		return ""
	}
	switch t.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return fmt.Sprintf("(0 to %d)", uint64(math.MaxUint64)>>(64-t.Bits()))
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Int:
		return fmt.Sprintf("(%d to %d)", -(int64(1) << (t.Bits() - 1)), int64(math.MaxInt64)>>(64-t.Bits()))
	}
	return "for " + t.String()
}

func describeNodeType(t ast.NodeType) string {
	switch t {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping"
	case ast.SequenceType:
		return "a list"
	case ast.StringType:
		return "a string"
	case ast.IntegerType:
		return "an integer"
	case ast.FloatType:
		return "a number"
	case ast.BoolType:
		return "true or false"
	case ast.NullType:
		return "nothing"
	}
	return t.String()
}

// scalar returns the text of a scalar node and whether it was a YAML
// string; null yields ok=false so that an empty field keeps its default.
func scalar(n ast.Node) (text string, isString, ok bool) {
	switch n := n.(type) {
	case *ast.NullNode:
		return "", false, false
	case *ast.StringNode:
		return n.Value, true, true
	case ast.ScalarNode:
		return n.GetToken().Value, false, true
	}
	return "", false, true
}

// UnmarshalYAML accepts a Go duration string greater than zero: "60s",
// "5m", "1h30m". A bare number is refused: its unit would be a guess.
func (d *Duration) UnmarshalYAML(n ast.Node) error {
	text, isString, ok := scalar(n)
	if !ok {
		return nil
	}
	const want = `want a duration with a unit such as "60s", "5m" or "1h30m"`
	if !isString {
		return &nodeError{n.GetToken(), fmt.Sprintf("%s is not a duration: %s", n.GetToken().Value, want)}
	}
	v, err := time.ParseDuration(text)
	if err != nil {
		return &nodeError{n.GetToken(), fmt.Sprintf("%q is not a duration: %s", text, want)}
	}
	if v <= 0 {
		return &nodeError{n.GetToken(), fmt.Sprintf("%q: must be greater than zero", text)}
	}
	*d = Duration(v)
	return nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

var bytesRE = lazyRE(`^([0-9]+)(Ki|Mi|Gi|Ti)?$`)

var bytesUnits = map[string]int64{"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}

// ParseBytes parses a size: a plain number of bytes or a number with a
// binary suffix Ki, Mi, Gi or Ti. Decimal suffixes (K, M, G, KB, MB) are
// refused: whether "64M" means 64e6 or 64<<20 is exactly the ambiguity a
// limit should not have.
func ParseBytes(s string) (Bytes, error) {
	m := bytesRE().FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: want a number of bytes or a number with Ki, Mi, Gi or Ti (e.g. 256Mi)", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	unit := bytesUnits[m[2]]
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Bytes(n * unit), nil
}

// UnmarshalYAML accepts what ParseBytes accepts, as a YAML integer or string.
func (b *Bytes) UnmarshalYAML(n ast.Node) error {
	text, _, ok := scalar(n)
	if !ok {
		return nil
	}
	v, err := ParseBytes(text)
	if err != nil {
		return &nodeError{n.GetToken(), err.Error()}
	}
	*b = v
	return nil
}

// String writes b with the largest binary suffix that divides it exactly.
func (b Bytes) String() string {
	for _, u := range []string{"Ti", "Gi", "Mi", "Ki"} {
		if m := bytesUnits[u]; b != 0 && int64(b)%m == 0 {
			return fmt.Sprintf("%d%s", int64(b)/m, u)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML accepts "none" or "host".
func (nw *Network) UnmarshalYAML(n ast.Node) error {
	text, isString, ok := scalar(n)
	if !ok {
		return nil
	}
	v := Network(text)
	if !isString || !v.valid() {
		return &nodeError{n.GetToken(), fmt.Sprintf("%q is not a network mode: want none or host", n.GetToken().Value)}
	}
	*nw = v
	return nil
}

func (nw Network) valid() bool { return nw == NetworkNone || nw == NetworkHost }

// lazyRE compiles a regular expression on first use rather than at package
// init: every process that links this package pays for init, the daemon's
// init helper and the CLI included, and most never validate a profile.
func lazyRE(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
