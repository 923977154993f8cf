package llmproxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/llmproxy"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// The Responses API (POST /v1/responses) on the accounting path of chat.

// responseUsage reads a Responses API answer's usage.
func responseUsage(t *testing.T, body string) (input, cached, output int64) {
	t.Helper()
	var r struct {
		Object string
		Usage  struct {
			InputTokens        int64 `json:"input_tokens"`
			InputTokensDetails struct {
				CachedTokens int64 `json:"cached_tokens"`
			} `json:"input_tokens_details"`
			OutputTokens int64 `json:"output_tokens"`
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Object != "response" || r.Usage.InputTokens == 0 {
		t.Fatalf("not a response with usage: %v %s", err, body)
	}
	return r.Usage.InputTokens, r.Usage.InputTokensDetails.CachedTokens, r.Usage.OutputTokens
}

// TestResponsesForwardsAndCharges: a non-streamed response goes upstream
// with the fields the gateway owns, comes back as OpenAI sent it, and is
// charged exactly its usage, in tokens and money.
func TestResponsesForwardsAndCharges(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	r := e.post("/v1/responses", `{"model":"gpt-4o-mini","instructions":"Answer in one line.",
		"input":[{"role":"user","content":[{"type":"input_text","text":"hello from the responses api"}]}],
		"max_output_tokens":99999,"store":true,"metadata":{"k":"v"},"user":"bob@example.com","service_tier":"priority",
		"tools":[{"type":"function","name":"play","parameters":{"type":"object"}}],"x_future":{"kept":true}}`)
	if r.status != 200 || !strings.Contains(r.body, "hello from the responses api") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	in, _, out := responseUsage(t, r.body)
	if u := e.usage(); u[quota.TokensPerDay] != in+out || u[quota.RequestsPerDay] != 1 || u[quota.USDPerDay] != int64(e.price("gpt-4o-mini").Cost(in, 0, out)) {
		t.Errorf("charged %v; want %d+%d tokens", u, in, out)
	}
	var sent map[string]json.RawMessage
	if err := json.Unmarshal(e.model.Last().Body, &sent); err != nil {
		t.Fatal(err)
	}
	if string(sent["store"]) != "false" || sent["metadata"] != nil || sent["user"] != nil || sent["service_tier"] != nil ||
		sent["x_future"] == nil || string(sent["max_output_tokens"]) != fmt.Sprint(e.plans["free"].MaxTokens) ||
		string(sent["safety_identifier"]) != `"`+llmproxy.SafetyIdentifier(e.user)+`"` {
		t.Errorf("upstream received %s", e.model.Last().Body)
	}
	if got := e.model.Last().Header.Get("Authorization"); got != "Bearer "+upstreamKey {
		t.Errorf("upstream Authorization %q", got)
	}
	if c := e.lastCompletion(); c["endpoint"] != "responses" || c["usage_source"] != "upstream" {
		t.Errorf("completion log: %v", c)
	}
	// The cap is sent when the client sets none.
	if r := e.post("/v1/responses", `{"model":"gpt-4o-mini","input":"hi"}`); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if err := json.Unmarshal(e.model.Last().Body, &sent); err != nil || string(sent["max_output_tokens"]) != fmt.Sprint(e.plans["free"].MaxTokens) {
		t.Errorf("no cap sent: %s", e.model.Last().Body)
	}
}

// price is the price table's entry of model.
func (e *env) price(model string) quota.Price {
	e.t.Helper()
	p, ok := quota.BuiltInPrices()[model]
	if !ok {
		e.t.Fatalf("no price for %s", model)
	}
	return p
}

// TestResponsesStream: the typed events are relayed one by one, in order,
// ending with response.completed, and the stream is charged exactly the
// usage that event reports.
func TestResponsesStream(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	r := e.post("/v1/responses", `{"model":"gpt-4o-mini","stream":true,"input":"stream this please, word by word"}`)
	if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var types []string
	var completed string
	for event := range strings.SplitSeq(strings.TrimSpace(r.body), "\n\n") {
		typ, data, ok := strings.Cut(event, "\ndata: ")
		if !ok || !strings.HasPrefix(typ, "event: ") {
			t.Fatalf("not a typed event: %q", event)
		}
		types = append(types, strings.TrimPrefix(typ, "event: "))
		if types[len(types)-1] == "response.completed" {
			completed = data
		}
	}
	deltas := strings.Count(r.body, "event: response.output_text.delta\n")
	if len(types) < 8 || types[0] != "response.created" || types[len(types)-1] != "response.completed" || deltas < 3 {
		t.Fatalf("events %v (%d deltas)", types, deltas)
	}
	var ev struct{ Response json.RawMessage }
	if err := json.Unmarshal([]byte(completed), &ev); err != nil {
		t.Fatal(err)
	}
	in, _, out := responseUsage(t, string(ev.Response))
	if u := e.usage(); u[quota.TokensPerDay] != in+out {
		t.Errorf("charged %v; want exactly %d+%d", u, in, out)
	}
	c := e.lastCompletion()
	if c["outcome"] != "complete" || c["usage_source"] != "upstream" || c["stream"] != true {
		t.Errorf("completion log: %v", c)
	}
	// The dev model counts the prompt as OpenAI does: the estimate (the
	// reservation) is not below it.
	if est, _ := c["prompt_estimate"].(float64); int64(est) < in {
		t.Errorf("prompt estimate %v, below the %d input tokens charged", c["prompt_estimate"], in)
	}
}

// TestResponsesCachedAndCutStreams: cached input at the cached price; a
// stream that ends before its last event is charged the whole reservation.
func TestResponsesCachedAndCutStreams(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4o-mini","output":[],
			"usage":{"input_tokens":1000,"input_tokens_details":{"cached_tokens":600},"output_tokens":100,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":1100}}`)
	})
	if r := e.post("/v1/responses", `{"model":"gpt-4o-mini","input":"x"}`); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// 400 × 0.15 + 600 × 0.075 + 100 × 0.60 µ$
	if u := e.usage(); u[quota.TokensPerDay] != 1100 || u[quota.USDPerDay] != 165 {
		t.Errorf("charged %v; want 1100 tokens and 165 µ$", u)
	}

	e = newEnv(t, nil, app.Deps{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_2\",\"usage\":null}}\n\n")
		io.WriteString(w, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"half an ans\"}\n\n")
	})
	r := e.post("/v1/responses", `{"model":"gpt-4o-mini","stream":true,"input":"x","max_output_tokens":50}`)
	if r.status != 200 || !strings.Contains(r.body, "half an ans") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	c := e.lastCompletion()
	if c["outcome"] != "upstream_cut" || c["usage_source"] != "reservation" || e.usage()[quota.TokensPerDay] != int64(c["reserved_tokens"].(float64)) {
		t.Errorf("cut stream: %v, charged %v", c, e.usage())
	}

	// response.failed ends the stream; what it reports is charged.
	e = newEnv(t, nil, app.Deps{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_3\",\"usage\":null}}\n\n")
		io.WriteString(w, "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":1,\"response\":{\"id\":\"resp_3\",\"status\":\"failed\","+
			"\"error\":{\"code\":\"server_error\",\"message\":\"oops\"},\"usage\":{\"input_tokens\":40,\"output_tokens\":7,\"total_tokens\":47}}}\n\n")
		w.(http.Flusher).Flush()
		hang(r) // the upstream keeps the connection: the last event ends the stream anyway
	})
	r = e.post("/v1/responses", `{"model":"gpt-4o-mini","stream":true,"input":"x"}`)
	if r.status != 200 || !strings.Contains(r.body, "event: response.failed") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if c := e.lastCompletion(); c["outcome"] != "upstream_cut" || c["usage_source"] != "upstream" || e.usage()[quota.TokensPerDay] != 47 {
		t.Errorf("failed response: %v, charged %v", c, e.usage())
	}

	// Found in review: response.failed without usage is an upstream
	// failure, given back like chat's (all but the minute's request).
	e = newEnv(t, nil, app.Deps{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":0,\"response\":{\"id\":\"resp_4\",\"status\":\"failed\","+
			"\"error\":{\"code\":\"server_error\",\"message\":\"oops\"},\"usage\":null}}\n\n")
	})
	if r := e.post("/v1/responses", `{"model":"gpt-4o-mini","stream":true,"input":"x"}`); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if c, u := e.lastCompletion(), e.usage(); c["outcome"] != "upstream_error" || u[quota.TokensPerDay] != 0 || u[quota.RequestsPerDay] != 0 || u[quota.RequestsPerMinute] != 1 {
		t.Errorf("failed response without usage: %v, charged %v", c, u)
	}
}

