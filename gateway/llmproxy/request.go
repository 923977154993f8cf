package llmproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/shared/wire"
)

// chatRequest is a client's chat completion request, kept as raw fields so
// that everything the gateway does not know reaches the upstream unchanged
// (and counted: see strict.go).
type chatRequest struct {
	fields object
	model  string
	stream bool
	// promptTokens is the estimate of the input tokens; outputCap the
	// clamped output limit sent upstream; extraOutput output tokens the
	// cap does not bound (a prediction's rejected tokens). Together they
	// are the reservation.
	promptTokens, outputCap, extraOutput int64
	// clientWantsUsage: the client itself asked for the usage chunk.
	clientWantsUsage bool
}

// chatKeys are the body's keys the gateway reads, owns or refuses, and
// those OpenAI documents that cost nothing as input. Every other key is
// counted as its JSON text.
var (
	chatKeys = keys("model", "messages", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens",
		"tools", "functions", "tool_choice", "function_call", "response_format", "prediction",
		"audio", "modalities", "web_search_options",
		"store", "metadata", "user", "service_tier", "safety_identifier", "prompt_cache_key",
		"temperature", "top_p", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
		"seed", "stop", "parallel_tool_calls", "reasoning_effort", "verbosity")
	// chatInputKeys are the body's keys whose values are billed as input,
	// each estimated by its own rule.
	chatInputKeys    = keys("messages", "tools", "functions", "tool_choice", "function_call", "response_format", "prediction")
	streamOptionKeys = keys("include_usage", "include_obfuscation")
)

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
	if err := chatKeys.check(req.fields, ""); err != nil {
		return chatRequest{}, err
	}
	if req.model, err = modelOf(req.fields, u.Plan, plan); err != nil {
		return chatRequest{}, err
	}
	if err := unpricedChat(req.fields); err != nil {
		return chatRequest{}, err
	}
	if req.stream, err = boolField(req.fields, "stream"); err != nil {
		return chatRequest{}, err
	}
	if raw, ok := req.fields.present("n"); ok {
		// Several choices multiply the cost past what the plan's caps bound.
		if !bytes.Equal(raw, []byte("1")) {
			return chatRequest{}, wire.Errorf(wire.CodeBadRequest, "\"n\" must be 1: one choice per request.")
		}
	}
	if req.outputCap, err = clampOutput(req.fields, plan, "max_completion_tokens", "max_tokens"); err != nil {
		return chatRequest{}, err
	}
	if req.clientWantsUsage, err = streamOptions(req.fields, req.stream); err != nil {
		return chatRequest{}, err
	}
	if err := toolChoice(req.fields, true); err != nil {
		return chatRequest{}, err
	}
	if err := ownFields(req.fields, u, plan); err != nil {
		return chatRequest{}, err
	}
	if req.promptTokens, req.extraOutput, err = estimateChat(enc, req.model, req.fields, plan.MaxInputTokens); err != nil {
		return chatRequest{}, err
	}
	return req, nil
}

// unpricedChat refuses what bills beyond the price table's tokens: audio
// output, modalities other than text, web search.
func unpricedChat(fields object) error {
	for _, name := range []string{"audio", "web_search_options"} {
		if _, ok := fields.present(name); ok {
			return wire.Errorf(wire.CodeBadRequest, "%q is not accepted: it is billed beyond the tokens this gateway prices.", name)
		}
	}
	if raw, ok := fields.present("modalities"); ok {
		list, ok := asArray(raw)
		if !ok || len(list) != 1 || !bytes.Equal(list[0], []byte(`"text"`)) {
			return wire.Errorf(wire.CodeBadRequest, "\"modalities\" must be [\"text\"]: other outputs are billed beyond the tokens this gateway prices.")
		}
	}
	return nil
}

// streamOptions asks a stream's upstream for the usage chunk (tokens are
// counted from it) and reports whether the client asked for it too.
func streamOptions(fields object, stream bool) (clientWantsUsage bool, err error) {
	opts := object{}
	if raw, ok := fields.present("stream_options"); ok {
		if opts, ok = asObject(raw); !ok {
			return false, wire.Errorf(wire.CodeBadRequest, "\"stream_options\" must be an object.")
		}
		if err := streamOptionKeys.check(opts, `"stream_options"`); err != nil {
			return false, err
		}
	}
	if !stream {
		return false, nil
	}
	clientWantsUsage = isTrue(opts["include_usage"])
	opts["include_usage"] = jsontext.Value("true")
	fields["stream_options"] = encodeObject(opts)
	return clientWantsUsage, nil
}

// readObject decodes a request body that must be a JSON object.
func readObject(body []byte, readErr error) (object, error) {
	if err := bodyError(readErr); err != nil {
		return nil, err
	}
	return decodeBody(body)
}

// bodyError is the client's error for a failed read of its body (nil for
// none).
func bodyError(readErr error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](readErr); ok {
		return wire.Errorf(wire.CodePayloadTooLarge, "The request body is over 1 MiB.")
	}
	if readErr != nil {
		return wire.Wrap(wire.CodeBadRequest, "The request body could not be read.", readErr)
	}
	return nil
}

