package llmproxy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/shared/wire"
)

var freeUser = gateway.User{ClerkUserID: "user_strict", Plan: wire.PlanFree}

// TestNothingForwardedIsUnseen: a key the gateway does not know — in a
// part, a message, an item, a tool or the body — is counted with its
// value as JSON text, so a book hidden there is over the free plan's
// max_input_tokens like the same book in the text.
func TestNothingForwardedIsUnseen(t *testing.T) {
	plan, enc := quota.BuiltIn()["free"], tokenizer.O200k()
	book := quote(strings.Repeat("lorem ipsum dolor sit amet ", 2000)) // ~10,000 tokens
	for _, body := range []string{
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"hi","x_note":` + book + `}]}]}`,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","x_note":` + book + `}]}`,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x","detail":"low","x_note":` + book + `}}]}]}`,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x_future":` + book + `}`,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"},"x_note":` + book + `}]}`,
		`{"model":"gpt-4o-mini","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"},` + book + `:1}]}]}`,
	} {
		if _, err := parseChat([]byte(body), nil, freeUser, plan, enc); wire.ErrorCode(err) != wire.CodePromptTooLarge {
			t.Errorf("%.120s…: %v, want prompt_too_large", body, err)
		}
	}
	for _, body := range []string{
		`{"model":"gpt-4o-mini","input":[{"role":"user","content":[{"type":"input_text","text":"hi","x_note":` + book + `}]}]}`,
		`{"model":"gpt-4o-mini","input":[{"type":"function_call","name":"f","arguments":"{}","call_id":"c","x_note":` + book + `}]}`,
		`{"model":"gpt-4o-mini","input":"hi","x_future":` + book + `}`,
		`{"model":"gpt-4o-mini","input":"hi","tools":[{"type":"function","name":"f","x_note":` + book + `}]}`,
	} {
		if _, err := parseResponses([]byte(body), nil, freeUser, plan, enc); wire.ErrorCode(err) != wire.CodePromptTooLarge {
			t.Errorf("%.120s…: %v, want prompt_too_large", body, err)
		}
	}
	// The same requests without the hidden text are admitted.
	if _, err := parseChat([]byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"hi","x_note":"short"}]}],"x_future":1}`), nil, freeUser, plan, enc); err != nil {
		t.Errorf("short unknown keys: %v", err)
	}
}

// TestCostFields: a prediction is reserved as input and as output (its
// rejected tokens are billed as output, beyond the cap); prompt_cache_key
// is the user's own; tool_choice passes for functions and the three
// words; modalities ["text"] passes.
func TestCostFields(t *testing.T) {
	plan, enc := quota.BuiltIn()["free"], tokenizer.O200k()
	parse := func(body string) chatRequest {
		t.Helper()
		req, err := parseChat([]byte(body), nil, freeUser, plan, enc)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return req
	}
	const msgs = `"model":"gpt-4o-mini","messages":[{"role":"user","content":"refactor this"}]`
	base := parse(`{` + msgs + `}`)
	code := strings.Repeat("func main() { fmt.Println(\"hello\") }\n", 50)
	pred := parse(`{` + msgs + `,"prediction":{"type":"content","content":` + quote(code) + `}}`)
	if n := int64(enc.Count(code)); pred.promptTokens-base.promptTokens < n || pred.extraOutput < n || pred.outputCap != base.outputCap {
		t.Errorf("prediction of %d tokens: input +%d, output reserved +%d, cap %d (want both ≥ %d, cap %d)",
			n, pred.promptTokens-base.promptTokens, pred.extraOutput, pred.outputCap, n, base.outputCap)
	}

	keyOf := func(u gateway.User, body string) string {
		req, err := parseChat([]byte(body), nil, u, plan, enc)
		if err != nil {
			t.Fatal(err)
		}
		var k string
		_ = json.Unmarshal(req.fields["prompt_cache_key"], &k)
		return k
	}
	body := `{` + msgs + `,"prompt_cache_key":"victim-bucket"}`
	a, b := keyOf(freeUser, body), keyOf(gateway.User{ClerkUserID: "user_other", Plan: wire.PlanFree}, body)
	if a == "victim-bucket" || a == b || a != keyOf(freeUser, body) || !strings.HasPrefix(a, "sas_") ||
		a == keyOf(freeUser, `{`+msgs+`,"prompt_cache_key":"another"}`) {
		t.Errorf("prompt_cache_key: %q for one user, %q for another: want per user, stable, per client key", a, b)
	}
	if _, sent := base.fields["prompt_cache_key"]; sent {
		t.Error("a prompt_cache_key was sent for a request without one")
	}
	for _, ok := range []string{`"none"`, `"auto"`, `"required"`, `{"type":"function","function":{"name":"f"}}`} {
		parse(`{` + msgs + `,"tool_choice":` + ok + `}`)
	}
	parse(`{` + msgs + `,"modalities":["text"]}`)
	if _, err := parseResponses([]byte(`{"model":"gpt-4o-mini","input":"hi","tool_choice":{"type":"function","name":"f"}}`), nil, freeUser, plan, enc); err != nil {
		t.Errorf("a Responses function tool_choice: %v", err)
	}
}

// TestForwardedNeverExceedsTheReservation is the request model's property:
// for random bodies — unknown keys anywhere, case variants, duplicates,
// nested junk, images, tool calls — either the gateway refuses the body
// (400 bad_request or prompt_too_large), or what it forwards, decoded
// again (strictly, as the gateway does, and laxly, as Go's encoding/json
// and an OpenAI-compatible server written with it would), estimates to no
// more than what it reserved.
func TestForwardedNeverExceedsTheReservation(t *testing.T) {
	plan, enc := quota.BuiltIn()["pro"], tokenizer.O200k()
	plan.MaxInputTokens = 0 // the property is about the estimate, not the cap
	rng := rand.New(rand.NewPCG(11, 12))
	admitted := 0
	for i := range 3000 {
		body := randomChat(rng)
		req, err := parseChat([]byte(body), nil, freeUser, plan, enc)
		if err != nil {
			if c := wire.ErrorCode(err); c != wire.CodeBadRequest && c != wire.CodePromptTooLarge {
				t.Fatalf("body %d: %v (want bad_request or a forward)\n%s", i, err, body)
			}
			continue
		}
		admitted++
		sent := encodeObject(req.fields)
		again, err := parseChat(sent, nil, freeUser, plan, enc)
		if err != nil || again.promptTokens > req.promptTokens {
			t.Fatalf("body %d: the forwarded body estimates to %d (%v), above the %d reserved\n%s", i, again.promptTokens, err, req.promptTokens, sent)
		}
		if lax := laxEstimate(t, enc, sent); lax > req.promptTokens {
			t.Fatalf("body %d: a lax decoder reads %d tokens of text in the forwarded body, above the %d reserved\n%s", i, lax, req.promptTokens, sent)
		}
	}
	if admitted < 300 {
		t.Errorf("only %d of 3000 random bodies admitted: the generator tests little", admitted)
	}
}

// laxEstimate counts the text a lax upstream (go-openai's types through
// encoding/json: keys folded, the last duplicate kept) reads in a chat
// request's messages, with the chat recipe's overheads.
func laxEstimate(t *testing.T, enc *tokenizer.Encoding, body []byte) int64 {
	var req openai.ChatCompletionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return 0 // not a request it can read: it bills nothing
	}
	n := int64(replyPriming)
	count := func(s string) int64 { return int64(enc.Count(s)) }
	for _, m := range req.Messages {
		n += tokensPerMessage + count(m.Role) + count(m.Content) + count(m.Name)
		if m.Name != "" {
			n += tokensPerName
		}
		for _, p := range m.MultiContent {
			n += count(p.Text)
			if p.ImageURL != nil {
				n += imageCost(req.Model).low
			}
		}
		for _, c := range m.ToolCalls {
			n += count(c.Function.Name) + count(c.Function.Arguments)
		}
	}
	return n
}

// randomChat is a chat request with random pieces of everything the
// request model must see through.
func randomChat(rng *rand.Rand) string {
	words := func() string {
		w := []string{"loop", "bass", "ΣΩ", "日本語の歌", "=====", "    ", "x", "\\u0041", "\\\"q\\\""}
		var b strings.Builder
		for range 1 + rng.IntN(30) {
			b.WriteString(w[rng.IntN(len(w))] + " ")
		}
		return `"` + b.String() + `"`
	}
	// key is a known key, a case variant of it, or an unknown one.
	key := func(k string) string {
		switch rng.IntN(12) {
		case 0:
			return strings.ToUpper(k)
		case 1:
			return "x_" + k
		}
		return k
	}
	junk := func() string {
		switch rng.IntN(4) {
		case 0:
			return ""
		case 1:
			return `,"` + key("text") + `":` + words()
		case 2:
			return `,"` + key("extra") + `":{"a":[1,` + words() + `]}`
		}
		return `,"` + key("type") + `":"text"`
	}
	part := func() string {
		switch rng.IntN(4) {
		case 0:
			return `{"type":"image_url","image_url":{"url":"data:x","detail":"low"` + junk() + `}` + junk() + `}`
		case 1:
			return `{"type":"text","text":` + words() + `,"text":""}` // a duplicate
		}
		return `{"` + key("type") + `":"text","` + key("text") + `":` + words() + junk() + `}`
	}
	message := func() string {
		content := words()
		if rng.IntN(2) == 0 {
			parts := []string{}
			for range 1 + rng.IntN(4) {
				parts = append(parts, part())
			}
			content = "[" + strings.Join(parts, ",") + "]"
		}
		m := `{"` + key("role") + `":"user","` + key("content") + `":` + content + junk()
		if rng.IntN(4) == 0 {
			m += `,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","` + key("arguments") + `":` + words() + `}}]`
		}
		if rng.IntN(6) == 0 {
			m += `,"` + key("name") + `":` + words()
		}
		return m + "}"
	}
	msgs := []string{}
	for range 1 + rng.IntN(4) {
		msgs = append(msgs, message())
	}
	top := ""
	for range rng.IntN(3) {
		top += fmt.Sprintf(`,"%s":%s`, key([]string{"store", "n", "tools", "x_future", "prediction"}[rng.IntN(5)]), words())
	}
	return `{"model":"gpt-4o","messages":[` + strings.Join(msgs, ",") + `]` + top + `}`
}

