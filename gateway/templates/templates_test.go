package templates_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/gateway/templates"
)

func vars(t *testing.T, s string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestVariableValidation: every variable error names the variable, and
// says what is wrong with it.
func TestVariableValidation(t *testing.T) {
	tpl := templates.Example() // bars: integer 1–32; key: enum; style: string ≤ 200
	ok := `"bars": 8, "key": "Am", "style": "lo-fi"`
	for _, tc := range []struct {
		name, vars, variable, says string
	}{
		{"missing", `{"bars": 8, "key": "Am"}`, "style", "missing"},
		{"null", `{"bars": 8, "key": "Am", "style": null}`, "style", "missing"},
		{"extra", `{` + ok + `, "tempo": 120}`, "tempo", "not a variable"},
		{"string for an integer", `{"bars": "8", "key": "Am", "style": "x"}`, "bars", "must be an integer"},
		{"fraction for an integer", `{"bars": 8.5, "key": "Am", "style": "x"}`, "bars", "must be an integer"},
		{"below min", `{"bars": 0, "key": "Am", "style": "x"}`, "bars", "between 1 and 32"},
		{"above max", `{"bars": 33, "key": "Am", "style": "x"}`, "bars", "between 1 and 32"},
		{"huge number", `{"bars": 1e999, "key": "Am", "style": "x"}`, "bars", "must be an integer"},
		{"not in enum", `{"bars": 8, "key": "H", "style": "x"}`, "key", "one of"},
		{"number for a string", `{"bars": 8, "key": "Am", "style": 5}`, "style", "must be a string"},
		{"too long", `{"bars": 8, "key": "Am", "style": "` + strings.Repeat("é", 201) + `"}`, "style", "201 characters, at most 200"},
		{"object for a string", `{"bars": 8, "key": "Am", "style": {"a": 1}}`, "style", "must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpl.Render(vars(t, tc.vars), false)
			var ve *templates.VariableError
			if !errors.As(err, &ve) || ve.Name != tc.variable || !strings.Contains(ve.Problem, tc.says) {
				t.Fatalf("Render = %v, want variable %q: …%s…", err, tc.variable, tc.says)
			}
			if !strings.Contains(err.Error(), `"`+tc.variable+`"`) {
				t.Errorf("the message %q does not name the variable", err)
			}
		})
	}
	if _, err := tpl.Render(vars(t, `{`+ok+`}`), false); err != nil {
		t.Errorf("valid variables: %v", err)
	}
}

// TestHugeVariableRefusedByItsLength: a 1 MiB value is refused from its
// encoded length, before it is decoded (let alone tokenized).
func TestHugeVariableRefusedByItsLength(t *testing.T) {
	tpl := templates.Example()
	big := `{"bars": 8, "key": "Am", "style": "` + strings.Repeat("a", 1<<20) + `"}`
	_, err := tpl.Render(vars(t, big), false)
	var ve *templates.VariableError
	if !errors.As(err, &ve) || ve.Name != "style" || !strings.Contains(ve.Problem, "longer than 200") {
		t.Fatalf("Render = %v", err)
	}
	// Decoding the value would cost a 1 MiB string; the check does not.
	v := vars(t, big)
	n := testing.AllocsPerRun(5, func() { _, _ = tpl.Values(v) })
	if n > 20 {
		t.Errorf("refusing a 1 MiB value allocated %v times: it was decoded", n)
	}
}

// TestRendering: plain substitution, one pass; braces, unicode and empty
// strings arrive as given; a value that looks like a marker stays literal.
func TestRendering(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	tpl := templates.Template{
		Name: "t", Endpoint: templates.EndpointChat, Model: "gpt-4o-mini",
		Instructions: "System {{ mood }} {literal} {{unknown_but_escaped}",
		Input:        "Say {{text}} {{n}} times. {{flag}}",
		Variables: map[string]templates.Variable{
			"mood": {Type: "string", MaxLength: 50}, "text": {Type: "string", MaxLength: 50},
			"n": {Type: "number", Min: f(-10), Max: f(10)}, "flag": {Type: "boolean"},
		},
		MaxOutputTokens: 50,
	}
	for _, tc := range []struct {
		name, vars, system, user string
	}{
		{"plain", `{"mood": "calm", "text": "hi", "n": 2, "flag": true}`, "System calm {literal} {{unknown_but_escaped}", "Say hi 2 times. true"},
		{"a marker in a value stays literal", `{"mood": "{{text}}", "text": "{{mood}}", "n": -1.5, "flag": false}`,
			"System {{text}} {literal} {{unknown_but_escaped}", "Say {{mood}} -1.5 times. false"},
		{"unicode and braces", `{"mood": "ß🎹 }}{{", "text": "日本語", "n": 0, "flag": true}`,
			"System ß🎹 }}{{ {literal} {{unknown_but_escaped}", "Say 日本語 0 times. true"},
		{"minus zero", `{"mood": "a", "text": "b", "n": -0, "flag": true}`, "System a {literal} {{unknown_but_escaped}", "Say b 0 times. true"},
		{"empty strings", `{"mood": "", "text": "", "n": 10, "flag": false}`, "System  {literal} {{unknown_but_escaped}", "Say  10 times. false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tpl.Render(vars(t, tc.vars), true)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Model    string `json:"model"`
				Stream   bool   `json:"stream"`
				Max      int    `json:"max_completion_tokens"`
				Messages []struct{ Role, Content string }
			}
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatal(err)
			}
			if body.Model != "gpt-4o-mini" || !body.Stream || body.Max != 50 || len(body.Messages) != 2 ||
				body.Messages[0].Role != "system" || body.Messages[0].Content != tc.system ||
				body.Messages[1].Role != "user" || body.Messages[1].Content != tc.user {
				t.Errorf("rendered %s", b)
			}
		})
	}
}

// TestTemplateProblems: a template file's every problem is named.
func TestTemplateProblems(t *testing.T) {
	allowed := func(m string) bool { return m == "gpt-4o-mini" }
	if ps := templates.Example().Problems(allowed); len(ps) != 0 {
		t.Fatalf("the example has problems: %v", ps)
	}
	bad := templates.Template{
		Name: "Bad Name", Endpoint: "images", Model: "gpt-9", Input: "{{a}} {{b}}",
		Variables: map[string]templates.Variable{
			"a": {Type: "string"},                 // no bound
			"c": {Type: "integer"},                // unused, no min/max
			"d": {Type: "date", MaxLength: 3},     // unknown type, unused
			"e": {Type: "boolean", MaxLength: 10}, // bounded boolean, unused
		},
		MaxOutputTokens: -1, Text: json.RawMessage(`[]`),
	}
	ps := strings.Join(bad.Problems(allowed), "\n")
	for _, want := range []string{`name "Bad Name"`, `endpoint "images"`, `model "gpt-9"`, "{{b}} is used but not declared",
		"variable c is declared but not used", "variable a: a string needs max_length", "variable c: a number needs min and max",
		`variable d: type "date"`, "variable e: a boolean has no bounds", "max_output_tokens -1", "text: only for the responses endpoint"} {
		if !strings.Contains(ps, want) {
			t.Errorf("problems lack %q:\n%s", want, ps)
		}
	}
}
