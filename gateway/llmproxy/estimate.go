package llmproxy

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/shared/wire"
)

// How OpenAI counts chat messages beyond their text (the recipe OpenAI
// publishes for the gpt-4o family): 3 tokens a message, 1 more for a name,
// and 3 that prime the reply.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	replyPriming     = 3
	tokensPerCall    = 3 // a tool call's framing (conservative)
)

// Images are billed by size, which the gateway does not decode: each image
// part is reserved at the most that detail can cost — for "low" the fixed
// charge, otherwise the largest tiling (8 tiles of 512 px after OpenAI's
// resizing to 2048 × 768). gpt-4o-mini bills images at about 33 times the
// tokens (at its lower price), so it has its own figures.
type imageTokens struct{ low, high int64 }

func imageCost(model string) imageTokens {
	if strings.HasPrefix(model, "gpt-4o-mini") {
		return imageTokens{low: 2833, high: 2833 + 8*5667}
	}
	return imageTokens{low: 85, high: 85 + 8*170}
}

// estimator counts a request's input tokens, and stops early once they are
// over limit (limit ≤ 0: no limit). Its merging work for long pieces is one
// budget for the whole request (tokenizer.MergeBudget).
type estimator struct {
	enc    *tokenizer.Encoding
	limit  int64
	n      int64
	work   int
	images imageTokens
}

func newEstimator(enc *tokenizer.Encoding, model string, limit int64) *estimator {
	tokenLimit := -1
	if limit > 0 {
		tokenLimit = int(limit)
	}
	return &estimator{enc: enc, limit: limit, n: replyPriming, images: imageCost(model), work: tokenizer.MergeBudget(tokenLimit)}
}

func (e *estimator) over() bool { return e.limit > 0 && e.n > e.limit }

// text adds the tokens of s.
func (e *estimator) text(s string) {
	if e.over() {
		return
	}
	limit := -1
	if e.limit > 0 {
		limit = int(e.limit - e.n)
	}
	e.n += int64(e.enc.BoundWithin(s, limit, &e.work))
}

// raw adds the tokens of a JSON value's text: how tool definitions,
// schemas and parts the gateway does not know are counted. JSON's quotes
// and braces make this an over-estimate of what OpenAI bills for them,
// never an under-estimate.
func (e *estimator) raw(v jsontext.Value) { e.text(string(v)) }

// member adds a key the gateway does not know with its value, as JSON
// text: nothing forwarded goes uncounted.
func (e *estimator) member(key string, v jsontext.Value) {
	e.text(key)
	e.raw(v)
}

// rest adds every member of o that is not in known, as JSON text.
func (e *estimator) rest(o object, known keySet) {
	for key, v := range o {
		if !known[key] {
			e.member(key, v)
		}
	}
}

// callKeys are the structural keys of a tool call, not counted as text.
var callKeys = keys("id", "type", "function", "name", "arguments", "call_id", "custom", "input")

// leaves adds the tokens of every string in a JSON value, and of every key
// but a tool call's structural ones: the names and arguments of tool calls.
func (e *estimator) leaves(v any) {
	switch v := v.(type) {
	case string:
		e.text(v)
	case []any:
		for _, x := range v {
			e.leaves(x)
		}
	case map[string]any:
		for k, x := range v {
			if !callKeys[k] {
				e.text(k)
			}
			e.leaves(x)
		}
	case nil:
	default: // numbers, booleans: their text
		b, _ := json.Marshal(v)
		e.text(string(b))
	}
}

// Keys of the objects the estimate reads (see strict.go).
var (
	messageKeys        = keys("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio", "type", "id", "status")
	partKeys           = keys("type", "text", "refusal", "image_url", "detail", "file_id", "file", "input_audio", "file_data", "file_url", "filename")
	imageURLKeys       = keys("url", "detail")
	itemKeys           = keys("type", "role", "content", "id", "status", "name", "arguments", "call_id", "output")
	chatToolKeys       = keys("type", "function", "custom")
	functionKeys       = keys("type", "name", "description", "parameters", "strict")
	responseFormatKeys = keys("type", "json_schema")
	textKeys           = keys("format", "verbosity")
	reasoningKeys      = keys("effort", "summary", "generate_summary")
	predictionKeys     = keys("type", "content")
)

