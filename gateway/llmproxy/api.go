package llmproxy

import (
	"bytes"
	"encoding/json"

	openai "github.com/sashabaranov/go-openai"
)

// usage is what the upstream reported a request cost.
type usage struct{ input, cached, output int64 }

// api is what differs between the endpoints the proxy meters: where an
// answer reports its usage and how a stream ends. Everything else — the
// reservation, the relay, the settlement — is one path for all of them.
type api interface {
	// usage reads a complete JSON answer's usage; nil when it has none.
	usage(body []byte) *usage
	// event reads the data of one stream event: the usage it reports (nil:
	// none), the outcome it ends the stream with (name "" when it is not
	// the last; its usage is filled in by the relay), and whether the client
	// must not see it. err: the data is not what the endpoint sends.
	event(data []byte) (u *usage, end outcome, hide bool, err error)
}

// chatAPI is /v1/chat/completions: usage in the answer's "usage", in a
// stream the usage-only chunk the gateway asks for, and "[DONE]" last.
type chatAPI struct {
	// passUsage: the client asked for the usage-only chunk too.
	passUsage bool
}

// checked is what an upstream reported, made safe to charge: a negative
// figure is no report at all (nil: the reservation is charged), none at
// all likewise, and cached tokens are at most the input they are part of.
// Usage is input like any other: a charge that lowers a counter, or cached
// tokens billed at the cheaper price beyond the input, would let an
// upstream's bug (or a lax provider) undo a budget.
func checked(input, cached, output int) *usage {
	if input < 0 || cached < 0 || output < 0 || input+output <= 0 {
		return nil
	}
	return &usage{input: int64(input), cached: int64(min(cached, input)), output: int64(output)}
}

func fromChat(u *openai.Usage) *usage {
	if u == nil {
		return nil
	}
	cached := 0
	if u.PromptTokensDetails != nil {
		cached = u.PromptTokensDetails.CachedTokens
	}
	return checked(u.PromptTokens, cached, u.CompletionTokens)
}

func (chatAPI) usage(body []byte) *usage {
	var cr struct {
		Usage *openai.Usage `json:"usage"`
	}
	if json.Unmarshal(body, &cr) != nil {
		return nil
	}
	return fromChat(cr.Usage)
}

func (a chatAPI) event(data []byte) (*usage, outcome, bool, error) {
	if bytes.Equal(data, []byte("[DONE]")) {
		return nil, outcome{name: "complete"}, false, nil
	}
	var chunk openai.ChatCompletionStreamResponse
	if err := json.Unmarshal(data, &chunk); err != nil {
		return nil, outcome{}, false, err
	}
	u := fromChat(chunk.Usage)
	// A client that did not ask for the usage-only chunk (no choices) may
	// index choices[0] of every chunk.
	return u, outcome{}, u != nil && !a.passUsage && len(chunk.Choices) == 0, nil
}

// responsesAPI is /v1/responses: usage in the response's "usage"; a stream
// of typed events whose last is response.completed, response.incomplete or
// response.failed, carrying the response and its usage.
type responsesAPI struct{}

func fromResponses(u *openai.ResponseUsage) *usage {
	if u == nil {
		return nil
	}
	cached := 0
	if u.InputTokensDetails != nil {
		cached = u.InputTokensDetails.CachedTokens
	}
	return checked(u.InputTokens, cached, u.OutputTokens)
}

func (responsesAPI) usage(body []byte) *usage {
	var r struct {
		Usage *openai.ResponseUsage `json:"usage"`
	}
	if json.Unmarshal(body, &r) != nil {
		return nil
	}
	return fromResponses(r.Usage)
}

func (responsesAPI) event(data []byte) (*usage, outcome, bool, error) {
	var ev struct {
		Type     string `json:"type"`
		Response *struct {
			Usage *openai.ResponseUsage `json:"usage"`
		} `json:"response"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, outcome{}, false, err
	}
	var u *usage
	if ev.Response != nil {
		u = fromResponses(ev.Response.Usage)
	}
	switch {
	case ev.Type == "response.completed", ev.Type == "response.incomplete": // incomplete: max_output_tokens reached
		return u, outcome{name: "complete"}, false, nil
	case ev.Type == "response.failed" && u != nil: // what it reports is charged
		return u, outcome{name: "upstream_cut"}, false, nil
	case ev.Type == "response.failed": // an upstream failure: all given back but the minute
		return nil, outcome{name: "upstream_error", charge: chargeNothing}, false, nil
	}
	return nil, outcome{}, false, nil
}
