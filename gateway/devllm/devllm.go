// Package devllm is an OpenAI-compatible model for development and tests:
// GET /v1/models, POST /v1/chat/completions (JSON, and SSE streams in
// several chunks with small delays, usage chunk included when asked) and
// POST /v1/responses (JSON, and typed SSE events ending with
// response.completed or response.incomplete), with
// deterministic text and real usage numbers. `sas-gateway dev` serves it
// when there is no OPENAI_API_KEY, so the whole app works offline; the
// tests use it as "OpenAI".
package devllm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/signals-sorcery/sas/gateway/tokenizer"
)

// Options configure a Model.
type Options struct {
	// APIKey, when set, is the only bearer accepted (like OpenAI's key check).
	APIKey string
	// Models served; default gpt-4o-mini and gpt-4o.
	Models []string
	// ChunkDelay between stream chunks (default 10 ms; negative: none).
	ChunkDelay time.Duration
	// WordsPerChunk in streams (default 3).
	WordsPerChunk int
}

// Model is the dev model server. It is safe for concurrent use.
type Model struct {
	o    Options
	seq  atomic.Int64
	mu   sync.Mutex
	last Request
}

// Request is what the last request carried, for tests.
type Request struct {
	Header http.Header
	Body   []byte
}

// New returns a Model.
func New(o Options) *Model {
	if len(o.Models) == 0 {
		o.Models = []string{"gpt-4o-mini", "gpt-4o"}
	}
	if o.ChunkDelay == 0 {
		o.ChunkDelay = 10 * time.Millisecond
	}
	if o.WordsPerChunk <= 0 {
		o.WordsPerChunk = 3
	}
	return &Model{o: o}
}

// Last returns the last chat completion or response request received.
func (m *Model) Last() Request {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// Handler serves /v1/models, /v1/chat/completions and /v1/responses.
func (m *Model) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", m.models)
	mux.HandleFunc("POST /v1/chat/completions", m.chat)
	mux.HandleFunc("POST /v1/responses", m.responses)
	return mux
}

func (m *Model) authorized(w http.ResponseWriter, r *http.Request) bool {
	if m.o.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+m.o.APIKey {
		Error(w, http.StatusUnauthorized, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
		return false
	}
	return true
}

func (m *Model) models(w http.ResponseWriter, r *http.Request) {
	if !m.authorized(w, r) {
		return
	}
	data := make([]map[string]any, 0, len(m.o.Models))
	for _, id := range m.o.Models {
		data = append(data, map[string]any{"id": id, "object": "model", "created": 1715367049, "owned_by": "system"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
	Stream              bool `json:"stream"`
	MaxTokens           int  `json:"max_tokens"`
	MaxCompletionTokens int  `json:"max_completion_tokens"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (m *Model) chat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	if !m.read(w, r, &req) {
		return
	}
	switch {
	case req.Model == "":
		Error(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", "")
		return
	case !slices.Contains(m.o.Models, req.Model):
		Error(w, http.StatusNotFound, fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", req.Model), "invalid_request_error", "model_not_found")
		return
	case len(req.Messages) == 0:
		Error(w, http.StatusBadRequest, "[] is too short - 'messages'", "invalid_request_error", "")
		return
	}
	msgs := make([]message, len(req.Messages))
	for i, msg := range req.Messages {
		msgs[i] = message{Role: msg.Role, Text: textOf(msg.Content)}
	}
	words, prompt := reply(msgs)
	limit := req.MaxCompletionTokens
	if limit == 0 {
		limit = req.MaxTokens
	}
	finish := "stop"
	if limit > 0 && len(words) > limit {
		words, finish = words[:limit], "length"
	}
	id := fmt.Sprintf("chatcmpl-dev-%d", m.seq.Add(1))
	usage := map[string]int{"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
	if !req.Stream {
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": finish,
				"message": map[string]any{"role": "assistant", "content": strings.Join(words, " ")}}},
			"usage": usage,
		})
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	m.stream(w, r, id, req.Model, words, finish, usage, includeUsage)
}

func (m *Model) stream(w http.ResponseWriter, r *http.Request, id, model string, words []string, finish string, usage map[string]int, includeUsage bool) {
	ev := startEvents(w, r)
	created := time.Now().Unix()
	send := func(delta map[string]any, finishReason any, u any) bool {
		chunk := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finishReason}}}
		if includeUsage {
			chunk["usage"] = u
		}
		if delta == nil {
			chunk["choices"] = []any{}
		}
		b, _ := json.Marshal(chunk)
		return ev.send("", b)
	}
	if !send(map[string]any{"role": "assistant", "content": ""}, nil, nil) {
		return
	}
	for i := 0; i < len(words); i += m.o.WordsPerChunk {
		if !m.pause(r) {
			return
		}
		part := strings.Join(words[i:min(i+m.o.WordsPerChunk, len(words))], " ")
		if i > 0 {
			part = " " + part
		}
		if !send(map[string]any{"content": part}, nil, nil) {
			return
		}
	}
	if !send(map[string]any{}, finish, nil) {
		return
	}
	if includeUsage && !send(nil, nil, usage) {
		return
	}
	ev.send("", []byte("[DONE]"))
}

// events writes server-sent events to a client, flushing each.
type events struct {
	w       http.ResponseWriter
	r       *http.Request
	flusher http.Flusher
}

// startEvents answers 200 with an event stream.
func startEvents(w http.ResponseWriter, r *http.Request) *events {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	return &events{w: w, r: r, flusher: flusher}
}

// send writes one event, named when name is set (the Responses API's
// typed events); false when the client has gone.
func (e *events) send(name string, data []byte) bool {
	if name != "" {
		if _, err := fmt.Fprintf(e.w, "event: %s\n", name); err != nil {
			return false
		}
	}
	if _, err := fmt.Fprintf(e.w, "data: %s\n\n", data); err != nil {
		return false
	}
	if e.flusher != nil {
		e.flusher.Flush()
	}
	return e.r.Context().Err() == nil
}

// message is a prompt message as the dev model reads it.
type message struct{ Role, Text string }

// reply is the deterministic answer, as words (each counted as a token
// of the completion), and the prompt's tokens as OpenAI counts them: the
// o200k tokenizer over each message's role and text, 3 tokens a message,
// and 3 that prime the reply.
func reply(msgs []message) ([]string, int) {
	enc := tokenizer.O200k()
	prompt, last := 3, ""
	for _, msg := range msgs {
		prompt += 3 + enc.Count(msg.Role) + enc.Count(msg.Text)
		if msg.Role == "user" {
			last = msg.Text
		}
	}
	said := strings.Fields(last)
	if len(said) > 40 {
		said = said[:40]
	}
	words := strings.Fields("Greetings from the Signals & Sorcery dev model. This answer is the same every time, so tests can count on it. You said:")
	return append(words, said...), prompt
}

// textOf is a message content's text: the string, or its text parts.
func textOf(content any) string {
	switch c := content.(type) {
	case string:
		return c
	case []any:
		var b strings.Builder
		for _, p := range c {
			if part, ok := p.(map[string]any); ok && (part["type"] == "text" || part["type"] == "input_text" || part["type"] == "output_text") {
				s, _ := part["text"].(string)
				b.WriteString(s)
			}
		}
		return b.String()
	}
	return ""
}

// Error writes an error in OpenAI's shape.
func Error(w http.ResponseWriter, status int, message, typ, code string) {
	var c any
	if code != "" {
		c = code
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": message, "type": typ, "param": nil, "code": c}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
