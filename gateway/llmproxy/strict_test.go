package llmproxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestHostileBodies: bodies that read one way to a lax decoder (keys
// folded to lower case, the last of two equal keys) and another to the
// upstream, or that ask for costs the price table does not know, are
// refused with 400 naming the key or field — before anything is reserved
// and before anything reaches the upstream.
func TestHostileBodies(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	book := strings.Repeat("lorem ipsum dolor sit amet ", 6000) // ~30,000 words
	img := `{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}}`
	chat := func(extra string) string {
		return `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	}
	responses := func(extra string) string {
		return `{"model":"gpt-4o-mini","input":"hi"` + extra + `}`
	}
	for _, tc := range []struct {
		name, path, body, want string
	}{
		{"case-variant text in a part", "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"` + book + `","TEXT":""}]}]}`,
			`"messages"[0]."content"[0]."TEXT"`},
		{"images behind a case-variant type", "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[` + strings.Repeat(img+",", 5) + `{"type":"image_url","image_url":{"url":"x"},"Type":"text"}]}]}`,
			`"messages"[0]."content"[5]."Type"`},
		{"a duplicate text", "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"` + book + `","text":""}]}]}`,
			`"messages"[0]."content"[0]."text" appears twice`},
		{"a duplicate by escape", "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"x","te\u0078t":"y"}]}]}`,
			`appears twice`},
		{"a duplicate model", "/v1/chat/completions", chat(`,"model":"gpt-4o"`), `"model" appears twice`},
		{"a case-variant content", "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","Content":"` + book + `"}]}`, `"messages"[0]."Content"`},
		{"a case-variant image detail", "/v1/chat/completions",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x","detail":"high","Detail":"low"}}]}]}`,
			`"messages"[0]."content"[0]."image_url"."Detail"`},
		{"Store", "/v1/chat/completions", chat(`,"Store":true`), `"Store"`},
		{"Service_Tier", "/v1/chat/completions", chat(`,"Service_Tier":"priority"`), `"Service_Tier"`},
		{"N", "/v1/chat/completions", chat(`,"N":5`), `"N"`},
		{"Stream_Options", "/v1/chat/completions", chat(`,"stream":true,"stream_options":{"Include_Usage":false}`), `"stream_options"."Include_Usage"`},
		{"a case-variant tool description", "/v1/chat/completions",
			chat(`,"tools":[{"type":"function","function":{"name":"f","Description":"` + book + `"}}]`), `"tools"[0]."function"."Description"`},
		{"audio output", "/v1/chat/completions", chat(`,"audio":{"voice":"alloy","format":"wav"}`), `"audio"`},
		{"audio modality", "/v1/chat/completions", chat(`,"modalities":["text","audio"]`), `"modalities"`},
		{"web search", "/v1/chat/completions", chat(`,"web_search_options":{}`), `"web_search_options"`},
		{"a hosted tool_choice", "/v1/chat/completions", chat(`,"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[]}}`), `"allowed_tools"`},
		{"a tool_choice word", "/v1/chat/completions", chat(`,"tool_choice":"web_search"`), `"tool_choice"`},
		{"a case-variant prediction", "/v1/chat/completions", chat(`,"prediction":{"type":"content","Content":"x"}`), `"prediction"."Content"`},
		{"a case-variant response_format", "/v1/chat/completions", chat(`,"response_format":{"Type":"json_object"}`), `"response_format"."Type"`},

		{"Responses: a file behind TYPE", "/v1/responses",
			`{"model":"gpt-4o-mini","input":[{"role":"user","content":[{"type":"input_file","file_id":"file-1","TYPE":"input_text"}]}]}`,
			`"input"[0]."content"[0]."TYPE"`},
		{"Responses: web search behind TYPE", "/v1/responses", responses(`,"tools":[{"type":"web_search_preview","TYPE":"function"}]`), `"tools"[0]."TYPE"`},
		{"Responses: code interpreter", "/v1/responses", responses(`,"tools":[{"type":"code_interpreter","container":{"type":"auto"}}]`), `"code_interpreter"`},
		{"Responses: mcp behind TYPE", "/v1/responses",
			responses(`,"tools":[{"type":"mcp","server_label":"x","server_url":"https://attacker.example/mcp","TYPE":"function"}]`), `"tools"[0]."TYPE"`},
		{"Responses: Previous_Response_Id", "/v1/responses", responses(`,"Previous_Response_Id":"resp_1"`), `"Previous_Response_Id"`},
		{"Responses: Store", "/v1/responses", responses(`,"Store":true`), `"Store"`},
		{"Responses: Background", "/v1/responses", responses(`,"Background":true`), `"Background"`},
		{"Responses: a hosted tool_choice", "/v1/responses", responses(`,"tool_choice":{"type":"web_search_preview"}`), `"web_search_preview"`},
		{"Responses: an mcp tool_choice", "/v1/responses", responses(`,"tool_choice":{"type":"mcp","server_label":"x"}`), `"mcp"`},
		{"Responses: a case-variant item content", "/v1/responses",
			`{"model":"gpt-4o-mini","input":[{"role":"user","content":"hi","CONTENT":"` + book + `"}]}`, `"input"[0]."CONTENT"`},
		{"Responses: a duplicate instructions", "/v1/responses", responses(`,"instructions":"a","instructions":"b"`), `"instructions" appears twice`},
		{"Responses: a case-variant text format", "/v1/responses", responses(`,"text":{"Format":{"type":"text"}}`), `"text"."Format"`},
		{"Responses: a case-variant function call", "/v1/responses",
			`{"model":"gpt-4o-mini","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{}","Arguments":"` + book + `"}]}`,
			`"input"[0]."Arguments"`},
		{"a case-variant legacy function", "/v1/chat/completions",
			chat(`,"functions":[{"name":"f","Description":"` + book + `"}]`), `"functions"[0]."Description"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(tc.path, tc.body)
			wantError(t, r, 400, wire.CodeBadRequest)
			if !strings.Contains(r.body, strings.ReplaceAll(tc.want, `"`, `\"`)) {
				t.Errorf("the message does not name %s: %s", tc.want, r.body)
			}
		})
	}
	if u := e.usage(); u[quota.RequestsPerMinute] != 0 || u[quota.TokensPerDay] != 0 || u[quota.USDPerDay] != 0 {
		t.Errorf("hostile bodies consumed %v", u)
	}
	if e.model.Last().Body != nil {
		t.Errorf("a hostile body reached the upstream: %.200s", e.model.Last().Body)
	}
}

