// Package templates is the server's prompt templates: the app's prompts
// kept on the gateway, versioned, run by name with typed, bounded
// variables. A template renders into an ordinary chat completion or
// Responses API request body, which then goes through the proxy's one
// metered path — the same parse, estimate, reservation, relay, settlement
// and ledger as a raw request.
package templates

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Endpoints a template may target.
const (
	EndpointChat      = "chat"
	EndpointResponses = "responses"
)

// Limits of a template's own text and shape.
const (
	MaxNameLength      = 64
	MaxPromptBytes     = 64 << 10 // instructions and input, each
	MaxVariables       = 32
	MaxStringLength    = 64 << 10 // the largest max_length a string variable may declare
	MaxEnumValues      = 256
	MaxOutputTokensCap = 128_000
)

// Template is one version of a template, as `sas-gateway templates put`
// reads it and the store keeps it.
type Template struct {
	Name     string `json:"name"`
	Version  int    `json:"version,omitempty"` // set by the store
	Endpoint string `json:"endpoint"`
	Model    string `json:"model"`
	// Instructions is the system prompt (chat: a system message;
	// responses: a developer message); Input the user's turn. Both may reference
	// variables as {{name}}.
	Instructions    string              `json:"instructions,omitempty"`
	Input           string              `json:"input"`
	Variables       map[string]Variable `json:"variables,omitempty"`
	MaxOutputTokens int64               `json:"max_output_tokens,omitempty"`
	// Text (responses) or ResponseFormat (chat) is passed on as is.
	Text           json.RawMessage `json:"text,omitempty"`
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
}

// Variable declares one variable's type and bounds.
type Variable struct {
	Type      string   `json:"type"` // string, integer, number, boolean
	Min       *float64 `json:"min,omitempty"`
	Max       *float64 `json:"max,omitempty"`
	MaxLength int      `json:"max_length,omitempty"` // strings, in characters
	Enum      []string `json:"enum,omitempty"`       // strings
}

// Info is what GET /v1/templates shows of a template: never its prompt
// text.
type Info struct {
	Name      string              `json:"name"`
	Version   int                 `json:"version"`
	Endpoint  string              `json:"endpoint"`
	Model     string              `json:"model"`
	Variables map[string]Variable `json:"variables"`
}