// estimateChat estimates the input tokens of a chat completion request:
// every message's role, text parts, name, tool calls and tool results with
// their per-message overhead; the tool (and legacy function) definitions;
// tool_choice, the response_format schema and a prediction; non-text parts
// conservatively; every key it does not know as its JSON text. For text it
// is the model's own tokenizer, so the estimate of a text-only request is
// never below what OpenAI bills. Above limit (the plan's max_input_tokens;
// 0: no limit) the request is refused with prompt_too_large. extraOutput is
// the prediction's tokens again: the ones the model rejects are billed as
// output, beyond the output cap.
func estimateChat(enc *tokenizer.Encoding, model string, fields object, limit int64) (prompt, extraOutput int64, err error) {
	e := newEstimator(enc, model, limit)
	messages, ok := asArray(fields["messages"])
	if !ok || len(messages) == 0 {
		return 0, 0, wire.Errorf(wire.CodeBadRequest, "\"messages\" must be a non-empty array of objects.")
	}
	for i, raw := range messages {
		m, ok := asObject(raw)
		if !ok {
			return 0, 0, wire.Errorf(wire.CodeBadRequest, "\"messages\" must be a non-empty array of objects.")
		}
		if err := e.message(m, index(`"messages"`, i)); err != nil {
			return 0, 0, err
		}
	}
	for key, raw := range fields {
		if raw.Kind() == 'n' {
			continue
		}
		switch {
		case key == "messages":
		case key == "tools" || key == "functions":
			if err := e.definitions(key, raw, key == "functions"); err != nil {
				return 0, 0, err
			}
		case key == "prediction":
			if err := checkObject(raw, predictionKeys, `"prediction"`); err != nil {
				return 0, 0, err
			}
			before := e.n
			e.raw(raw)
			extraOutput = e.n - before
		case key == "response_format":
			if err := checkObject(raw, responseFormatKeys, `"response_format"`); err != nil {
				return 0, 0, err
			}
			e.raw(raw)
		case chatInputKeys[key]: // tool_choice, function_call
			e.raw(raw)
		case !chatKeys[key]:
			e.member(key, raw)
		}
	}
	if err := e.check(limit); err != nil {
		return 0, 0, err
	}
	return e.n, extraOutput, nil
}

// checkObject checks the keys of raw when it is an object.
func checkObject(raw jsontext.Value, k keySet, path string) error {
	if o, ok := asObject(raw); ok {
		return k.check(o, path)
	}
	return nil
}

// message adds a chat message, or a Responses API message item.
func (e *estimator) message(msg object, path string) error {
	if err := messageKeys.check(msg, path); err != nil {
		return err
	}
	e.n += tokensPerMessage
	for key, raw := range msg {
		switch key {
		case "content":
			if err := e.content(raw, join(path, "content")); err != nil {
				return err
			}
		case "name":
			e.n += tokensPerName
			e.value(raw)
		case "tool_calls", "function_call":
			var calls any
			_ = json.Unmarshal(raw, &calls, strictOptions)
			if list, ok := calls.([]any); ok {
				e.n += int64(tokensPerCall * len(list))
			} else {
				e.n += tokensPerCall
			}
			e.leaves(calls)
		default:
			if messageKeys[key] { // role, tool_call_id, refusal, …
				e.value(raw)
			} else {
				e.member(key, raw)
			}
		}
	}
	return nil
}

// definitions adds function definitions (tools, or the legacy functions):
// the larger of their JSON text and OpenAI's published recipe for them,
// which charges each enum value 3 tokens beyond its text — far more than
// its JSON text for long enums. The keys of each tool are checked; chat
// tools nest the function, the Responses API's (and legacy functions)
// are flat.
func (e *estimator) definitions(key string, raw jsontext.Value, flat bool) error {
	tools, _ := asArray(raw)
	for i, t := range tools {
		tool, ok := asObject(t)
		if !ok {
			continue
		}
		path := index(strconv.Quote(key), i)
		if flat {
			if err := functionKeys.check(tool, path); err != nil {
				return err
			}
			continue
		}
		if err := chatToolKeys.check(tool, path); err != nil {
			return err
		}
		if err := checkObject(tool["function"], functionKeys, join(path, "function")); err != nil {
			return err
		}
	}
	before := e.n
	e.raw(raw)
	text := e.n - before
	e.n = before + max(text, e.recipe(raw, flat))
	return nil
}

