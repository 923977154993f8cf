// Package llmproxy is the OpenAI-compatible proxy: it forwards a user's chat
// completion to OPENAI_BASE_URL with the gateway's key (never the user's
// token), enforces the plan (models, max tokens, quota), relays streams
// chunk by chunk, and charges the tokens the upstream reports.
package llmproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Limiter is the quota the proxy spends.
type Limiter interface {
	Admit(ctx context.Context, user string, p quota.Plan) (quota.Admission, error)
	Charge(ctx context.Context, a quota.Admission, tokens int64) error
	Refund(ctx context.Context, a quota.Admission) error
}

// Default upstream timeouts.
const (
	// DefaultHeaderTimeout bounds the wait for the upstream's answer to
	// start. A non-streamed completion answers only when it is complete,
	// hence minutes.
	DefaultHeaderTimeout = 3 * time.Minute
	// DefaultIdleTimeout bounds the silence between two stream chunks.
	DefaultIdleTimeout = time.Minute
)

// Options configure a Proxy.
type Options struct {
	BaseURL string // e.g. https://api.openai.com/v1
	APIKey  string
	Plans   quota.Plans
	Limiter Limiter
	// Transport reaches the upstream (default: a clone of
	// http.DefaultTransport with HeaderTimeout).
	Transport     http.RoundTripper
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	Metrics       *metrics.Metrics // nil: none
	Logger        *slog.Logger
}

// Proxy serves the OpenAI-compatible routes.
type Proxy struct {
	o      Options
	client *http.Client
}

// New returns a Proxy.
func New(o Options) *Proxy {
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = o.HeaderTimeout
		t.MaxIdleConnsPerHost = 64
		o.Transport = t
	}
	o.BaseURL = strings.TrimSuffix(o.BaseURL, "/")
	return &Proxy{o: o, client: &http.Client{Transport: o.Transport}}
}

func (p *Proxy) plan(u gateway.User) quota.Plan {
	if pl, ok := p.o.Plans[u.Plan]; ok {
		return pl
	}
	return p.o.Plans[wire.PlanFree]
}

// Models answers GET /v1/models: the caller's plan's models, in OpenAI's
// list shape.
func (p *Proxy) Models(w http.ResponseWriter, u gateway.User) error {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, id := range p.plan(u).Models {
		list.Data = append(list.Data, model{ID: id, Object: "model", Created: 1715367049, OwnedBy: "openai"})
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(list)
}

// Chat answers POST /v1/chat/completions. It returns an error only when it
// wrote nothing, for the caller to answer with the error envelope; once a
// response has started, failures are logged and the stream ends.
func (p *Proxy) Chat(w http.ResponseWriter, r *http.Request, u gateway.User) error {
	plan := p.plan(u)
	body, err := io.ReadAll(r.Body)
	req, err := parseChat(body, err, u.Plan, plan)
	if err != nil {
		return err
	}
	adm, err := p.o.Limiter.Admit(r.Context(), u.ClerkUserID, plan)
	setRateHeaders(w, adm)
	if err != nil {
		if adm.Refused != "" {
			p.o.Metrics.QuotaRejected(u.Plan, adm.Refused)
		} else {
			p.o.Metrics.DependencyError("redis")
		}
		return err
	}
	log := p.o.Logger.With("user", u.ClerkUserID, "model", req.model, "stream", req.stream)
	// The upstream request lives as long as the client's, or until the
	// upstream goes silent for IdleTimeout (idleReader cancels it).
	uctx, ucancel := context.WithCancel(r.Context())
	defer ucancel()
	start := time.Now()
	resp, sent, err := p.send(uctx, req)
	switch {
	case err == nil && resp.StatusCode/100 != 2:
		// The upstream refused before generating anything: given back.
		p.refund(r, adm, log)
		return upstreamError(resp, log)
	case err != nil && !sent:
		p.refund(r, adm, log) // never reached the upstream
		return err
	case err != nil:
		// Sent, then no answer (the client left, or the upstream hung): the
		// upstream may have worked on it; charge the prompt.
		p.charge(r, adm, accounting{outcome: "no_answer"}, req, start, log)
		return err
	}
	defer resp.Body.Close()
	var acct accounting
	if req.stream {
		acct = p.relayStream(w, r, resp, req.clientWantsUsage, log) // has its own idle timer
	} else {
		resp.Body = newIdleReader(resp.Body, p.o.IdleTimeout, ucancel)
		acct, err = relayJSON(w, resp)
	}
	p.charge(r, adm, acct, req, start, log)
	return err
}

func (p *Proxy) refund(r *http.Request, adm quota.Admission, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	if err := p.o.Limiter.Refund(ctx, adm); err != nil {
		log.Warn("refund failed", "err", err)
	}
}

// charge charges what the upstream reported, else an estimate, and logs
// which.
func (p *Proxy) charge(r *http.Request, adm quota.Admission, acct accounting, req chatRequest, start time.Time, log *slog.Logger) {
	tokens, source := acct.tokens(req.promptBytes)
	p.o.Metrics.Upstream(req.model, acct.outcome, time.Since(start), tokens, source)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
	defer cancel()
	if err := p.o.Limiter.Charge(ctx, adm, tokens); err != nil {
		log.Error("charging tokens failed", "tokens", tokens, "err", err)
	}
	log.Info("completion", "tokens", tokens, "usage_source", source, "outcome", acct.outcome)
}

// send posts the request upstream with the gateway's key. The user's
// headers — their token above all — are not forwarded. sent reports whether
// the request may have reached the upstream (false: the connection was
// never made, so nothing was spent).
func (p *Proxy) send(ctx context.Context, req chatRequest) (resp *http.Response, sent bool, err error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.o.BaseURL+"/chat/completions", bytes.NewReader(req.body()))
	if err != nil {
		return nil, false, wire.Wrap(wire.CodeUpstreamError, "The AI provider could not be reached.", err)
	}
	hr.Header.Set("Authorization", "Bearer "+p.o.APIKey)
	hr.Header.Set("Content-Type", "application/json")
	if req.stream {
		hr.Header.Set("Accept", "text/event-stream")
	}
	resp, err = p.client.Do(hr)
	if err != nil {
		var oe *net.OpError
		sent = !(errors.As(err, &oe) && oe.Op == "dial")
		msg := "The AI provider could not be reached."
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			msg = "The AI provider did not answer in time."
		}
		// err names the upstream URL, never the key (it is a header).
		return nil, sent, wire.Wrap(wire.CodeUpstreamError, msg, err)
	}
	return resp, true, nil
}