// TestResponsesRefusals: what needs stored state, tools billed beyond
// tokens, malformed input, a model off the plan and a prompt over the cap
// are refused before the quota and the upstream: nothing is consumed.
func TestResponsesRefusals(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	for body, want := range map[string]string{
		`{"model":"gpt-4o-mini","input":"hi","previous_response_id":"resp_123"}`:                                    wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":"hi","conversation":"conv_123"}`:                                            wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","prompt":{"id":"pmpt_123"}}`:                                                        wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":"hi","background":true}`:                                                    wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":"hi","tools":[{"type":"web_search"}]}`:                                      wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":"hi","tools":[{"type":"function","name":"f"},{"type":"code_interpreter"}]}`: wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":"hi","tools":[{"name":"no type"}]}`:                                         wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":[{"type":"item_reference","id":"msg_123"}]}`:                                wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":[{"id":"msg_123"}]}`:                                                        wire.CodeBadRequest, // found in review: the type is optional
		`{"model":"gpt-4o-mini","instructions":[{"role":"user","content":"x"}],"input":"hi"}`:                       wire.CodeBadRequest, // found in review
		`{"model":"gpt-4o-mini","input":[{"role":"user","content":[{"type":"input_file","file_id":"file_123"}]}]}`:  wire.CodeBadRequest,
		`{"model":"gpt-4o-mini"}`:                                                 wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":[]}`:                                      wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":42}`:                                      wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":"hi","max_output_tokens":0}`:              wire.CodeBadRequest,
		`{"model":"gpt-4o-mini","input":"hi","stream":"yes"}`:                     wire.CodeBadRequest,
		`{"model":"","input":"hi"}`:                                               wire.CodeBadRequest,
		`["not an object"]`:                                                       wire.CodeBadRequest,
		`{"model":"gpt-4o","input":"hi"}`:                                         wire.CodeModelNotAllowed,
		`{"model":"gpt-4o-mini","input":"` + strings.Repeat("word ", 9000) + `"}`: wire.CodePromptTooLarge,
		`{"model":"gpt-4o-mini","instructions":"` + strings.Repeat("word ", 9000) + `","input":"hi"}`:                                         wire.CodePromptTooLarge,
		`{"model":"gpt-4o-mini","input":"hi","tools":[{"type":"function","name":"f","description":"` + strings.Repeat("word ", 9000) + `"}]}`: wire.CodePromptTooLarge,
	} {
		r := e.post("/v1/responses", body)
		var eb wire.ErrorBody
		if r.status != wire.HTTPStatus(want) || json.Unmarshal([]byte(r.body), &eb) != nil || eb.Error.Code != want || eb.Error.Message == "" {
			t.Errorf("%.100s: %d %s, want %s", body, r.status, r.body, want)
		}
	}
	if u := e.usage(); u[quota.RequestsPerMinute] != 0 || u[quota.RequestsPerDay] != 0 || u[quota.TokensPerDay] != 0 || e.model.Last().Body != nil {
		t.Errorf("refusals consumed %v or reached the upstream (%s)", u, e.model.Last().Body)
	}
	if r := e.post("/v1/responses", `{"model":"gpt-4o-mini","input":"hi","tools":[{"type":"web_search"}]}`); !strings.Contains(r.body, `\"web_search\"`) {
		t.Errorf("the refusal does not name the tool type: %s", r.body)
	}
}

