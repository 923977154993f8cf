package llmproxy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	tiktoken "github.com/pkoukk/tiktoken-go"
	loader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/shared/wire"
)

// referenceCount is what OpenAI bills as prompt tokens for a chat request,
// computed with the reference tokenizer (tiktoken-go) by the recipe OpenAI
// publishes for the gpt-4o family: 3 tokens a message plus its string
// values (1 more for a name), 3 to prime the reply; tool calls as their
// function names and arguments; function definitions by the cookbook's
// num_tokens_for_tools; a response_format schema as its JSON text.
func referenceCount(t *testing.T, body []byte) int {
	t.Helper()
	tiktoken.SetBpeLoader(loader.NewOfflineLoader())
	enc, err := tiktoken.GetEncoding("o200k_base")
	if err != nil {
		t.Fatal(err)
	}
	count := func(s string) int { return len(enc.EncodeOrdinary(s)) }
	type function struct {
		Name, Description string
		Parameters        struct {
			Properties map[string]struct {
				Type        string
				Description string
				Enum        []string
			}
		}
	}
	var req struct {
		Messages []struct {
			Role      string          `json:"role"`
			Content   json.RawMessage `json:"content"`
			Name      string          `json:"name"`
			ToolCalls []struct {
				Function struct{ Name, Arguments string }
			} `json:"tool_calls"`
		}
		Tools          []struct{ Function function }
		Functions      []function      // the legacy form
		ResponseFormat json.RawMessage `json:"response_format"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	n := 3
	for _, m := range req.Messages {
		n += 3 + count(m.Role)
		var s string
		var parts []struct{ Type, Text string }
		switch {
		case json.Unmarshal(m.Content, &s) == nil:
			n += count(s)
		case json.Unmarshal(m.Content, &parts) == nil:
			for _, p := range parts {
				n += count(p.Text)
			}
		}
		if m.Name != "" {
			n += 1 + count(m.Name)
		}
		for _, c := range m.ToolCalls {
			n += count(c.Function.Name) + count(c.Function.Arguments)
		}
	}
	fns := req.Functions
	for _, t := range req.Tools {
		fns = append(fns, t.Function)
	}
	if len(fns) > 0 {
		for _, f := range fns {
			n += 7 + count(f.Name+":"+strings.TrimRight(f.Description, "."))
			if props := f.Parameters.Properties; len(props) > 0 {
				n += 3
				for key, p := range props {
					n += 3
					if len(p.Enum) > 0 {
						n -= 3
						for _, item := range p.Enum {
							n += 3 + count(item)
						}
					}
					n += count(key + ":" + p.Type + ":" + strings.TrimRight(p.Description, "."))
				}
			}
		}
		n += 12
	}
	var rf struct {
		JSONSchema json.RawMessage `json:"json_schema"`
	}
	if json.Unmarshal(req.ResponseFormat, &rf) == nil && rf.JSONSchema != nil {
		n += count(string(rf.JSONSchema))
	}
	return n
}

// TestEstimateAccuracy: for text-only requests of every kind, the estimate
// is never more than 2 % below the reference count of what the upstream
// receives (and, for plain text, equal to it).
func TestEstimateAccuracy(t *testing.T) {
	tools := `[{"type":"function","function":{"name":"set_tempo","description":"Set the song's tempo.","parameters":{"type":"object",
		"properties":{"bpm":{"type":"integer","description":"Beats per minute"},"feel":{"type":"string","description":"Groove","enum":["straight","swing","shuffle"]}},"required":["bpm"]}}},
		{"type":"function","function":{"name":"add_track","description":"Add an instrument track.","parameters":{"type":"object","properties":{"instrument":{"type":"string","description":"General MIDI name"}}}}}]`
	schema := `{"type":"json_schema","json_schema":{"name":"chords","strict":true,"schema":{"type":"object","properties":{"key":{"type":"string"},
		"progression":{"type":"array","items":{"type":"string"}}},"required":["key","progression"],"additionalProperties":false}}}`
	long := strings.Repeat("Write a melancholic chord progression in D minor for a lo-fi beat, with a jazzy turnaround at bar eight. ", 60)
	enum := func(n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf("%q", fmt.Sprintf("k%d", i))
		}
		return `[{"type":"function","function":{"name":"pick","description":"Pick one.","parameters":{"type":"object","properties":{"key":{"type":"string","description":"The key","enum":[` + strings.Join(items, ",") + `]}}}}}]`
	}
	corpus := map[string]string{
		"plain":        `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful music assistant."},{"role":"user","content":"Suggest a chord progression for a sad song."}]}`,
		"long":         `{"model":"gpt-4o-mini","messages":[{"role":"user","content":` + quote(long) + `}]}`,
		"multilingual": `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"日本語で歌詞を書いて。Écris une chanson d'amour. Напиши песню. اكتب أغنية. 노래를 써 줘 🎵🎹"}]}`,
		"names":        `{"model":"gpt-4o-mini","messages":[{"role":"user","name":"steve","content":"hi"},{"role":"assistant","name":"bot","content":"hello"}]}`,
		"parts":        `{"model":"gpt-4o-mini","messages":[{"role":"user","content":[{"type":"text","text":"Describe this groove:"},{"type":"text","text":"kick on 1 and 3, snare on 2 and 4"}]}]}`,
		"tools": `{"model":"gpt-4o-mini","tools":` + tools + `,"messages":[{"role":"user","content":"Make it 92 bpm with swing and add a Rhodes."},
			{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"set_tempo","arguments":"{\"bpm\":92,\"feel\":\"swing\"}"}},
			{"id":"call_2","type":"function","function":{"name":"add_track","arguments":"{\"instrument\":\"Electric Piano 1\"}"}}]},
			{"role":"tool","tool_call_id":"call_1","content":"{\"ok\":true,\"bpm\":92}"},{"role":"tool","tool_call_id":"call_2","content":"{\"ok\":true,\"track\":3}"}]}`,
		"json schema": `{"model":"gpt-4o-mini","response_format":` + schema + `,"messages":[{"role":"user","content":"Give me a progression in C."}]}`,
		// Found in review: enum values cost OpenAI 3 tokens beyond their
		// text, more than their JSON text.
		"12 enum values":  `{"model":"gpt-4o-mini","tools":` + enum(12) + `,"messages":[{"role":"user","content":"pick"}]}`,
		"400 enum values": `{"model":"gpt-4o-mini","tools":` + enum(400) + `,"messages":[{"role":"user","content":"pick"}]}`,
		"legacy functions": `{"model":"gpt-4o-mini","functions":[{"name":"set_tempo","description":"Set the tempo.","parameters":{"type":"object",
			"properties":{"bpm":{"type":"integer","description":"Beats per minute"}}}}],"messages":[{"role":"user","content":"faster"}]}`,
	}
	plan := quota.BuiltIn()["free"]
	plan.MaxInputTokens = 0
	u := gateway.User{ClerkUserID: "user_estimate", Plan: wire.PlanFree}
	for name, body := range corpus {
		t.Run(name, func(t *testing.T) {
			req, err := parseChat([]byte(body), nil, u, plan, tokenizer.O200k())
			if err != nil {
				t.Fatal(err)
			}
			want := referenceCount(t, encodeObject(req.fields))
			got := req.promptTokens
			t.Logf("estimate %d, reference %d (%.1f%%)", got, want, 100*float64(got)/float64(want))
			if float64(got) < 0.98*float64(want) {
				t.Errorf("estimate %d is more than 2%% below the reference %d", got, want)
			}
			if name == "plain" || name == "long" || name == "multilingual" || name == "parts" || name == "names" {
				if got != int64(want) {
					t.Errorf("plain text: estimate %d, reference %d; want them equal", got, want)
				}
			}
		})
	}
}