// upstreamError maps a non-2xx upstream answer to the contract's errors.
func upstreamError(resp *http.Response, log *slog.Logger) error {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var oe openai.ErrorResponse
	msg := ""
	if json.Unmarshal(b, &oe) == nil && oe.Error != nil {
		msg = oe.Error.Message
	}
	cause := errors.New("upstream status " + strconv.Itoa(resp.StatusCode) + ": " + msg)
	if resp.StatusCode == 401 || resp.StatusCode == 403 {
		// OpenAI's message quotes part of the key: keep it out of the log.
		cause = errors.New("upstream status " + strconv.Itoa(resp.StatusCode))
	}
	switch s := resp.StatusCode; {
	case s == 400 || s == 404 || s == 422:
		if msg == "" {
			msg = "The AI provider refused the request."
		}
		// Same status as OpenAI's, with its message (it is about the
		// client's request).
		return &statusError{status: s, err: &wire.Error{Code: wire.CodeBadRequest, Message: msg, Err: cause}}
	case s == 401 || s == 403:
		log.Error("the upstream refused the gateway's OpenAI key: rotate OPENAI_API_KEY", "status", s)
		return wire.Wrap(wire.CodeUpstreamError, "The AI provider refused the gateway's credentials.", cause)
	case s == 429:
		retry := 5
		if v, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && v > 0 {
			retry = v
		}
		log.Warn("the upstream is rate-limiting the gateway's organisation", "retry_after", retry)
		return &wire.Error{Code: wire.CodeUnavailable, Message: "The AI provider is over capacity for this service; try again shortly.", RetryAfter: retry, Err: cause}
	default:
		return wire.Wrap(wire.CodeUpstreamError, "The AI provider failed.", cause)
	}
}

// statusError is a *wire.Error answered with a specific status instead of
// its code's (OpenAI's 404 and 422 stay 404 and 422, code bad_request).
type statusError struct {
	status int
	err    *wire.Error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// Status returns the HTTP status to answer with.
func (e *statusError) Status() int { return e.status }

// setRateHeaders describes the limit that refused the request, else the
// one with the least remaining.
func setRateHeaders(w http.ResponseWriter, adm quota.Admission) {
	if len(adm.Usage) == 0 {
		return
	}
	t := quota.Tightest(adm.Usage)
	for _, u := range adm.Usage {
		if u.Name == adm.Refused {
			t = u
		}
	}
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.FormatInt(t.Limit, 10))
	h.Set("RateLimit-Remaining", strconv.FormatInt(t.Remaining, 10))
	h.Set("RateLimit-Reset", strconv.Itoa(max(0, int(time.Until(t.ResetAt).Seconds()+0.999))))
}

// accounting is what a relayed response used.
type accounting struct {
	usage           *openai.Usage // as reported by the upstream
	completionBytes int           // relayed content, for the estimate
	outcome         string        // complete, client_gone, upstream_cut, idle_timeout, malformed
}

