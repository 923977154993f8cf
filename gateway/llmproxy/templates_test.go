package llmproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/templates"
)

// testTemplates: the dev stack's example (Responses API) as version 3, a
// chat one, and one on a model the free plan does not have.
func testTemplates() *templates.Cache {
	loop := templates.Example()
	loop.Version = 3
	f := func(v float64) *float64 { return &v }
	chat := templates.Template{Name: "chord-names", Version: 1, Endpoint: templates.EndpointChat, Model: "gpt-4o-mini",
		Instructions: "Name chords. SECRET-SYSTEM-PROMPT", Input: "Name {{count}} chords in {{key}}.",
		Variables:       map[string]templates.Variable{"count": {Type: "integer", Min: f(1), Max: f(8)}, "key": {Type: "string", MaxLength: 20}},
		MaxOutputTokens: 100}
	pro := templates.Template{Name: "pro-only", Version: 1, Endpoint: templates.EndpointChat, Model: "gpt-4o",
		Input: "Hello {{who}}", Variables: map[string]templates.Variable{"who": {Type: "string", MaxLength: 20}}}
	return templates.Static(loop, chat, pro)
}

const loopVars = `{"bars": 8, "key": "Am", "style": "lo-fi"}`

// TestTemplateChargesAsTheRawRequest: a template run reserves and charges
// exactly what the request it renders reserves and charges sent raw —
// one accounting path — answers what that endpoint answers, and its usage
// event names the template and version.
func TestTemplateChargesAsTheRawRequest(t *testing.T) {
	for _, tc := range []struct{ name, vars, rawPath, object string }{
		{"loop-idea", loopVars, "/v1/responses", `"object":"response"`},
		{"chord-names", `{"count": 4, "key": "C"}`, "/v1/chat/completions", `"object":"chat.completion"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, app.Deps{})
			r := e.post("/v1/templates/"+tc.name, `{"variables": `+tc.vars+`}`)
			if r.status != 200 || !strings.Contains(r.body, tc.object) {
				t.Fatalf("template run: %d %s", r.status, r.body)
			}
			tpl := e.lastCompletion()
			used := e.usage()
			tmpl, _, _ := testTemplates().Get(tc.name)
			// The answer never hands the prompt back (a Response object
			// repeats its "instructions": a review found the system prompt
			// in every answer), streamed or not.
			streamed := e.post("/v1/templates/"+tc.name, `{"variables": `+tc.vars+`, "stream": true}`)
			for _, answer := range []string{r.body, streamed.body} {
				if strings.Contains(answer, tmpl.Instructions) || strings.Contains(answer, "music producer") || strings.Contains(answer, "SECRET") {
					t.Errorf("the answer contains the template's instructions: %s", clipped(answer))
				}
			}
			twice := e.usage()
			for k, v := range used {
				if twice[k] != 2*v {
					t.Errorf("%s: %d after one run, %d after the streamed one (want twice)", k, v, twice[k])
				}
			}
			body, err := tmpl.Render(vars(t, tc.vars), false)
			if err != nil {
				t.Fatal(err)
			}
			if r := e.post(tc.rawPath, string(body)); r.status != 200 {
				t.Fatalf("raw: %d %s", r.status, r.body)
			}
			raw := e.lastCompletion()
			for _, k := range []string{"prompt_estimate", "reserved_tokens", "reserved_usd", "tokens", "usd", "usage_source"} {
				if tpl[k] != raw[k] {
					t.Errorf("%s: template %v, raw %v", k, tpl[k], raw[k])
				}
			}
			after := e.usage()
			for k, v := range used {
				if after[k] != 3*v {
					t.Errorf("%s: %d per template run, %d after two runs and the raw request (want three times)", k, v, after[k])
				}
			}
			testenv.WaitFor(t, "the three usage events", 10*time.Second, func() bool { return len(e.store.UsageEvents(e.user)) == 3 })
			n := 0
			for _, ev := range e.store.UsageEvents(e.user) {
				if ev.Template == tc.name && ev.TemplateVersion == tmpl.Version {
					n++
				} else if ev.Template != "" || ev.TemplateVersion != 0 {
					t.Errorf("the raw request's event names a template: %+v", ev)
				}
			}
			if n != 2 {
				t.Errorf("%d events name %s v%d, want 2", n, tc.name, tmpl.Version)
			}
		})
	}
}

func vars(t testing.TB, s string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTemplateRefusalsConsumeNothing: bad variables (named), an unknown
// template, a template whose model the plan lacks, and malformed bodies
// are refused before anything is reserved.
func TestTemplateRefusalsConsumeNothing(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	e.get("/v1/me")
	for _, tc := range []struct {
		name, path, body string
		status           int
		code, says       string
	}{
		{"missing variable", "/v1/templates/loop-idea", `{"variables": {"bars": 8, "key": "Am"}}`, 400, "bad_request", `"style"`},
		{"extra variable", "/v1/templates/loop-idea", `{"variables": {"bars": 8, "key": "Am", "style": "x", "bpm": 90}}`, 400, "bad_request", `"bpm"`},
		{"out of range", "/v1/templates/loop-idea", `{"variables": {"bars": 64, "key": "Am", "style": "x"}}`, 400, "bad_request", `"bars"`},
		{"1 MiB variable", "/v1/templates/loop-idea", `{"variables": {"bars": 8, "key": "Am", "style": "` + strings.Repeat("a", 1<<20-100) + `"}}`, 400, "bad_request", `"style"`},
		{"unknown body key", "/v1/templates/loop-idea", `{"variables": {}, "model": "gpt-4o"}`, 400, "bad_request", "nothing else"},
		{"not JSON", "/v1/templates/loop-idea", `variables`, 400, "bad_request", "JSON object"},
		// Read as strictly as a raw body (a review found these accepted).
		{"a variable twice", "/v1/templates/loop-idea", `{"variables": {"bars": 8, "bars": 99, "key": "Am", "style": "x"}}`, 400, "bad_request", "twice"},
		{"variables twice", "/v1/templates/loop-idea", `{"variables": {"bars": 8}, "variables": {"key": "Am", "style": "x"}}`, 400, "bad_request", "twice"},
		{"trailing bytes", "/v1/templates/loop-idea", `{"variables": {"bars": 8, "key": "Am", "style": "x"}}}`, 400, "bad_request", "JSON object"},
		{"stream not a boolean", "/v1/templates/loop-idea", `{"variables": {"bars": 8, "key": "Am", "style": "x"}, "stream": "yes"}`, 400, "bad_request", "JSON object"},
		{"unknown template", "/v1/templates/nope", `{"variables": {}}`, 404, "not_found", `"nope"`},
		{"model not on the plan", "/v1/templates/pro-only", `{"variables": {"who": "x"}}`, 403, "model_not_allowed", "gpt-4o"},
	} {
		r := e.post(tc.path, tc.body)
		var body struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal([]byte(r.body), &body)
		if r.status != tc.status || body.Error.Code != tc.code || !strings.Contains(body.Error.Message, tc.says) {
			t.Errorf("%s: %d %s, want %d %s naming %s", tc.name, r.status, clipped(r.body), tc.status, tc.code, tc.says)
		}
	}
	for k, v := range e.usage() {
		if v != 0 {
			t.Errorf("%s: %d used by refused runs, want 0", k, v)
		}
	}
}

func clipped(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// TestTemplatesOnly: a plan with templates_only refuses both raw routes
// with 403 templates_only and runs templates; the built-in plans keep it
// off.
func TestTemplatesOnly(t *testing.T) {
	if quota.BuiltIn()["free"].TemplatesOnly || quota.BuiltIn()["pro"].TemplatesOnly {
		t.Fatal("a built-in plan is templates_only")
	}
	e := newEnv(t, func(c *config.Config) {
		free := c.Plans["free"]
		free.TemplatesOnly = true
		c.Plans = quota.Plans{"free": free, "pro": c.Plans["pro"]}
	}, app.Deps{})
	wantError(t, e.post("/v1/chat/completions", hello), 403, "templates_only")
	wantError(t, e.post("/v1/responses", `{"model":"gpt-4o-mini","input":"hi"}`), 403, "templates_only")
	if r := e.post("/v1/templates/loop-idea", `{"variables": `+loopVars+`, "stream": true}`); r.status != 200 ||
		!strings.Contains(r.body, "event: response.completed") {
		t.Fatalf("a template on a templates_only plan: %d %s", r.status, r.body)
	}
	for k, v := range e.usage() {
		if strings.HasPrefix(k, "requests_per") && v != 1 {
			t.Errorf("%s: %d, want 1 (the template run only)", k, v)
		}
	}
}

// TestTemplateListNeverLeaksPrompts: GET /v1/templates lists what the
// caller's plan may run, with variables, and no prompt text.
func TestTemplateListNeverLeaksPrompts(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	r := e.get("/v1/templates")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var list struct {
		Object string
		Data   []templates.Info
	}
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || list.Object != "list" || len(list.Data) != 2 ||
		list.Data[0].Name != "chord-names" || list.Data[1].Name != "loop-idea" || list.Data[1].Version != 3 ||
		list.Data[1].Variables["bars"].Type != "integer" {
		t.Fatalf("list = %s", r.body)
	}
	all, _ := testTemplates().All()
	for _, tpl := range all {
		for _, secret := range []string{tpl.Instructions, tpl.Input} {
			if secret != "" && strings.Contains(r.body, secret) {
				t.Errorf("the list shows %s's prompt text %q", tpl.Name, secret)
			}
		}
	}
	if strings.Contains(r.body, "SECRET") || strings.Contains(r.body, "pro-only") {
		t.Errorf("the list leaks: %s", r.body)
	}
}

// templateTransport sends go-openai's chat completion requests to a
// template instead: the route and the body a client's helper would use,
// leaving the answer to go-openai's own stream parser.
type templateTransport struct {
	name, vars string
}

func (tt templateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Path = strings.Replace(r.URL.Path, "/chat/completions", "/templates/"+tt.name, 1)
	body := `{"variables": ` + tt.vars + `, "stream": true}`
	r.Body, r.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
	return http.DefaultTransport.RoundTrip(r)
}

// TestTemplateStreamsThroughGoOpenAI: a chat template's stream, read by
// go-openai's parser (the npm SDK's reads the Responses one: sdk.mjs).
func TestTemplateStreamsThroughGoOpenAI(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	cfg := openai.DefaultConfig(e.tok)
	cfg.BaseURL = e.url + "/v1"
	cfg.HTTPClient = &http.Client{Transport: templateTransport{"chord-names", `{"count": 3, "key": "F# minor"}`}}
	c := openai.NewClientWithConfig(cfg)
	s, err := c.CreateChatCompletionStream(context.Background(), openai.ChatCompletionRequest{Model: "ignored", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var text strings.Builder
	chunks := 0
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		chunks++
		if len(chunk.Choices) > 0 {
			text.WriteString(chunk.Choices[0].Delta.Content)
		}
	}
	if chunks < 3 || !strings.Contains(text.String(), "F# minor") {
		t.Errorf("%d chunks, text %q", chunks, text.String())
	}
}
