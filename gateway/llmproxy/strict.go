package llmproxy

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/signals-sorcery/sas/shared/wire"
)

// The request model, in one place: every JSON value the gateway reads from
// a request is decoded here, strictly — keys exact (as OpenAI reads them),
// each key once — because the gateway forwards the client's own bytes, and
// a guard that reads a looser view of them than the next hop is no guard.
// Go's encoding/json matches struct fields without regard to case and
// keeps the last of two equal keys: {"text":<a book>,"TEXT":""} read that
// way is an empty text part, while the upstream bills the book.
//
// The rule for what is forwarded: every value the upstream receives is
// either estimated by the model's rules (text, images, tools…) or counted
// as its JSON text; a key the gateway does not know is counted with its
// value, never skipped. A key that differs only in case from one the
// gateway reads, owns or refuses, and a key that appears twice anywhere,
// are refused with 400 naming the key's JSON path.

// object is a JSON object decoded with exact, unique keys; its values are
// the client's bytes as they are.
type object map[string]jsontext.Value

// strictOptions: duplicate names are refused (jsontext's default); invalid
// UTF-8 is read as U+FFFD, as the upstream's own decoder and the reference
// tokenizer do, rather than refused (a JavaScript string cut inside a
// surrogate pair is still a prompt).
var strictOptions = json.JoinOptions(jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(false))

// decodeBody decodes a whole request body, which must be one JSON object.
// Duplicate keys are refused at every depth here, once.
func decodeBody(body []byte) (object, error) {
	var o object
	if err := json.Unmarshal(body, &o, strictOptions); err != nil {
		if se, ok := errors.AsType[*jsontext.SyntacticError](err); ok && errors.Is(se.Err, jsontext.ErrDuplicateName) {
			return nil, wire.Errorf(wire.CodeBadRequest, "The key %s appears twice: every JSON key must appear once.", pointerPath(se.JSONPointer))
		}
		return nil, wire.Errorf(wire.CodeBadRequest, "The request body is not a JSON object.")
	}
	if o == nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "The request body is not a JSON object.")
	}
	return o, nil
}

// asObject decodes a value that must be a JSON object; ok is false when it
// is not one.
func asObject(raw jsontext.Value) (object, bool) {
	if raw.Kind() != '{' {
		return nil, false
	}
	var o object
	if json.Unmarshal(raw, &o, strictOptions) != nil {
		return nil, false
	}
	return o, true
}

// asArray decodes a value that must be a JSON array.
func asArray(raw jsontext.Value) ([]jsontext.Value, bool) {
	if raw.Kind() != '[' {
		return nil, false
	}
	var a []jsontext.Value
	if json.Unmarshal(raw, &a, strictOptions) != nil {
		return nil, false
	}
	return a, true
}

// asString decodes a value that must be a JSON string.
func asString(raw jsontext.Value) (string, bool) {
	if raw.Kind() != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s, strictOptions) != nil {
		return "", false
	}
	return s, true
}

// stringOf is the string value of o[key], "" when it is absent or not a
// string.
func (o object) stringOf(key string) string {
	s, _ := asString(o[key])
	return s
}

// present returns a member that is there and not null.
func (o object) present(key string) (jsontext.Value, bool) {
	raw, ok := o[key]
	return raw, ok && raw.Kind() != 'n'
}

// keySet is the keys the gateway reads, owns or refuses in one kind of
// object.
type keySet map[string]bool

func keys(names ...string) keySet {
	k := make(keySet, len(names))
	for _, n := range names {
		k[n] = true
	}
	return k
}

// check refuses a key of o that is not one of k but equals one of them
// without regard to case (Unicode simple folding, as lax decoders match):
// an upstream that folds case would read it in place of, or as well as,
// the key the gateway read. path is o's JSON path ("" for the body).
func (k keySet) check(o object, path string) error {
	for name := range o {
		if k[name] {
			continue
		}
		for known := range k {
			if strings.EqualFold(name, known) {
				return wire.Errorf(wire.CodeBadRequest, "The key %s differs from %q only in case: JSON keys are case-sensitive.", join(path, name), known)
			}
		}
	}
	return nil
}

// join names a member of the object at path.
func join(path, key string) string {
	if path == "" {
		return strconv.Quote(key)
	}
	return path + "." + strconv.Quote(key)
}

// index names an element of the array at path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// pointerPath writes a JSON pointer (RFC 6901) in the messages' notation:
// /messages/0/content → "messages"[0]."content". A token of digits is an
// index (an object key of digits is rare enough to be shown as one).
func pointerPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && tok != "" {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Quote(tok))
	}
	if b.Len() == 0 {
		return "(the body)"
	}
	return b.String()
}

// encodeObject writes fields as a JSON object. The values are already
// valid JSON (decoded from the client's body, or set by the gateway), so
// they are copied as they are: a marshaller would validate and compact
// every one of them again, a pass over the whole body.
func encodeObject(fields object) []byte {
	n := 2
	for k, v := range fields {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	first := true
	for k, v := range fields {
		if !first {
			b = append(b, ',')
		}
		first = false
		b, _ = jsontext.AppendQuote(b, k)
		b = append(append(b, ':'), v...)
	}
	return append(b, '}')
}

// isTrue reports whether raw is the literal true.
func isTrue(raw jsontext.Value) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("true")) }
