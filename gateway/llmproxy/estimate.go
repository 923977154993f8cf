package llmproxy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

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
// over limit (limit ≤ 0: no limit).
type estimator struct {
	enc    *tokenizer.Encoding
	limit  int64
	n      int64
	images imageTokens
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
	e.n += int64(e.enc.Bound(s, limit))
}

// raw adds the tokens of a JSON value's text: how tool definitions,
// schemas and parts the gateway does not know are counted. JSON's quotes
// and braces make this an over-estimate of what OpenAI bills for them,
// never an under-estimate.
func (e *estimator) raw(v json.RawMessage) { e.text(string(v)) }

// leaves adds the tokens of every string in a JSON value (keys excluded):
// the names and arguments of tool calls.
func (e *estimator) leaves(v any) {
	switch v := v.(type) {
	case string:
		e.text(v)
	case []any:
		for _, x := range v {
			e.leaves(x)
		}
	case map[string]any:
		for _, x := range v {
			e.leaves(x)
		}
	}
}

// estimateChat estimates the input tokens of a chat completion request:
// every message's role, text parts, name, tool calls and tool results with
// their per-message overhead; the tool (and legacy function) definitions;
// the response_format schema; non-text parts conservatively. For text it is
// the model's own tokenizer, so the estimate of a text-only request is never
// below what OpenAI bills. Above limit (the plan's max_input_tokens; 0: no
// limit) the request is refused with prompt_too_large.
func estimateChat(enc *tokenizer.Encoding, fields map[string]json.RawMessage, messages []map[string]json.RawMessage, limit int64) (int64, error) {
	var model string
	_ = json.Unmarshal(fields["model"], &model)
	e := &estimator{enc: enc, limit: limit, n: replyPriming, images: imageCost(model)}
	for _, m := range messages {
		if err := e.message(m); err != nil {
			return 0, err
		}
	}
	for _, f := range []string{"tools", "functions"} {
		if raw, ok := present(fields, f); ok {
			e.definitions(raw, f == "functions")
		}
	}
	for _, f := range []string{"tool_choice", "response_format", "prediction"} {
		if raw, ok := present(fields, f); ok {
			e.raw(raw)
		}
	}
	if err := e.check(limit); err != nil {
		return 0, err
	}
	return e.n, nil
}

func (e *estimator) message(msg map[string]json.RawMessage) error {
	e.n += tokensPerMessage
	for key, raw := range msg {
		switch key {
		case "content":
			if err := e.content(raw); err != nil {
				return err
			}
		case "name":
			e.n += tokensPerName
			e.value(raw)
		case "tool_calls", "function_call":
			var calls any
			_ = json.Unmarshal(raw, &calls)
			if list, ok := calls.([]any); ok {
				e.n += int64(tokensPerCall * len(list))
			} else {
				e.n += tokensPerCall
			}
			e.leaves(calls)
		default: // role, tool_call_id, refusal, …
			e.value(raw)
		}
	}
	return nil
}

// definitions adds function definitions (tools, or the legacy functions):
// the larger of their JSON text and OpenAI's published recipe for them,
// which charges each enum value 3 tokens beyond its text — far more than
// its JSON text for long enums.
func (e *estimator) definitions(raw json.RawMessage, legacy bool) {
	before := e.n
	e.raw(raw)
	text := e.n - before
	e.n = before + max(text, e.recipe(raw, legacy))
}

// recipe is the cookbook's count of function definitions for the gpt-4o
// family (num_tokens_for_tools): per function 7, its "name:description",
// 3 when it has properties, per property 3 and its "name:type:description",
// per enum value 3 and its text (−3 once per enum); 12 at the end.
func (e *estimator) recipe(raw json.RawMessage, legacy bool) int64 {
	type function struct {
		Name, Description string
		Parameters        struct {
			Properties map[string]struct {
				Type        any
				Description string
				Enum        []any
			}
		}
	}
	var fns []function
	if legacy {
		_ = json.Unmarshal(raw, &fns)
	} else {
		var tools []struct{ Function function }
		_ = json.Unmarshal(raw, &tools)
		for _, t := range tools {
			fns = append(fns, t.Function)
		}
	}
	if len(fns) == 0 {
		return 0
	}
	count := func(s string) int64 { return int64(e.enc.Bound(s, -1)) }
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
func (e *estimator) value(raw json.RawMessage) {
	var s string
	if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		e.text(s)
		return
	}
	e.raw(raw)
}