// TestEstimateNonText: non-text parts are never estimated as zero, and the
// input cap refuses what is over it.
func TestEstimateNonText(t *testing.T) {
	plan := quota.BuiltIn()["pro"]
	u := gateway.User{ClerkUserID: "user_estimate", Plan: wire.PlanPro}
	estimate := func(body string) (int64, error) {
		req, err := parseChat([]byte(body), nil, u, plan, tokenizer.O200k())
		return req.promptTokens, err
	}
	text, _ := estimate(`{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"what is this?"}]}]}`)
	image := func(model, detail string) int64 {
		n, err := estimate(`{"model":"` + model + `","messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},
			{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"` + detail + `"}}]}]}`)
		if err != nil {
			t.Fatal(err)
		}
		return n - text
	}
	for _, tc := range []struct {
		model, detail string
		want          int64
	}{{"gpt-4o", "low", 85}, {"gpt-4o", "high", 1445}, {"gpt-4o", "auto", 1445}, {"gpt-4o-mini", "low", 2833}, {"gpt-4o-mini", "high", 48169}} {
		if got := image(tc.model, tc.detail); got != tc.want {
			t.Errorf("%s image, detail %s: %d tokens, want %d", tc.model, tc.detail, got, tc.want)
		}
	}
	audio, err := estimate(`{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"UklGRiQAAABXQVZFZm10IBAAAAABAAEA","format":"wav"}}]}]}`)
	if err != nil || audio < 20 {
		t.Errorf("audio part estimated at %d (%v)", audio, err)
	}
	// Found in review: a PDF is billed per page (its text and an image of
	// each), which cannot be bounded without reading it: refused.
	for _, file := range []string{`{"file_data":"data:application/pdf;base64,JVBERi0xLjQK","filename":"a.pdf"}`, `{"file_id":"file-abc123"}`} {
		_, err := estimate(`{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"file","file":` + file + `}]}]}`)
		if wire.ErrorCode(err) != wire.CodeBadRequest || !strings.Contains(err.Error(), "file") {
			t.Errorf("a file part: %v, want bad_request naming it", err)
		}
	}
	plan.MaxInputTokens = 1000
	_, err = estimate(`{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`)
	if wire.ErrorCode(err) != wire.CodePromptTooLarge {
		t.Errorf("an image over the cap: %v", err)
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// BenchmarkParse is the cost of reading a request and estimating its
// prompt, per byte of body: the work the gateway adds before a request
// leaves for the upstream — a chat request, and the same request as a
// Responses API call (input_text parts, as the SDKs send it).
func BenchmarkParse(b *testing.B) {
	plan := quota.BuiltIn()["pro"]
	u := gateway.User{ClerkUserID: "user_bench", Plan: wire.PlanPro}
	enc := tokenizer.O200k()
	for _, size := range []int{1 << 10, 16 << 10} {
		text := strings.Repeat("Write a melancholic chord progression in D minor for a lo-fi beat. ", size/68)
		body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a music assistant."},{"role":"user","content":` + quote(text) + `}]}`)
		b.Run(fmt.Sprint("chat/", size>>10, "KiB"), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := parseChat(body, nil, u, plan, enc); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The same request as a Responses API call.
		body = []byte(`{"model":"gpt-4o","instructions":"You are a music assistant.","input":[{"role":"user","content":[{"type":"input_text","text":` + quote(text) + `}]}]}`)
		b.Run(fmt.Sprint("responses/", size>>10, "KiB"), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := parseResponses(body, nil, u, plan, enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestEstimateResponses: a Responses API request is estimated as the chat
// request that says the same (instructions a developer message, a string
// input a user message), so never below what the reference tokenizer
// counts for it; images, function calls, their outputs and function tools
// all count, and the input cap applies.
func TestEstimateResponses(t *testing.T) {
	plan := quota.BuiltIn()["pro"]
	u := gateway.User{ClerkUserID: "user_estimate", Plan: wire.PlanPro}
	responses := func(body string) int64 {
		t.Helper()
		req, err := parseResponses([]byte(body), nil, u, plan, tokenizer.O200k())
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return req.promptTokens
	}
	instr, text := "You are a loop generator. Answer in one line.", strings.Repeat("a melody in D minor, 90 bpm; ", 40)
	chat := fmt.Sprintf(`{"model":"gpt-4o","messages":[{"role":"developer","content":%s},{"role":"user","content":%s}]}`, quote(instr), quote(text))
	req, err := parseChat([]byte(chat), nil, u, plan, tokenizer.O200k())
	if err != nil {
		t.Fatal(err)
	}
	ref := int64(referenceCount(t, []byte(chat)))
	for _, body := range []string{
		fmt.Sprintf(`{"model":"gpt-4o","instructions":%s,"input":%s}`, quote(instr), quote(text)),
		fmt.Sprintf(`{"model":"gpt-4o","instructions":%s,"input":[{"role":"user","content":%s}]}`, quote(instr), quote(text)),
		fmt.Sprintf(`{"model":"gpt-4o","instructions":%s,"input":[{"role":"user","content":[{"type":"input_text","text":%s}]}]}`, quote(instr), quote(text)),
		fmt.Sprintf(`{"model":"gpt-4o","input":[{"role":"developer","content":%s},{"type":"message","role":"user","content":%s}]}`, quote(instr), quote(text)),
	} {
		// "type":"message" adds its value's token: a little over, never under.
		if got := responses(body); got < req.promptTokens || got > req.promptTokens+1 || got < ref {
			t.Errorf("%.90s…: %d tokens; the chat equivalent is %d, the reference %d", body, got, req.promptTokens, ref)
		}
	}

	base := responses(`{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_text","text":"what is this?"}]}]}`)
	for detail, want := range map[string]int64{"low": 85, "high": 1445, "auto": 1445} {
		got := responses(`{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_text","text":"what is this?"},
			{"type":"input_image","image_url":"data:image/png;base64,iVBORw0KGgo=","detail":"`+detail+`"}]}]}`) - base
		if got != want {
			t.Errorf("input_image, detail %s: %d tokens, want %d", detail, got, want)
		}
	}
	args := strings.Repeat(`{\"note\":\"C4\",\"beats\":1},`, 50)
	call := responses(`{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_text","text":"what is this?"}]},
		{"type":"function_call","call_id":"call_1","name":"play_notes","arguments":"[` + args + `]"},
		{"type":"function_call_output","call_id":"call_1","output":"` + strings.Repeat("played ", 100) + `"}]}`)
	if min := base + int64(tokenizer.O200k().Count(strings.ReplaceAll(args, `\"`, `"`))+100); call < min {
		t.Errorf("with a function call and its output: %d tokens, want at least %d", call, min)
	}
	desc := strings.Repeat("plays notes on the synth; ", 30)
	tool := responses(`{"model":"gpt-4o","input":"hi","tools":[{"type":"function","name":"play_notes","description":"` + desc + `",
		"parameters":{"type":"object","properties":{"key":{"type":"string","enum":["C","D","E","F","G","A","B"]}}}}]}`)
	if bare := responses(`{"model":"gpt-4o","input":"hi"}`); tool < bare+int64(tokenizer.O200k().Count(desc)) {
		t.Errorf("a function tool adds %d tokens, less than its description", tool-bare)
	}
	plan.MaxInputTokens = 1000
	_, err = parseResponses([]byte(`{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://example.com/a.png"}]}]}`), nil, u, plan, tokenizer.O200k())
	if wire.ErrorCode(err) != wire.CodePromptTooLarge {
		t.Errorf("an image over the cap: %v", err)
	}
}

// BenchmarkParseHostile is what refusing a hostile prompt costs: a body
// just under 1 MiB whose text is one piece (a separator run, or Chinese
// without punctuation) or many pieces just over LongPiece, on free's and
// pro's input limits.
func BenchmarkParseHostile(b *testing.B) {
	enc := tokenizer.O200k()
	han := []rune("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下")
	var cjk strings.Builder
	for i := 0; cjk.Len() < 1000000; i++ {
		cjk.WriteRune(han[(i*7)%len(han)])
	}
	for _, tc := range []struct{ name, text string }{
		{"one-piece", strings.Repeat("=", 1000000)},
		{"chinese", cjk.String()},
		{"long-pieces", strings.Repeat(strings.Repeat("=", 300)+"x", 3300)},
	} {
		body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":` + quote(tc.text) + `}]}`)
		for _, planName := range []string{"free", "pro"} {
			plan := quota.BuiltIn()[planName]
			plan.Models = []string{"gpt-4o"}
			u := gateway.User{ClerkUserID: "user_bench", Plan: planName}
			b.Run(tc.name+"/"+planName, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					if _, err := parseChat(body, nil, u, plan, enc); wire.ErrorCode(err) != wire.CodePromptTooLarge {
						b.Fatalf("%v, want prompt_too_large", err)
					}
				}
			})
		}
	}
}