// TestUpstreamUsageIsChecked: usage is input too. Negative figures are no
// report (the reservation is charged), cached tokens above the input are
// clamped to it, and usage above the reservation is charged as reported,
// logged at WARN with both figures and counted in a metric.
func TestUpstreamUsageIsChecked(t *testing.T) {
	const reserved = 9 + 1024 // "hello there" as one user message (9 tokens), and free's output cap
	for _, tc := range []struct {
		name, path, usage string
		source            string
		tokens, micros    int64
		over              bool
	}{
		{"negative prompt tokens", "/v1/chat/completions", `{"prompt_tokens":-5000,"completion_tokens":10,"total_tokens":-4990}`,
			"reservation", reserved, 10*150/1000 + 1024*600/1000 + 1, false},
		{"negative cached tokens", "/v1/chat/completions", `{"prompt_tokens":10,"completion_tokens":10,"total_tokens":20,"prompt_tokens_details":{"cached_tokens":-10}}`,
			"reservation", reserved, 10*150/1000 + 1024*600/1000 + 1, false},
		{"cached above the prompt", "/v1/chat/completions", `{"prompt_tokens":200,"completion_tokens":10,"total_tokens":210,"prompt_tokens_details":{"cached_tokens":900}}`,
			"upstream", 210, 200*75/1000 + 10*600/1000, false},
		{"over the reservation", "/v1/chat/completions", `{"prompt_tokens":5000,"completion_tokens":100,"total_tokens":5100}`,
			"upstream", 5100, 5000*150/1000 + 100*600/1000, true},
		{"Responses: negative output tokens", "/v1/responses", `{"input_tokens":10,"output_tokens":-1,"total_tokens":9}`,
			"reservation", 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, app.Deps{})
			e.setFault(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				if strings.HasSuffix(r.URL.Path, "/responses") {
					io.WriteString(w, `{"id":"resp_1","object":"response","status":"completed","output":[],"usage":`+tc.usage+`}`)
					return
				}
				io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":`+tc.usage+`}`)
			})
			body := hello
			if tc.path == "/v1/responses" {
				body = `{"model":"gpt-4o-mini","input":"hello there"}`
			}
			if r := e.post(tc.path, body); r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			c := e.lastCompletion()
			if c["usage_source"] != tc.source {
				t.Errorf("usage source %v, want %s", c["usage_source"], tc.source)
			}
			if tc.tokens == 0 { // the reservation, whatever it is
				tc.tokens = int64(c["reserved_tokens"].(float64))
			}
			if u := e.usage(); u[quota.TokensPerDay] != tc.tokens || (tc.micros != 0 && u[quota.USDPerDay] != tc.micros) {
				t.Errorf("charged %v, want %d tokens and %d µ$", u, tc.tokens, tc.micros)
			}
			rec := httptest.NewRecorder()
			e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
			metric := `sas_settlement_over_reservation_total{endpoint="chat.completions",model="gpt-4o-mini"} 1`
			warned := strings.Contains(e.logs.String(), `"msg":"usage above the reservation"`) &&
				strings.Contains(e.logs.String(), `"reserved_tokens":1033,"tokens":5100`)
			if got := strings.Contains(rec.Body.String(), metric); got != tc.over || warned != tc.over {
				t.Errorf("over the reservation: metric %v, WARN with both figures %v; want %v", got, warned, tc.over)
			}
		})
	}
}