// TestResponsesUpstreamErrors: upstream errors map as for chat — a client
// fault counts as a request without tokens, an upstream failure gives
// everything back but the minute.
func TestResponsesUpstreamErrors(t *testing.T) {
	for _, c := range []struct {
		upstream, status int
		code             string
		requests         int64
	}{
		{400, 400, wire.CodeBadRequest, 1},
		{404, 404, wire.CodeBadRequest, 1},
		{500, 502, wire.CodeUpstreamError, 0},
		{401, 502, wire.CodeUpstreamError, 0},
		{429, 503, wire.CodeUnavailable, 0},
	} {
		t.Run(fmt.Sprint(c.upstream), func(t *testing.T) {
			e := newEnv(t, nil, app.Deps{})
			e.setFault(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(c.upstream)
				io.WriteString(w, `{"error":{"message":"upstream says no","type":"invalid_request_error","param":null,"code":null}}`)
			})
			r := e.post("/v1/responses", `{"model":"gpt-4o-mini","input":"hi"}`)
			wantError(t, r, c.status, c.code)
			if u := e.usage(); u[quota.RequestsPerDay] != c.requests || u[quota.TokensPerDay] != 0 || u[quota.USDPerDay] != 0 || u[quota.RequestsPerMinute] != 1 {
				t.Errorf("used %v", u)
			}
		})
	}
}