// content adds a message's content: a string, or a list of parts (chat's
// and the Responses API's kinds). File
// parts (PDFs) are refused: OpenAI bills each page's text and an image of
// it, which cannot be bounded without reading the file.
func (e *estimator) content(raw json.RawMessage) error {
	if len(raw) == 0 || raw[0] != '[' {
		e.value(raw) // a string (or null: "null" is one token, harmless)
		return nil
	}
	var parts []struct {
		Type     string          `json:"type"`
		Text     string          `json:"text"`
		Refusal  string          `json:"refusal"`
		ImageURL json.RawMessage `json:"image_url"` // chat: {url, detail}; Responses: the URL
		Detail   string          `json:"detail"`    // Responses' input_image
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil || json.Unmarshal(raw, &parts) != nil {
		e.raw(raw)
		return nil
	}
	for i, p := range parts {
		if p.Type == "image_url" {
			var u struct{ Detail string }
			_ = json.Unmarshal(p.ImageURL, &u)
			p.Type, p.Detail = "input_image", u.Detail
		}
		switch {
		case p.Type == "text" || p.Type == "input_text" || p.Type == "output_text":
			e.text(p.Text)
		case p.Type == "refusal":
			e.text(p.Refusal)
		case p.Type == "input_image" && p.Detail == "low":
			e.n += e.images.low
		case p.Type == "input_image":
			e.n += e.images.high
		case p.Type == "file" || p.Type == "input_file":
			return wire.Errorf(wire.CodeBadRequest, "Content parts of type %q are not accepted: a file is billed per page, which cannot be known before it is read; send its text instead.", p.Type)
		default: // input_audio, parts to come: their whole text (base64 audio: far more than billed)
			e.raw(list[i])
		}
	}
	return nil
}

// estimateResponses estimates the input tokens of a Responses API request:
// the instructions and every input item (messages with their parts,
// function calls and their outputs) with the chat recipe's overheads, the
// function tool definitions (the Responses API's flat shape, the same as
// chat's legacy functions), tool_choice and the text format's schema.
// Items that point at state stored at OpenAI (item_reference) are refused:
// their tokens cannot be known here.
func estimateResponses(enc *tokenizer.Encoding, model string, fields map[string]json.RawMessage, limit int64) (int64, error) {
	e := &estimator{enc: enc, limit: limit, n: replyPriming, images: imageCost(model)}
	// Instructions are a developer message, a string input a user message.
	if raw, ok := present(fields, "instructions"); ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, wire.Errorf(wire.CodeBadRequest, "\"instructions\" must be a string.")
		}
		e.n += tokensPerMessage
		e.text("developer")
		e.text(s)
	}
	input := fields["input"]
	var items []map[string]json.RawMessage
	switch {
	case len(input) > 0 && input[0] == '"':
		e.n += tokensPerMessage
		e.text("user")
		e.value(input)
	case json.Unmarshal(input, &items) == nil && len(items) > 0 && !slices.ContainsFunc(items, func(it map[string]json.RawMessage) bool { return it == nil }):
		for _, it := range items {
			if err := e.item(it); err != nil {
				return 0, err
			}
		}
	default:
		return 0, wire.Errorf(wire.CodeBadRequest, "\"input\" must be a string or a non-empty array of input items.")
	}
	if raw, ok := present(fields, "tools"); ok {
		e.definitions(raw, true)
	}
	for _, f := range []string{"tool_choice", "text"} {
		if raw, ok := present(fields, f); ok {
			e.raw(raw)
		}
	}
	if err := e.check(limit); err != nil {
		return 0, err
	}
	return e.n, nil
}

// item adds one Responses API input item.
func (e *estimator) item(it map[string]json.RawMessage) error {
	var typ string
	_ = json.Unmarshal(it["type"], &typ)
	_, hasRole := it["role"]
	switch {
	case typ == "" && !hasRole, typ == "item_reference":
		// An item reference's type is optional: {"id": "msg_…"}.
		return wire.Errorf(wire.CodeBadRequest, "Input items that refer to stored items (item_reference, or an item with neither type nor role) are not accepted: the gateway stores nothing at OpenAI; send the item itself.")
	case typ == "" || typ == "message":
		return e.message(it) // role, content (a string or parts)
	case typ == "function_call":
		e.n += tokensPerCall
		e.value(it["name"])
		e.value(it["arguments"]) // a string of JSON
		return nil
	case typ == "function_call_output":
		e.n += tokensPerMessage
		return e.content(it["output"])
	default: // reasoning items and kinds to come: their whole JSON text
		e.n += tokensPerMessage
		b, _ := json.Marshal(it)
		e.raw(b)
		return nil
	}
}

// check refuses an estimate over limit (the plan's max_input_tokens).
func (e *estimator) check(limit int64) error {
	if !e.over() {
		return nil
	}
	return &wire.Error{Code: wire.CodePromptTooLarge, Limit: quota.MaxInputTokens,
		Message: "The prompt is over your plan's limit of " + strconv.FormatInt(limit, 10) + " input tokens; shorten it."}
}