// Info returns t's public description.
func (t Template) Info() Info {
	vars := t.Variables
	if vars == nil {
		vars = map[string]Variable{}
	}
	return Info{Name: t.Name, Version: t.Version, Endpoint: t.Endpoint, Model: t.Model, Variables: vars}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// markers calls f for each variable marker in text — "{{name}}", spaces
// allowed inside the braces, name a letter or '_' then letters, digits or
// '_' — with its byte range, left to right, not overlapping.
func markers(text string, f func(start, end int, name string)) {
	for i := 0; ; {
		j := strings.Index(text[i:], "{{")
		if j < 0 {
			return
		}
		start := i + j
		k := start + 2
		for k < len(text) && isSpace(text[k]) {
			k++
		}
		n := k
		for n < len(text) && (isLetter(text[n]) || (n > k && text[n] >= '0' && text[n] <= '9')) {
			n++
		}
		e := n
		for e < len(text) && isSpace(text[e]) {
			e++
		}
		if n > k && strings.HasPrefix(text[e:], "}}") {
			f(start, e+2, text[k:n])
			i = e + 2
			continue
		}
		i = start + 1 // "{{{x}}" holds a marker at its second brace
	}
}

func isLetter(c byte) bool { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' // regexp's \s (no \v)
}

// Problems lists everything wrong with t (empty: valid). allowed says
// whether some plan allows a model and it is priced.
func (t Template) Problems(allowed func(model string) bool) []string {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	if !nameRE.MatchString(t.Name) || len(t.Name) > MaxNameLength {
		add("name %q: lower-case letters, digits, '-' and '_', at most %d characters", t.Name, MaxNameLength)
	}
	if t.Endpoint != EndpointChat && t.Endpoint != EndpointResponses {
		add("endpoint %q: must be %q or %q", t.Endpoint, EndpointChat, EndpointResponses)
	}
	if t.Model == "" {
		add("model: missing")
	} else if !allowed(t.Model) {
		add("model %q: no plan allows it, or it has no price", t.Model)
	}
	if strings.TrimSpace(t.Input) == "" {
		add("input: missing")
	}
	if len(t.Input) > MaxPromptBytes || len(t.Instructions) > MaxPromptBytes {
		add("instructions and input: at most %d bytes each", MaxPromptBytes)
	}
	if !utf8.ValidString(t.Input) || !utf8.ValidString(t.Instructions) {
		add("instructions and input: not valid UTF-8")
	}
	if t.MaxOutputTokens < 0 || t.MaxOutputTokens > MaxOutputTokensCap {
		add("max_output_tokens %d: between 1 and %d (0 or absent: the plan's cap)", t.MaxOutputTokens, MaxOutputTokensCap)
	}
	if len(t.Text) > 0 && t.Endpoint != EndpointResponses {
		add("text: only for the responses endpoint (chat has response_format)")
	}
	if len(t.ResponseFormat) > 0 && t.Endpoint != EndpointChat {
		add("response_format: only for the chat endpoint (responses has text)")
	}
	for _, raw := range []json.RawMessage{t.Text, t.ResponseFormat} {
		if len(raw) > 0 && (!json.Valid(raw) || bytes.TrimSpace(raw)[0] != '{') {
			add("text / response_format: must be a JSON object")
		}
	}
	if len(t.Variables) > MaxVariables {
		add("variables: at most %d", MaxVariables)
	}
	used := map[string]bool{}
	for _, text := range []string{t.Instructions, t.Input} {
		markers(text, func(_, _ int, name string) { used[name] = true })
	}
	for _, name := range slices.Sorted(maps.Keys(used)) {
		if _, ok := t.Variables[name]; !ok {
			add("{{%s}} is used but not declared in variables", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.Variables)) {
		v := t.Variables[name]
		if !used[name] {
			add("variable %s is declared but not used", name)
		}
		for _, p := range v.problems() {
			add("variable %s: %s", name, p)
		}
	}
	return ps
}

func (v Variable) problems() []string {
	var ps []string
	switch v.Type {
	case "string":
		if v.Min != nil || v.Max != nil {
			ps = append(ps, "min and max are for numbers")
		}
		switch {
		case len(v.Enum) > 0 && v.MaxLength != 0:
			ps = append(ps, "either enum or max_length, not both")
		case len(v.Enum) > MaxEnumValues:
			ps = append(ps, fmt.Sprintf("at most %d enum values", MaxEnumValues))
		case len(v.Enum) == 0 && (v.MaxLength < 1 || v.MaxLength > MaxStringLength):
			ps = append(ps, fmt.Sprintf("a string needs max_length between 1 and %d, or an enum", MaxStringLength))
		}
		for _, e := range v.Enum {
			if len(e) > 1024 {
				ps = append(ps, "enum values: at most 1024 bytes each")
				break
			}
		}
	case "integer", "number":
		if v.Min == nil || v.Max == nil {
			ps = append(ps, "a number needs min and max")
		} else if *v.Min > *v.Max || math.IsInf(*v.Min, 0) || math.IsInf(*v.Max, 0) {
			ps = append(ps, "min must not exceed max")
		}
		if v.MaxLength != 0 || len(v.Enum) > 0 {
			ps = append(ps, "max_length and enum are for strings")
		}
	case "boolean":
		if v.Min != nil || v.Max != nil || v.MaxLength != 0 || len(v.Enum) > 0 {
			ps = append(ps, "a boolean has no bounds")
		}
	default:
		ps = append(ps, fmt.Sprintf("type %q: must be string, integer, number or boolean", v.Type))
	}
	return ps
}

// VariableError is a variable's fault: bad_request naming it.
type VariableError struct {
	Name, Problem string
}

func (e *VariableError) Error() string {
	if e.Name == "" {
		return e.Problem
	}
	return fmt.Sprintf("variable %q: %s", e.Name, e.Problem)
}

// Values checks the caller's variables against t's declarations and
// returns each as the text substituted for it. Every variable error names
// the variable; the first found (in name order) is returned.
func (t Template) Values(raw map[string]json.RawMessage) (map[string]string, error) {
	for _, name := range slices.Sorted(maps.Keys(raw)) {
		if _, ok := t.Variables[name]; !ok {
			return nil, &VariableError{name, "is not a variable of this template"}
		}
	}
	out := make(map[string]string, len(t.Variables))
	for _, name := range slices.Sorted(maps.Keys(t.Variables)) {
		v := t.Variables[name]
		r, ok := raw[name]
		if !ok || string(bytes.TrimSpace(r)) == "null" {
			return nil, &VariableError{name, "is missing"}
		}
		text, problem := v.value(r)
		if problem != "" {
			return nil, &VariableError{name, problem}
		}
		out[name] = text
	}
	return out, nil
}

// value checks one raw JSON value. A string's length is checked on its
// JSON form's byte length first, so a 1 MiB value is refused before it is
// decoded or counted.
func (v Variable) value(r json.RawMessage) (string, string) {
	r = bytes.TrimSpace(r)
	switch v.Type {
	case "string":
		if len(r) == 0 || r[0] != '"' {
			return "", "must be a string"
		}
		limit := v.MaxLength
		for _, e := range v.Enum {
			limit = max(limit, utf8.RuneCountInString(e))
		}
		// A character is at most 6 bytes in JSON ("\u00e9"), or 12 for an
		// escaped surrogate pair: a longer encoding cannot be in bounds.
		if len(r) > 12*limit+2 {
			return "", fmt.Sprintf("is longer than %d characters", limit)
		}
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return "", "must be a string"
		}
		if len(v.Enum) > 0 {
			if !slices.Contains(v.Enum, s) {
				return "", fmt.Sprintf("must be one of %s", strings.Join(v.Enum, ", "))
			}
			return s, ""
		}
		if n := utf8.RuneCountInString(s); n > v.MaxLength {
			return "", fmt.Sprintf("is %d characters, at most %d", n, v.MaxLength)
		}
		return s, ""
	case "integer", "number":
		want := map[string]string{"integer": "must be an integer", "number": "must be a number"}[v.Type]
		if len(r) == 0 || len(r) > 64 || !(r[0] == '-' || (r[0] >= '0' && r[0] <= '9')) {
			return "", want
		}
		f, err := strconv.ParseFloat(string(r), 64)
		if err != nil || math.IsInf(f, 0) || (v.Type == "integer" && f != math.Trunc(f)) {
			return "", want
		}
		// Bounds are required by Problems; a stored spec that lacks one
		// is treated as unbounded on that side rather than trusted.
		lo, hi := math.Inf(-1), math.Inf(1)
		if v.Min != nil {
			lo = *v.Min
		}
		if v.Max != nil {
			hi = *v.Max
		}
		if f < lo || f > hi {
			return "", fmt.Sprintf("must be between %s and %s", num(lo), num(hi))
		}
		if f == 0 {
			f = 0 // -0 is written 0
		}
		return num(f), ""
	case "boolean":
		switch string(r) {
		case "true", "false":
			return string(r), ""
		}
		return "", "must be true or false"
	}
	return "", "has an unknown type"
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// substitute replaces each {{name}} in text with its value, in one pass:
// a value is never scanned again, so a value that contains "{{x}}" stays
// literal.
func substitute(text string, values map[string]string) string {
	var b strings.Builder
	last := 0
	markers(text, func(start, end int, name string) {
		if v, ok := values[name]; ok {
			b.WriteString(text[last:start])
			b.WriteString(v)
			last = end
		}
	})
	if last == 0 {
		return text
	}
	b.WriteString(text[last:])
	return b.String()
}

// Render returns the request body t makes with the caller's variables:
// a chat completion or a Responses API request, as a client would send
// it. Errors: *VariableError.
func (t Template) Render(raw map[string]json.RawMessage, stream bool) ([]byte, error) {
	values, err := t.Values(raw)
	if err != nil {
		return nil, err
	}
	instructions, input := substitute(t.Instructions, values), substitute(t.Input, values)
	if t.Endpoint == EndpointChat {
		type message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		}
		messages := make([]message, 0, 2)
		if instructions != "" {
			messages = append(messages, message{"system", instructions})
		}
		return json.Marshal(struct {
			Model          string          `json:"model"`
			Messages       []message       `json:"messages"`
			Stream         bool            `json:"stream,omitempty"`
			MaxTokens      int64           `json:"max_completion_tokens,omitempty"`
			ResponseFormat json.RawMessage `json:"response_format,omitempty"`
		}{t.Model, append(messages, message{"user", input}), stream, t.MaxOutputTokens, t.ResponseFormat})
	}
	// The instructions go in as a developer message of the input, not as
	// the request's "instructions": a Response object repeats its
	// instructions (in the JSON answer and in response.created and
	// response.completed), which would hand the prompt to the caller. It
	// repeats no input.
	var in any = input
	if instructions != "" {
		type message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		}
		in = []message{{"developer", instructions}, {"user", input}}
	}
	return json.Marshal(struct {
		Model           string          `json:"model"`
		Input           any             `json:"input"`
		Stream          bool            `json:"stream,omitempty"`
		MaxOutputTokens int64           `json:"max_output_tokens,omitempty"`
		Text            json.RawMessage `json:"text,omitempty"`
	}{t.Model, in, stream, t.MaxOutputTokens, t.Text})
}

// Example is the template `sas-gateway dev` seeds (and the README shows):
// a loop idea for the app, streamed through the Responses API.
func Example() Template {
	f := func(v float64) *float64 { return &v }
	return Template{
		Name: "loop-idea", Endpoint: EndpointResponses, Model: "gpt-4o-mini",
		Instructions: "You are a music producer's assistant. Answer in at most three short lines.",
		Input:        "Suggest a {{bars}}-bar loop in {{key}} for {{style}}: chords, rhythm, one sound-design tip.",
		Variables: map[string]Variable{
			"bars":  {Type: "integer", Min: f(1), Max: f(32)},
			"key":   {Type: "string", Enum: []string{"C", "G", "D", "A", "E", "F", "Am", "Em", "Bm", "Dm", "Gm", "Cm"}},
			"style": {Type: "string", MaxLength: 200},
		},
		MaxOutputTokens: 300,
	}
}