// tokens returns the tokens to charge and where the figure comes from.
func (a accounting) tokens(promptBytes int) (int64, string) {
	if a.usage != nil && a.usage.TotalTokens > 0 {
		return int64(a.usage.TotalTokens), "upstream"
	}
	// About four bytes a token for English text and JSON.
	return int64((promptBytes+a.completionBytes)/4 + 1), "estimate"
}

// relayJSON relays a non-streamed answer once it is complete. A body cut
// short, silent for IdleTimeout or over 32 MiB becomes a 502 (nothing was
// written yet) and is charged by estimate.
func relayJSON(w http.ResponseWriter, resp *http.Response) (accounting, error) {
	const maxBody = 32 << 20
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	acct := accounting{outcome: "complete", completionBytes: len(b)}
	if err != nil || len(b) > maxBody {
		acct.outcome = "upstream_cut"
		if err == nil {
			err = errors.New("answer over 32 MiB")
		}
		return acct, wire.Wrap(wire.CodeUpstreamError, "The AI provider's answer broke off.", err)
	}
	var cr struct {
		Usage *openai.Usage `json:"usage"`
	}
	if json.Unmarshal(b, &cr) == nil && cr.Usage != nil && cr.Usage.TotalTokens > 0 {
		acct.usage = cr.Usage
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
	return acct, nil
}

// idleReader cancels the upstream request when a Read has waited longer
// than d for data: a body that stalls after its headers is bounded too.
type idleReader struct {
	io.ReadCloser
	d     time.Duration
	timer *time.Timer
}

func newIdleReader(rc io.ReadCloser, d time.Duration, cancel context.CancelFunc) *idleReader {
	return &idleReader{ReadCloser: rc, d: d, timer: time.AfterFunc(d, cancel)}
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.timer.Reset(r.d)
	n, err := r.ReadCloser.Read(p)
	r.timer.Reset(r.d)
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	return r.ReadCloser.Close()
}

// relayStream copies the upstream's server-sent events to the client one
// event at a time, flushing after each, and reads usage from the chunks as
// they pass. It stops when the upstream ends, goes silent for IdleTimeout,
// or the client leaves (whose request context then cancels the upstream).
//
// The usage-only chunk (no choices) that the gateway asked for is passed on
// only if the client asked for it too: a client that did not may index
// choices[0] of every chunk.
func (p *Proxy) relayStream(w http.ResponseWriter, r *http.Request, resp *http.Response, passUsage bool, log *slog.Logger) accounting {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				select {
				case lines <- line:
				case <-r.Context().Done():
					readErr <- r.Context().Err()
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	defer func() {
		resp.Body.Close() // unblocks the reader if we stop first
		for range lines {
		}
	}()

	acct := accounting{}
	idle := time.NewTimer(p.o.IdleTimeout)
	defer idle.Stop()
	sawDone, skipEvent := false, false
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := <-readErr
				switch {
				case r.Context().Err() != nil:
					acct.outcome = "client_gone"
				case sawDone:
					acct.outcome = "complete"
				case errors.Is(err, io.EOF):
					acct.outcome = "upstream_cut"
				default:
					acct.outcome = "upstream_cut"
					log.Warn("upstream stream failed", "err", err)
				}
				return acct
			}
			idle.Reset(p.o.IdleTimeout)
			if data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:")); ok {
				data = bytes.TrimSpace(data)
				if bytes.Equal(data, []byte("[DONE]")) {
					sawDone = true
				} else {
					var chunk openai.ChatCompletionStreamResponse
					if err := json.Unmarshal(data, &chunk); err != nil {
						acct.outcome = "malformed"
						log.Warn("upstream sent a malformed stream chunk", "bytes", len(data))
					} else {
						if chunk.Usage != nil && chunk.Usage.TotalTokens > 0 {
							acct.usage = chunk.Usage
							skipEvent = !passUsage && len(chunk.Choices) == 0
						}
						for _, c := range chunk.Choices {
							acct.completionBytes += len(c.Delta.Content)
						}
					}
				}
			}
			blank := len(bytes.TrimSpace(line)) == 0
			_ = rc.SetWriteDeadline(time.Now().Add(p.o.IdleTimeout)) // a client that stops reading is let go
			if skipEvent {
				skipEvent = !blank // drop through the event's closing blank line
				continue
			}
			if _, err := w.Write(line); err != nil {
				acct.outcome = "client_gone"
				return acct
			}
			// An event ends with a blank line: flush whole events.
			if blank {
				if err := rc.Flush(); err != nil {
					acct.outcome = "client_gone"
					return acct
				}
				if sawDone {
					// [DONE] ends the stream, whether or not the upstream
					// closes its side.
					acct.outcome = "complete"
					return acct
				}
			}
		case <-idle.C:
			acct.outcome = "idle_timeout"
			log.Warn("upstream stream went silent", "timeout", p.o.IdleTimeout)
			return acct
		case <-r.Context().Done():
			acct.outcome = "client_gone"
			return acct
		}
	}
}