// recipe is the cookbook's count of function definitions for the gpt-4o
// family (num_tokens_for_tools): per function 7, its "name:description",
// 3 when it has properties, per property 3 and its "name:type:description",
// per enum value 3 and its text (−3 once per enum); 12 at the end.
func (e *estimator) recipe(raw jsontext.Value, flat bool) int64 {
	type function struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Parameters  struct {
			Properties map[string]struct {
				Type        any    `json:"type"`
				Description string `json:"description"`
				Enum        []any  `json:"enum"`
			} `json:"properties"`
		} `json:"parameters"`
	}
	var fns []function
	if flat {
		_ = json.Unmarshal(raw, &fns, strictOptions)
	} else {
		var tools []struct {
			Function function `json:"function"`
		}
		_ = json.Unmarshal(raw, &tools, strictOptions)
		for _, t := range tools {
			fns = append(fns, t.Function)
		}
	}
	if len(fns) == 0 {
		return 0
	}
	count := func(s string) int64 { return int64(e.enc.BoundWithin(s, -1, &e.work)) }
	n := int64(12)
	for _, f := range fns {
		n += 7 + count(f.Name+":"+strings.TrimRight(f.Description, "."))
		if len(f.Parameters.Properties) > 0 {
			n += 3
		}
		for key, p := range f.Parameters.Properties {
			n += 3
			if len(p.Enum) > 0 {
				n -= 3
				for _, item := range p.Enum {
					n += 3 + count(fmt.Sprint(item))
				}
			}
			n += count(key + ":" + fmt.Sprint(p.Type) + ":" + strings.TrimRight(p.Description, "."))
		}
	}
	return n
}

// value adds a string's text, or any other JSON value's text.
func (e *estimator) value(raw jsontext.Value) {
	if s, ok := asString(raw); ok {
		e.text(s)
		return
	}
	e.raw(raw)
}

// content adds a message's content: a string, or a list of parts (chat's
// and the Responses API's kinds). File parts (PDFs) are refused: OpenAI
// bills each page's text and an image of it, which cannot be bounded
// without reading the file.
func (e *estimator) content(raw jsontext.Value, path string) error {
	parts, ok := asArray(raw)
	if !ok {
		e.value(raw) // a string (or null: "null" is one token, harmless)
		return nil
	}
	for i, praw := range parts {
		p, ok := asObject(praw)
		if !ok {
			e.raw(praw)
			continue
		}
		if err := partKeys.check(p, index(path, i)); err != nil {
			return err
		}
		read := keySet{"type": true}
		switch typ := p.stringOf("type"); typ {
		case "text", "input_text", "output_text":
			e.value(p["text"])
			read["text"] = true
		case "refusal":
			e.value(p["refusal"])
			read["refusal"] = true
		case "image_url", "input_image":
			detail := p.stringOf("detail") // Responses: {image_url: URL, detail}
			if u, ok := asObject(p["image_url"]); ok && typ == "image_url" {
				// chat: {image_url: {url, detail}}
				if err := imageURLKeys.check(u, join(index(path, i), "image_url")); err != nil {
					return err
				}
				detail = u.stringOf("detail")
				e.rest(u, imageURLKeys)
			}
			if detail == "low" {
				e.n += e.images.low
			} else {
				e.n += e.images.high
			}
			read["image_url"], read["detail"], read["file_id"] = true, true, true
		case "file", "input_file":
			return wire.Errorf(wire.CodeBadRequest, "Content parts of type %q are not accepted: a file is billed per page, which cannot be known before it is read; send its text instead.", typ)
		default: // input_audio, parts to come: their whole text (base64 audio: far more than billed)
			e.raw(praw)
			continue
		}
		e.rest(p, read)
	}
	return nil
}