// TestBudgetsHoldAcrossEndpoints: chat completions and responses at once,
// over three instances, share one day's token budget and one set of
// concurrency slots: reservations that fit twice admit exactly two.
func TestBudgetsHoldAcrossEndpoints(t *testing.T) {
	plans, free := fitsTwice()
	e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
	urls := append([]string{e.url}, e.extraInstances(t, plans, 2)...)
	input := fmt.Sprintf(`{"model":"gpt-4o-mini","stream":true,"input":[{"role":"user","content":%q}]}`, strings.Repeat("word ", 3000))
	admitted, refused := e.burstOf(t, e.gated(), urls, 10,
		request{"/v1/chat/completions", chatBody("gpt-4o-mini", 3000, true)}, request{"/v1/responses", input})
	if admitted != 2 || refused["quota_exceeded/tokens_per_day"] != 8 {
		t.Errorf("admitted %d, refused %v; want 2 admitted and 8 refused by tokens_per_day", admitted, refused)
	}
	if used := e.usage()[quota.TokensPerDay]; used > free.TokensPerDay || used == 0 {
		t.Errorf("the day's charge is %d tokens, budget %d", used, free.TokensPerDay)
	}

	// Concurrency: the plan's slots are shared by both endpoints.
	plans = quota.BuiltIn()
	free = plans["free"]
	free.RequestsPerMinute, free.ConcurrentRequests = 1000, 2
	plans["free"] = free
	e = newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
	admitted, refused = e.burstOf(t, e.gated(), []string{e.url}, 6,
		request{"/v1/chat/completions", hello}, request{"/v1/responses", `{"model":"gpt-4o-mini","input":"hello there"}`})
	if admitted != 2 || refused["too_many_concurrent/concurrent_requests"] != 4 {
		t.Errorf("admitted %d, refused %v; want 2 admitted, 4 too_many_concurrent", admitted, refused)
	}
}

// TestResponsesIncompleteStream: a streamed response stopped by
// max_output_tokens ends with response.incomplete, which ends the stream
// as response.completed does (even while the upstream keeps the
// connection): the outcome is complete and the charge is exactly the usage
// that event reports, in tokens and money.
func TestResponsesIncompleteStream(t *testing.T) {
	e := newEnv(t, nil, app.Deps{UpstreamIdleTimeout: 300 * time.Millisecond})
	const incomplete = "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"sequence_number\":2,\"response\":{\"id\":\"resp_6\",\"object\":\"response\"," +
		"\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":100,\"input_tokens_details\":{\"cached_tokens\":60}," +
		"\"output_tokens\":16,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":116}}}\n\n"
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_6\",\"usage\":null}}\n\n")
		io.WriteString(w, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"sixteen tokens and then\"}\n\n")
		io.WriteString(w, incomplete)
		w.(http.Flusher).Flush()
		hang(r) // the connection stays open: only the last event ends the stream before the idle timeout
	})
	// A hundred words: the reservation (their estimate and the 16 output
	// tokens) is above the usage, which is what must be charged.
	r := e.post("/v1/responses", `{"model":"gpt-4o-mini","stream":true,"input":"`+strings.Repeat("word ", 100)+`","max_output_tokens":16}`)
	if r.status != 200 || !strings.HasSuffix(r.body, incomplete) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if c := e.lastCompletion(); c["outcome"] != "complete" || c["usage_source"] != "upstream" {
		t.Errorf("completion log: %v, want outcome complete, usage from the upstream", c)
	}
	cost := int64(e.price("gpt-4o-mini").Cost(100, 60, 16))
	want := map[string]int64{quota.RequestsPerMinute: 1, quota.RequestsPerDay: 1, quota.TokensPerDay: 116, quota.USDPerDay: cost, quota.USDPerMonth: cost}
	if diff := cmp.Diff(want, e.usage()); diff != "" {
		t.Errorf("charged (-want +got):\n%s", diff)
	}
}
