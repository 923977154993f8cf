package llmproxy

import (
	"io"
	"net/http"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/gateway/upstream"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Responses answers POST /v1/responses, OpenAI's Responses API, on the same
// accounting path as Chat: the same reservation, relay and settlement.
func (p *Proxy) Responses(w http.ResponseWriter, r *http.Request, u gateway.User) error {
	plan := p.plan(u)
	if plan.TemplatesOnly {
		return errTemplatesOnly(u.Plan)
	}
	body, err := io.ReadAll(r.Body)
	return p.responses(w, r, u, plan, body, err, ran{})
}

// responses parses, estimates and meters a Responses API body: a
// client's, or one a template rendered.
func (p *Proxy) responses(w http.ResponseWriter, r *http.Request, u gateway.User, plan quota.Plan, body []byte, readErr error, from ran) error {
	req, err := parseResponses(body, readErr, u, plan, p.o.Encoding)
	if err != nil {
		return err
	}
	return p.metered(w, r, u, plan, call{
		path: "/responses", endpoint: "responses", serves: upstream.Responses, api: responsesAPI{},
		fields: req.fields, model: req.model, stream: req.stream, promptTokens: req.promptTokens, outputCap: req.outputCap,
		ran: from,
	})
}

// responsesRequest is a client's Responses API request, kept as raw fields
// like chatRequest.
type responsesRequest struct {
	fields                  object
	model                   string
	stream                  bool
	promptTokens, outputCap int64
}

// responsesKeys are the body's keys the gateway reads, owns or refuses,
// and those OpenAI documents that cost nothing as input; every other key
// is counted as its JSON text. responsesInputKeys are billed as input.
var (
	responsesKeys = keys("model", "input", "instructions", "stream", "stream_options", "max_output_tokens", "max_tool_calls",
		"tools", "tool_choice", "parallel_tool_calls", "text", "reasoning", "include", "truncation",
		"temperature", "top_p", "top_logprobs",
		"store", "metadata", "user", "service_tier", "safety_identifier", "prompt_cache_key",
		"previous_response_id", "conversation", "prompt", "background")
	responsesInputKeys = keys("input", "instructions", "tools", "tool_choice", "text")
)

// statefulFields need state stored at OpenAI — earlier responses, a
// conversation, a prompt template, a response that runs on after the
// request — which the gateway never keeps there (store is false), and
// whose tokens it could not estimate.
var statefulFields = []string{"previous_response_id", "conversation", "prompt"}

// parseResponses validates a Responses API request and applies the plan as
// parseChat does: the model allow-list, the output cap (max_output_tokens),
// the input cap, and the fields the gateway owns; it refuses what needs
// stored state and tools other than functions (web search, file search,
// code interpreter, image generation… are billed beyond tokens). Errors
// are *wire.Error bad_request, payload_too_large, model_not_allowed or
// prompt_too_large — all answered before the upstream and the quota.
func parseResponses(body []byte, readErr error, u gateway.User, plan quota.Plan, enc *tokenizer.Encoding) (responsesRequest, error) {
	var req responsesRequest
	var err error
	if req.fields, err = readObject(body, readErr); err != nil {
		return req, err
	}
	if err := responsesKeys.check(req.fields, ""); err != nil {
		return req, err
	}
	if req.model, err = modelOf(req.fields, u.Plan, plan); err != nil {
		return req, err
	}
	for _, name := range statefulFields {
		if _, ok := req.fields.present(name); ok {
			return req, wire.Errorf(wire.CodeBadRequest, "%q is not accepted: it needs state stored at OpenAI, which this gateway never keeps; send the whole input instead.", name)
		}
	}
	if background, err := boolField(req.fields, "background"); err != nil || background {
		return req, wire.Errorf(wire.CodeBadRequest, "\"background\" is not accepted: a background response is stored at OpenAI and outlives the request.")
	}
	if req.stream, err = boolField(req.fields, "stream"); err != nil {
		return req, err
	}
	if raw, ok := req.fields.present("stream_options"); ok {
		if err := checkObject(raw, streamOptionKeys, `"stream_options"`); err != nil {
			return req, err
		}
	}
	if err := functionToolsOnly(req.fields); err != nil {
		return req, err
	}
	if req.outputCap, err = clampOutput(req.fields, plan, "max_output_tokens"); err != nil {
		return req, err
	}
	if err := toolChoice(req.fields, false); err != nil {
		return req, err
	}
	if err := ownFields(req.fields, u, plan); err != nil {
		return req, err
	}
	if req.promptTokens, err = estimateResponses(enc, req.model, req.fields, plan.MaxInputTokens); err != nil {
		return req, err
	}
	return req, nil
}

// functionToolsOnly refuses tools other than functions, naming the type.
func functionToolsOnly(fields object) error {
	raw, ok := fields.present("tools")
	if !ok {
		return nil
	}
	tools, ok := asArray(raw)
	if !ok {
		return wire.Errorf(wire.CodeBadRequest, "\"tools\" must be an array of tool objects.")
	}
	for i, t := range tools {
		tool, ok := asObject(t)
		if !ok {
			return wire.Errorf(wire.CodeBadRequest, "\"tools\" must be an array of tool objects.")
		}
		if err := functionKeys.check(tool, index(`"tools"`, i)); err != nil {
			return err
		}
		typ, ok := asString(tool["type"])
		switch {
		case !ok:
			return wire.Errorf(wire.CodeBadRequest, "Every tool needs a \"type\".")
		case typ != "function":
			return wire.Errorf(wire.CodeBadRequest, "Tools of type %q are not accepted: only \"function\" tools (their cost is tokens alone).", typ)
		}
	}
	return nil
}