// estimateResponses estimates the input tokens of a Responses API request:
// the instructions and every input item (messages with their parts,
// function calls and their outputs) with the chat recipe's overheads, the
// function tool definitions (the Responses API's flat shape, the same as
// chat's legacy functions), tool_choice, the text format's schema, and
// every key it does not know as its JSON text. Items that point at state
// stored at OpenAI (item_reference) are refused: their tokens cannot be
// known here.
func estimateResponses(enc *tokenizer.Encoding, model string, fields object, limit int64) (int64, error) {
	e := newEstimator(enc, model, limit)
	// Instructions are a developer message, a string input a user message.
	if raw, ok := fields.present("instructions"); ok {
		s, ok := asString(raw)
		if !ok {
			return 0, wire.Errorf(wire.CodeBadRequest, "\"instructions\" must be a string.")
		}
		e.n += tokensPerMessage
		e.text("developer")
		e.text(s)
	}
	input := fields["input"]
	if s, ok := asString(input); ok {
		e.n += tokensPerMessage
		e.text("user")
		e.text(s)
	} else {
		items, ok := asArray(input)
		if !ok || len(items) == 0 {
			return 0, errInput()
		}
		for i, raw := range items {
			it, ok := asObject(raw)
			if !ok {
				return 0, errInput()
			}
			if err := e.item(it, raw, index(`"input"`, i)); err != nil {
				return 0, err
			}
		}
	}
	for key, raw := range fields {
		if raw.Kind() == 'n' {
			continue
		}
		switch {
		case key == "input" || key == "instructions":
		case key == "tools":
			if err := e.definitions(key, raw, true); err != nil {
				return 0, err
			}
		case key == "text":
			if err := checkObject(raw, textKeys, `"text"`); err != nil {
				return 0, err
			}
			e.raw(raw)
		case key == "reasoning":
			if err := checkObject(raw, reasoningKeys, `"reasoning"`); err != nil {
				return 0, err
			}
		case responsesInputKeys[key]: // tool_choice
			e.raw(raw)
		case !responsesKeys[key]:
			e.member(key, raw)
		}
	}
	if err := e.check(limit); err != nil {
		return 0, err
	}
	return e.n, nil
}

func errInput() error {
	return wire.Errorf(wire.CodeBadRequest, "\"input\" must be a string or a non-empty array of input items.")
}

// item adds one Responses API input item.
func (e *estimator) item(it object, raw jsontext.Value, path string) error {
	if err := itemKeys.check(it, path); err != nil {
		return err
	}
	typ := it.stringOf("type")
	_, hasType := it.present("type")
	_, hasRole := it["role"]
	switch {
	case !hasType && !hasRole, typ == "item_reference":
		// An item reference's type is optional: {"id": "msg_…"}.
		return wire.Errorf(wire.CodeBadRequest, "Input items that refer to stored items (item_reference, or an item with neither type nor role) are not accepted: the gateway stores nothing at OpenAI; send the item itself.")
	case !hasType || typ == "message":
		return e.message(it, path) // role, content (a string or parts)
	case typ == "function_call":
		e.n += tokensPerCall
	case typ == "function_call_output":
		e.n += tokensPerMessage
		if err := e.content(it["output"], join(path, "output")); err != nil {
			return err
		}
	default: // reasoning items and kinds to come: their whole JSON text
		e.n += tokensPerMessage
		e.raw(raw)
		return nil
	}
	for key, v := range it {
		switch {
		case key == "output" && typ == "function_call_output":
		case itemKeys[key]: // name, arguments (a string of JSON), call_id…
			e.value(v)
		default:
			e.member(key, v)
		}
	}
	return nil
}

// check refuses an estimate over limit (the plan's max_input_tokens).
func (e *estimator) check(limit int64) error {
	if !e.over() {
		return nil
	}
	return &wire.Error{Code: wire.CodePromptTooLarge, Limit: quota.MaxInputTokens,
		Message: "The prompt is over your plan's limit of " + strconv.FormatInt(limit, 10) + " input tokens; shorten it."}
}
