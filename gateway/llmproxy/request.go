package llmproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// chatRequest is a client's chat completion request, kept as raw fields so
// that everything the gateway does not know (tools, response_format, …)
// reaches the upstream unchanged.
type chatRequest struct {
	fields map[string]json.RawMessage
	model  string
	stream bool
	// promptBytes sizes the messages, for the usage estimate.
	promptBytes int
	// clientWantsUsage: the client itself asked for the usage chunk.
	clientWantsUsage bool
}

// parseChat validates what the gateway must understand and applies the
// plan: the model allow-list, the max-tokens cap, and usage reporting for
// streams. Errors are *wire.Error bad_request, payload_too_large or
// model_not_allowed — all answered before the upstream and before the quota.
func parseChat(body []byte, readErr error, planName string, plan quota.Plan) (chatRequest, error) {
	if _, ok := errors.AsType[*http.MaxBytesError](readErr); ok {
		return chatRequest{}, wire.Errorf(wire.CodePayloadTooLarge, "The request body is over 1 MiB.")
	}
	if readErr != nil {
		return chatRequest{}, wire.Wrap(wire.CodeBadRequest, "The request body could not be read.", readErr)
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req.fields); err != nil || req.fields == nil {
		return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "The request body is not a JSON object.")
	}
	if err := json.Unmarshal(req.fields["model"], &req.model); err != nil || req.model == "" {
		return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"model\" must be a non-empty string.")
	}
	var messages []json.RawMessage
	if err := json.Unmarshal(req.fields["messages"], &messages); err != nil || len(messages) == 0 {
		return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"messages\" must be a non-empty array.")
	}
	req.promptBytes = len(req.fields["messages"])
	if raw, ok := req.fields["stream"]; ok && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &req.stream); err != nil {
			return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"stream\" must be true or false.")
		}
	}
	if raw, ok := req.fields["n"]; ok && !bytes.Equal(raw, []byte("null")) {
		// Several choices multiply the cost past what the plan's caps bound.
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n != 1 {
			return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"n\" must be 1: one choice per request.")
		}
	}
	if !plan.Allows(req.model) {
		return chatRequest{}, wire.Errorf(wire.CodeModelNotAllowed, "Model %q is not available on the %s plan.", req.model, planName)
	}
	clamped := false
	for _, name := range []string{"max_tokens", "max_completion_tokens"} {
		raw, ok := req.fields[name]
		if !ok || bytes.Equal(raw, []byte("null")) {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n < 1 {
			return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "%q must be a positive integer.", name)
		}
		req.fields[name] = json.RawMessage(fmt.Sprint(min(n, plan.MaxTokens)))
		clamped = true
	}
	if !clamped {
		// No cap asked for: the plan's cap still bounds what a request can
		// cost.
		req.fields["max_completion_tokens"] = json.RawMessage(fmt.Sprint(plan.MaxTokens))
	}
	if req.stream {
		opts := map[string]json.RawMessage{}
		if raw, ok := req.fields["stream_options"]; ok && !bytes.Equal(raw, []byte("null")) {
			if err := json.Unmarshal(raw, &opts); err != nil {
				return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"stream_options\" must be an object.")
			}
		}
		req.clientWantsUsage = bytes.Equal(bytes.TrimSpace(opts["include_usage"]), []byte("true"))
		// Tokens are counted from the final usage chunk.
		opts["include_usage"] = json.RawMessage("true")
		req.fields["stream_options"], _ = json.Marshal(opts)
	}
	return req, nil
}

// body is the request to send upstream.
func (r chatRequest) body() []byte {
	b, _ := json.Marshal(r.fields)
	return b
}