// modelOf reads "model" and checks it against the plan.
func modelOf(fields object, planName string, plan quota.Plan) (string, error) {
	model, ok := asString(fields["model"])
	if !ok || model == "" {
		return "", wire.Errorf(wire.CodeBadRequest, "\"model\" must be a non-empty string.")
	}
	if !plan.Allows(model) {
		return "", wire.Errorf(wire.CodeModelNotAllowed, "Model %q is not available on the %s plan.", model, planName)
	}
	return model, nil
}

func boolField(fields object, name string) (bool, error) {
	raw, ok := fields.present(name)
	if !ok {
		return false, nil
	}
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, wire.Errorf(wire.CodeBadRequest, "%q must be true or false.", name)
}

// clampOutput clamps the output caps among names to the plan's max_tokens,
// sends the plan's cap as the first name when the client sent none, and
// returns the cap in force (the lowest).
func clampOutput(fields object, plan quota.Plan, names ...string) (int64, error) {
	limit := int64(0)
	for _, name := range names {
		raw, ok := fields.present(name)
		if !ok {
			continue
		}
		var n int64
		if err := json.Unmarshal(raw, &n, strictOptions); err != nil || n < 1 {
			return 0, wire.Errorf(wire.CodeBadRequest, "%q must be a positive integer.", name)
		}
		n = min(n, plan.MaxTokens)
		fields[name] = jsontext.Value(strconv.FormatInt(n, 10))
		if limit == 0 || n < limit {
			limit = n
		}
	}
	if limit == 0 {
		// No cap asked for: the plan's cap still bounds what a request can
		// cost.
		limit = plan.MaxTokens
		fields[names[0]] = jsontext.Value(strconv.FormatInt(limit, 10))
	}
	return limit, nil
}

// ownFields applies the fields the gateway decides, not the client (they
// decide cost or data retention): nothing is stored at OpenAI, metadata and
// the client's user id are dropped, a service tier passes only if the plan
// lists it, OpenAI's abuse monitoring sees a stable pseudonym of the user,
// and a prompt-cache key is the user's own (one user cannot aim at
// another's cache bucket).
func ownFields(fields object, u gateway.User, plan quota.Plan) error {
	fields["store"] = jsontext.Value("false")
	delete(fields, "metadata")
	delete(fields, "user")
	if raw, ok := fields["service_tier"]; ok {
		if tier, ok := asString(raw); !ok || !slices.Contains(plan.ServiceTiers, tier) {
			delete(fields, "service_tier")
		}
	}
	fields["safety_identifier"] = quoted(SafetyIdentifier(u.ClerkUserID))
	if raw, ok := fields.present("prompt_cache_key"); ok {
		key, ok := asString(raw)
		if !ok {
			return wire.Errorf(wire.CodeBadRequest, "\"prompt_cache_key\" must be a string.")
		}
		fields["prompt_cache_key"] = quoted(promptCacheKey(u.ClerkUserID, key))
	}
	return nil
}

// toolChoice refuses a tool_choice that names anything but a function:
// hosted tools bill beyond tokens.
func toolChoice(fields object, chat bool) error {
	raw, ok := fields.present("tool_choice")
	if !ok {
		return nil
	}
	if s, ok := asString(raw); ok {
		if s == "none" || s == "auto" || s == "required" {
			return nil
		}
		return wire.Errorf(wire.CodeBadRequest, "\"tool_choice\" must be \"none\", \"auto\", \"required\" or a function.")
	}
	choice, ok := asObject(raw)
	if !ok {
		return wire.Errorf(wire.CodeBadRequest, "\"tool_choice\" must be a string or an object.")
	}
	if err := toolChoiceKeys.check(choice, `"tool_choice"`); err != nil {
		return err
	}
	if typ := choice.stringOf("type"); typ != "function" {
		return wire.Errorf(wire.CodeBadRequest, "A \"tool_choice\" of type %q is not accepted: only functions (other tools are billed beyond tokens).", typ)
	}
	if fn, ok := asObject(choice["function"]); chat && ok {
		return toolChoiceKeys.check(fn, `"tool_choice"."function"`)
	}
	return nil
}

var toolChoiceKeys = keys("type", "function", "name")

func quoted(s string) jsontext.Value {
	b, _ := jsontext.AppendQuote(nil, s)
	return b
}

// SafetyIdentifier is the pseudonym of a Clerk user sent to OpenAI as
// safety_identifier: stable (OpenAI can tell one abusive user from the
// rest), 128 bits of a domain-separated SHA-256 of the user id, so it
// reveals neither the id nor the email.
func SafetyIdentifier(clerkUserID string) string {
	sum := sha256.Sum256([]byte("sas safety_identifier v1\x00" + clerkUserID))
	return "sas_" + hex.EncodeToString(sum[:16])
}

// promptCacheKey is the prompt_cache_key sent for a user's key: the same
// derivation as SafetyIdentifier over the user and the client's key, so a
// user keeps separate buckets of their own but never shares another's.
func promptCacheKey(clerkUserID, key string) string {
	sum := sha256.Sum256([]byte("sas prompt_cache_key v1\x00" + clerkUserID + "\x00" + key))
	return "sas_" + hex.EncodeToString(sum[:16])
}
