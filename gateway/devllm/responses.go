package devllm

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
)

// responsesRequest is what the dev model reads of a Responses API request.
type responsesRequest struct {
	Model           string          `json:"model"`
	Instructions    string          `json:"instructions"`
	Input           json.RawMessage `json:"input"`
	Stream          bool            `json:"stream"`
	MaxOutputTokens int             `json:"max_output_tokens"`
}

// inputItem is one item of a Responses API input list: a message (content
// a string or parts), or a function call's output.
type inputItem struct {
	Type    string `json:"type"`
	Role    string `json:"role"`
	Content any    `json:"content"`
	Output  any    `json:"output"`
}

// messages reads instructions and input as the chat messages the reply is
// made from: instructions as a developer message, a string input as one
// user message, each item of a list as a message.
func (req responsesRequest) messages() ([]message, error) {
	var out []message
	if req.Instructions != "" {
		out = append(out, message{Role: "developer", Text: req.Instructions})
	}
	var s string
	if json.Unmarshal(req.Input, &s) == nil {
		return append(out, message{Role: "user", Text: s}), nil
	}
	var items []inputItem
	if err := json.Unmarshal(req.Input, &items); err != nil {
		return nil, err
	}
	for _, it := range items {
		switch it.Type {
		case "function_call_output":
			out = append(out, message{Role: "tool", Text: textOf(it.Output)})
		default:
			out = append(out, message{Role: it.Role, Text: textOf(it.Content)})
		}
	}
	return out, nil
}

func (m *Model) responses(w http.ResponseWriter, r *http.Request) {
	var req responsesRequest
	if !m.read(w, r, &req) {
		return
	}
	msgs, err := req.messages()
	switch {
	case req.Model == "":
		Error(w, http.StatusBadRequest, "Missing required parameter: 'model'.", "invalid_request_error", "missing_required_parameter")
		return
	case !slices.Contains(m.o.Models, req.Model):
		Error(w, http.StatusBadRequest, fmt.Sprintf("The requested model '%s' does not exist.", req.Model), "invalid_request_error", "model_not_found")
		return
	case err != nil || len(msgs) == 0:
		Error(w, http.StatusBadRequest, "Invalid value for 'input': expected a string or a list of input items.", "invalid_request_error", "invalid_value")
		return
	}
	words, prompt := reply(msgs)
	status, incomplete := "completed", any(nil)
	if req.MaxOutputTokens > 0 && len(words) > req.MaxOutputTokens {
		words, status = words[:req.MaxOutputTokens], "incomplete"
		incomplete = map[string]any{"reason": "max_output_tokens"}
	}
	n := m.seq.Add(1)
	id, itemID := fmt.Sprintf("resp_dev_%d", n), fmt.Sprintf("msg_dev_%d", n)
	text := strings.Join(words, " ")
	part := func(text string) map[string]any {
		return map[string]any{"type": "output_text", "text": text, "annotations": []any{}, "logprobs": []any{}}
	}
	item := func(status string, content ...any) map[string]any {
		return map[string]any{"id": itemID, "type": "message", "status": status, "role": "assistant", "content": append([]any{}, content...)}
	}
	response := func(status string, output []any, usage any, incomplete any) map[string]any {
		var maxOut any
		if req.MaxOutputTokens > 0 {
			maxOut = req.MaxOutputTokens
		}
		var instructions any
		if req.Instructions != "" {
			instructions = req.Instructions
		}
		return map[string]any{
			"id": id, "object": "response", "created_at": time.Now().Unix(), "status": status, "model": req.Model,
			"output": output, "usage": usage, "error": nil, "incomplete_details": incomplete,
			"instructions": instructions, "max_output_tokens": maxOut, "parallel_tool_calls": true,
			"previous_response_id": nil, "reasoning": map[string]any{"effort": nil, "summary": nil},
			"store": false, "temperature": 1.0, "top_p": 1.0, "text": map[string]any{"format": map[string]any{"type": "text"}},
			"tool_choice": "auto", "tools": []any{}, "truncation": "disabled", "metadata": map[string]any{},
		}
	}
	usage := map[string]any{
		"input_tokens": prompt, "input_tokens_details": map[string]any{"cached_tokens": 0},
		"output_tokens": len(words), "output_tokens_details": map[string]any{"reasoning_tokens": 0},
		"total_tokens": prompt + len(words),
	}
	final := response(status, []any{item("completed", part(text))}, usage, incomplete)
	if !req.Stream {
		writeJSON(w, http.StatusOK, final)
		return
	}

	// Typed events, in the order OpenAI sends them for one text message.
	ev := startEvents(w, r)
	seq := 0
	send := func(typ string, fields map[string]any) bool {
		fields["type"], fields["sequence_number"] = typ, seq
		seq++
		b, _ := json.Marshal(fields)
		return ev.send(typ, b)
	}
	at := func(extra map[string]any) map[string]any {
		extra["item_id"], extra["output_index"], extra["content_index"] = itemID, 0, 0
		return extra
	}
	if !send("response.created", map[string]any{"response": response("in_progress", []any{}, nil, nil)}) ||
		!send("response.in_progress", map[string]any{"response": response("in_progress", []any{}, nil, nil)}) ||
		!send("response.output_item.added", map[string]any{"output_index": 0, "item": item("in_progress")}) ||
		!send("response.content_part.added", at(map[string]any{"part": part("")})) {
		return
	}
	for i := 0; i < len(words); i += m.o.WordsPerChunk {
		if !m.pause(r) {
			return
		}
		delta := strings.Join(words[i:min(i+m.o.WordsPerChunk, len(words))], " ")
		if i > 0 {
			delta = " " + delta
		}
		if !send("response.output_text.delta", at(map[string]any{"delta": delta, "logprobs": []any{}})) {
			return
		}
	}
	done := "response.completed"
	if status == "incomplete" {
		done = "response.incomplete"
	}
	_ = send("response.output_text.done", at(map[string]any{"text": text, "logprobs": []any{}})) &&
		send("response.content_part.done", at(map[string]any{"part": part(text)})) &&
		send("response.output_item.done", map[string]any{"output_index": 0, "item": item("completed", part(text))}) &&
		send(done, map[string]any{"response": final})
}

// read reads a request body (up to 4 MiB), records it as the last request,
// checks the key and decodes the body into v; false when it has answered.
func (m *Model) read(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		Error(w, http.StatusBadRequest, "Could not read the body.", "invalid_request_error", "")
		return false
	}
	m.mu.Lock()
	m.last = Request{Header: r.Header.Clone(), Body: body}
	m.mu.Unlock()
	if !m.authorized(w, r) {
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		Error(w, http.StatusBadRequest, "We could not parse the JSON body of your request.", "invalid_request_error", "")
		return false
	}
	return true
}

// pause waits ChunkDelay between stream chunks; false when the client left.
func (m *Model) pause(r *http.Request) bool {
	if m.o.ChunkDelay <= 0 {
		return true
	}
	select {
	case <-time.After(m.o.ChunkDelay):
		return true
	case <-r.Context().Done():
		return false
	}
}