// TestNoInputLimitCountsLongPiecesExactly: a plan without max_input_tokens
// still counts text in long pieces exactly (within the merge budget), not
// as its bytes.
func TestNoInputLimitCountsLongPiecesExactly(t *testing.T) {
	plan, enc := quota.BuiltIn()["pro"], tokenizer.O200k()
	plan.MaxInputTokens = 0
	text := strings.Repeat("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下", 100) // one piece of 9,600 bytes
	req, err := parseChat([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":`+quote(text)+`}]}`), nil, freeUser, plan, enc)
	if err != nil {
		t.Fatal(err)
	}
	// 3 to prime the reply, 3 for the message, its role, its text.
	if want := int64(3 + 3 + enc.Count("user") + enc.Count(text)); req.promptTokens != want {
		t.Errorf("estimate %d, want the exact %d (its bytes: %d)", req.promptTokens, want, len(text))
	}
}

// TestToolRecipe: function definitions by OpenAI's cookbook
// (num_tokens_for_tools): 12 in all, 7 per function and its
// "name:description", 3 when it has properties, per property 3 and its
// "name:type:description", per enum value 3 and its text, less 3 once per
// enum.
func TestToolRecipe(t *testing.T) {
	enc := tokenizer.O200k()
	e := newEstimator(enc, "gpt-4o", 0)
	raw := `[{"type":"function","function":{"name":"play","description":"Play a note.","parameters":{"type":"object",
		"properties":{"key":{"type":"string","description":"The key.","enum":["C","D#"]},"bars":{"type":"integer"}}}}}]`
	c := func(s string) int64 { return int64(enc.Count(s)) }
	want := 12 + 7 + c("play:Play a note") + 3 +
		3 + c("key:string:The key") - 3 + (3 + c("C")) + (3 + c("D#")) +
		3 + c("bars:integer:")
	if got := e.recipe([]byte(raw), false); got != want {
		t.Errorf("recipe = %d, want %d", got, want)
	}
}

// TestOverTheLimitStopsCounting: once the estimate is over the input
// limit, later text is not counted at all — a hostile prompt's long pieces
// cost no merging past the point where it is refused.
func TestOverTheLimitStopsCounting(t *testing.T) {
	e := newEstimator(tokenizer.O200k(), "gpt-4o", 10)
	e.text(strings.Repeat("word ", 20))
	if !e.over() {
		t.Fatal("not over the limit")
	}
	n, work := e.n, e.work
	e.text(strings.Repeat("的一是不了人我在有他", 100)) // one long piece
	if e.n != n || e.work != work {
		t.Errorf("after the limit: count %d → %d, merge budget %d → %d; want both unchanged", n, e.n, work, e.work)
	}
}
