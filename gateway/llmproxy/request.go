package llmproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/shared/wire"
)

// chatRequest is a client's chat completion request, kept as raw fields so
// that everything the gateway does not know (tools, response_format, …)
// reaches the upstream unchanged.
type chatRequest struct {
	fields map[string]json.RawMessage
	model  string
	stream bool
	// promptTokens is the estimate of the input tokens; outputCap the
	// clamped output limit sent upstream. Together they are the
	// reservation.
	promptTokens, outputCap int64
	// clientWantsUsage: the client itself asked for the usage chunk.
	clientWantsUsage bool
}

// parseChat validates what the gateway must understand and applies the
// plan: the model allow-list, the output cap, the input cap, usage
// reporting for streams, and the fields the gateway owns. Errors are
// *wire.Error bad_request, payload_too_large, model_not_allowed or
// prompt_too_large — all answered before the upstream and the quota.
func parseChat(body []byte, readErr error, u gateway.User, plan quota.Plan, enc *tokenizer.Encoding) (chatRequest, error) {
	var req chatRequest
	var err error
	if req.fields, err = readObject(body, readErr); err != nil {
		return chatRequest{}, err
	}
	if req.model, err = modelOf(req.fields, u.Plan, plan); err != nil {
		return chatRequest{}, err
	}
	var messages []map[string]json.RawMessage
	if err := json.Unmarshal(req.fields["messages"], &messages); err != nil || len(messages) == 0 || slices.ContainsFunc(messages, func(m map[string]json.RawMessage) bool { return m == nil }) {
		return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"messages\" must be a non-empty array of objects.")
	}
	if req.stream, err = boolField(req.fields, "stream"); err != nil {
		return chatRequest{}, err
	}
	if raw, ok := present(req.fields, "n"); ok {
		// Several choices multiply the cost past what the plan's caps bound.
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n != 1 {
			return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"n\" must be 1: one choice per request.")
		}
	}
	if req.outputCap, err = clampOutput(req.fields, plan, "max_completion_tokens", "max_tokens"); err != nil {
		return chatRequest{}, err
	}
	if req.stream {
		opts := map[string]json.RawMessage{}
		if raw, ok := present(req.fields, "stream_options"); ok {
			if err := json.Unmarshal(raw, &opts); err != nil || opts == nil {
				return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"stream_options\" must be an object.")
			}
		}
		req.clientWantsUsage = bytes.Equal(bytes.TrimSpace(opts["include_usage"]), []byte("true"))
		// Tokens are counted from the final usage chunk.
		opts["include_usage"] = json.RawMessage("true")
		req.fields["stream_options"], _ = json.Marshal(opts)
	}
	ownFields(req.fields, u, plan)
	if req.promptTokens, err = estimateChat(enc, req.fields, messages, plan.MaxInputTokens); err != nil {
		return chatRequest{}, err
	}
	return req, nil
}

// readObject decodes a request body that must be a JSON object.
func readObject(body []byte, readErr error) (map[string]json.RawMessage, error) {
	if _, ok := errors.AsType[*http.MaxBytesError](readErr); ok {
		return nil, wire.Errorf(wire.CodePayloadTooLarge, "The request body is over 1 MiB.")
	}
	if readErr != nil {
		return nil, wire.Wrap(wire.CodeBadRequest, "The request body could not be read.", readErr)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "The request body is not a JSON object.")
	}
	return fields, nil
}

// modelOf reads "model" and checks it against the plan.
func modelOf(fields map[string]json.RawMessage, planName string, plan quota.Plan) (string, error) {
	var model string
	if err := json.Unmarshal(fields["model"], &model); err != nil || model == "" {
		return "", wire.Errorf(wire.CodeBadRequest, "\"model\" must be a non-empty string.")
	}
	if !plan.Allows(model) {
		return "", wire.Errorf(wire.CodeModelNotAllowed, "Model %q is not available on the %s plan.", model, planName)
	}
	return model, nil
}

// present returns a field that is there and not null.
func present(fields map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	raw, ok := fields[name]
	return raw, ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func boolField(fields map[string]json.RawMessage, name string) (bool, error) {
	var v bool
	if raw, ok := present(fields, name); ok {
		if err := json.Unmarshal(raw, &v); err != nil {
			return false, wire.Errorf(wire.CodeBadRequest, "%q must be true or false.", name)
		}
	}
	return v, nil
}

// clampOutput clamps the output caps among names to the plan's max_tokens,
// sends the plan's cap as the first name when the client sent none, and
// returns the cap in force (the lowest).
func clampOutput(fields map[string]json.RawMessage, plan quota.Plan, names ...string) (int64, error) {
	limit := int64(0)
	for _, name := range names {
		raw, ok := present(fields, name)
		if !ok {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil || n < 1 {
			return 0, wire.Errorf(wire.CodeBadRequest, "%q must be a positive integer.", name)
		}
		n = min(n, plan.MaxTokens)
		fields[name] = json.RawMessage(fmt.Sprint(n))
		if limit == 0 || n < limit {
			limit = n
		}
	}
	if limit == 0 {
		// No cap asked for: the plan's cap still bounds what a request can
		// cost.
		limit = plan.MaxTokens
		fields[names[0]] = json.RawMessage(fmt.Sprint(limit))
	}
	return limit, nil
}

// ownFields applies the fields the gateway decides, not the client (they
// decide cost or data retention): nothing is stored at OpenAI, metadata and
// the client's user id are dropped, a service tier passes only if the plan
// lists it, and OpenAI's abuse monitoring sees a stable pseudonym of the
// user.
func ownFields(fields map[string]json.RawMessage, u gateway.User, plan quota.Plan) {
	fields["store"] = json.RawMessage("false")
	delete(fields, "metadata")
	delete(fields, "user")
	if raw, ok := fields["service_tier"]; ok {
		var tier string
		if json.Unmarshal(raw, &tier) != nil || !slices.Contains(plan.ServiceTiers, tier) {
			delete(fields, "service_tier")
		}
	}
	fields["safety_identifier"], _ = json.Marshal(SafetyIdentifier(u.ClerkUserID))
}

// SafetyIdentifier is the pseudonym of a Clerk user sent to OpenAI as
// safety_identifier: stable (OpenAI can tell one abusive user from the
// rest), 128 bits of a domain-separated SHA-256 of the user id, so it
// reveals neither the id nor the email.
func SafetyIdentifier(clerkUserID string) string {
	sum := sha256.Sum256([]byte("sas safety_identifier v1\x00" + clerkUserID))
	return "sas_" + hex.EncodeToString(sum[:16])
}

// body is the request to send upstream.
func (r chatRequest) body() []byte { return encodeObject(r.fields) }

// encodeObject writes fields as a JSON object. The values are already
// valid JSON (decoded from the client's body, or set by the gateway), so
// they are copied as they are: json.Marshal would validate and compact
// every one of them again, a pass over the whole body.
func encodeObject(fields map[string]json.RawMessage) []byte {
	n := 2
	for k, v := range fields {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	first := true
	for k, v := range fields {
		if !first {
			b = append(b, ',')
		}
		first = false
		key, _ := json.Marshal(k)
		b = append(append(append(b, key...), ':'), v...)
	}
	return append(b, '}')
}
