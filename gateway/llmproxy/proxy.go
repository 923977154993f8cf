// Package llmproxy is the OpenAI-compatible proxy: it forwards a user's chat
// completion to OPENAI_BASE_URL with the gateway's key (never the user's
// token), enforces the plan (models, caps, the fields the gateway owns),
// reserves the request's worst-case tokens and cost before sending it,
// relays streams chunk by chunk, and settles the reservation to what the
// upstream reports.
package llmproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/templates"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/gateway/upstream"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Limiter is the quota the proxy spends.
type Limiter interface {
	Admit(ctx context.Context, user string, p quota.Plan, res quota.Reservation) (quota.Admission, error)
	Settle(ctx context.Context, a quota.Admission, s quota.Settlement) error
	Renew(ctx context.Context, a quota.Admission) error
	// RenewEvery is how often a request in flight renews its slot.
	RenewEvery() time.Duration
}

// DefaultIdleTimeout bounds the silence of an upstream body: between two
// stream chunks, or within a non-streamed answer.
const DefaultIdleTimeout = time.Minute

// Options configure a Proxy.
type Options struct {
	// Upstreams are where each model is sent, in order (upstream.Single:
	// OPENAI_API_KEY at OPENAI_BASE_URL).
	Upstreams *upstream.Table
	Plans     quota.Plans
	// Prices must price every model of every plan (config checks it).
	Prices  quota.Prices
	Limiter Limiter
	// Encoding counts prompts (default tokenizer.O200k()).
	Encoding    *tokenizer.Encoding
	IdleTimeout time.Duration
	Metrics     *metrics.Metrics // nil: none
	Logger      *slog.Logger
	// Now is the wall clock (default time.Now): the limiter's, so that a
	// usage event's time and a RateLimit-Reset agree with the windows the
	// limiter counted in. Durations are measured on the monotonic clock.
	Now func() time.Time
	// Templates are the server's prompt templates (default: none).
	Templates *templates.Cache
}

// Proxy serves the OpenAI-compatible routes.
type Proxy struct {
	o Options
	// clients reach each upstream: a connection pool of its own, and its
	// header timeout as the transport's.
	clients map[string]*http.Client
	health  *upstream.Health
}

// New returns a Proxy.
func New(o Options) *Proxy {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Encoding == nil {
		o.Encoding = tokenizer.O200k()
	}
	if o.Templates == nil {
		o.Templates = templates.Static()
	}
	// The proxy serves priced models only (metered refuses the others), and
	// the table's upstreams only: they bound the metrics' labels.
	o.Metrics.AllowModels(slices.Collect(maps.Keys(o.Prices))...)
	o.Metrics.AllowUpstreams(o.Upstreams.Names()...)
	p := &Proxy{o: o, clients: map[string]*http.Client{},
		health: upstream.NewHealth(o.Upstreams.Names(), upstream.HealthOptions{OnCircuit: o.Metrics.CircuitOpen})}
	for _, u := range o.Upstreams.Upstreams() {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = u.HeaderTimeout
		t.MaxIdleConnsPerHost = 64
		p.clients[u.Name] = &http.Client{Transport: t}
	}
	return p
}

func (p *Proxy) plan(u gateway.User) quota.Plan { return p.o.Plans.For(u.Plan) }

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
	if plan.TemplatesOnly {
		return errTemplatesOnly(u.Plan)
	}
	body, err := io.ReadAll(r.Body)
	return p.chat(w, r, u, plan, body, err, ran{})
}

// ran names the prompt template a request was rendered from (zero: a raw
// request).
type ran struct {
	template string
	version  int
}

func errTemplatesOnly(plan string) error {
	return wire.Errorf(wire.CodeTemplatesOnly, "The %s plan runs the app's prompt templates only (POST /v1/templates/{name}), not raw requests.", plan)
}

// chat parses, estimates and meters a chat completion body: a client's, or
// one a template rendered.
func (p *Proxy) chat(w http.ResponseWriter, r *http.Request, u gateway.User, plan quota.Plan, body []byte, readErr error, from ran) error {
	req, err := parseChat(body, readErr, u, plan, p.o.Encoding)
	if err != nil {
		return err
	}
	return p.metered(w, r, u, plan, call{
		path: "/chat/completions", endpoint: "chat.completions", serves: upstream.Chat, api: chatAPI{passUsage: req.clientWantsUsage},
		fields: req.fields, model: req.model, stream: req.stream, promptTokens: req.promptTokens, outputCap: req.outputCap + req.extraOutput,
		ran: from,
	})
}

// call is one upstream request, ready to send.
type call struct {
	path     string
	endpoint string // for the ledger: chat.completions, responses
	serves   string // the upstream endpoint: upstream.Chat, upstream.Responses
	api      api
	// fields are the request's body, as each route receives it but for
	// the model's name and the gateway-owned fields (see body).
	fields object
	model  string
	stream bool
	// promptTokens is the input estimate; outputCap the output tokens
	// reserved: the cap sent upstream, plus a prediction's tokens.
	promptTokens, outputCap int64
	ran                     ran
}

// metered is the one accounting path of every consuming route: reserve the
// worst case, send (failing over between the model's upstreams before the
// first byte), relay, settle to what the upstream reported.
func (p *Proxy) metered(w http.ResponseWriter, r *http.Request, u gateway.User, plan quota.Plan, c call) error {
	if _, ok := p.o.Prices[c.model]; !ok {
		// config refuses to start with an unpriced model: never serve one.
		return wire.Wrap(wire.CodeUnavailable, "This model is not priced on this gateway.", fmt.Errorf("no price for %q", c.model))
	}
	routes := p.o.Upstreams.Routes(c.model)
	if slices.ContainsFunc(routes, func(rt upstream.Route) bool { return !rt.Upstream.Serves(c.serves) }) {
		routes = slices.DeleteFunc(slices.Clone(routes), func(rt upstream.Route) bool { return !rt.Upstream.Serves(c.serves) })
	}
	if len(routes) == 0 {
		return wire.Errorf(wire.CodeBadRequest, "Model %q is not served on %s by this gateway.", c.model, "/v1"+c.path)
	}
	// One reservation, at the highest price of the routes: whichever
	// serves, its charge is within it.
	price := upstream.ReservationPrice(routes)
	c.promptTokens = price.Estimate(c.promptTokens)
	res := quota.Reservation{Tokens: c.promptTokens + c.outputCap, Cost: price.Cost(c.promptTokens, 0, c.outputCap)}
	adm, err := p.o.Limiter.Admit(r.Context(), u.ClerkUserID, plan, res)
	setRateHeaders(w, adm, p.o.Now())
	if err != nil {
		if adm.Refused != "" {
			p.o.Metrics.QuotaRejected(u.Plan, adm.Refused)
		} else {
			p.o.Metrics.DependencyError("redis")
		}
		return err
	}
	// Admitted: metered, and its overhead observed when it ends.
	metrics.OverheadFrom(r.Context()).Metered(c.endpoint)
	log := p.o.Logger.With("user", u.ClerkUserID, "endpoint", c.endpoint, "model", c.model, "stream", c.stream)
	t := &tab{p: p, r: r, adm: adm, price: price, c: c, plan: u.Plan, user: u.ClerkUserID,
		requestID: w.Header().Get("X-Request-Id"), start: time.Now(), log: log}
	t.stopRenewing = p.keepSlot(adm, log)
	// Settled even if what follows panics: the slot's renewal stops, and
	// the reservation (no usage known) is charged.
	defer t.settle(outcome{name: "aborted"})
	out := p.exchange(w, r, t, routes)
	t.settle(out)
	return out.err
}

// tab is one admitted request's account: what it reserved, and its one
// settlement. The relays settle just before the answer's last bytes leave
// (so a client that has the whole answer has its charge and usage event in
// Redis, even if the instance dies the next moment); metered settles
// whatever is left unsettled.
type tab struct {
	p            *Proxy
	r            *http.Request
	adm          quota.Admission
	price        quota.Price
	c            call
	plan, user   string
	requestID    string
	start        time.Time
	log          *slog.Logger
	stopRenewing func()
	settled      bool
	// upstream served the request (""; none did); attempts were made.
	upstream string
	attempts int
}

// keepSlot renews adm's concurrency slot until the returned stop is
// called, so a long stream keeps it. A renewal that fails is not retried
// sooner: if Redis stays unreachable for a whole lease, the slot lapses
// and the user may start one request more than the plan allows — the
// price of never holding a dead instance's slots for long.
//
// A timer, not a goroutine: most requests end long before the first
// renewal, and then all it cost was arming and stopping one timer. stop
// waits for a renewal in flight, so none runs after the settlement that
// releases the slot.
func (p *Proxy) keepSlot(adm quota.Admission, log *slog.Logger) (stop func()) {
	every := p.o.Limiter.RenewEvery()
	if !adm.HoldsSlot() || every <= 0 {
		return func() {}
	}
	var (
		mu      sync.Mutex // held by a renewal, and by stop
		stopped bool
		timer   *time.Timer
	)
	renew := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := p.o.Limiter.Renew(ctx, adm); err != nil {
			log.Warn("renewing the concurrency slot failed", "err", err)
		}
		cancel()
		timer.Reset(every)
	}
	mu.Lock()
	timer = time.AfterFunc(every, renew)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}

// outcome is how an exchange with the upstream ended.
type outcome struct {
	name string // complete, client_gone, upstream_cut, idle_timeout, malformed, refused, upstream_error
	// usage as the upstream reported it; nil when it did not.
	usage *usage
	// charge: what to settle — the upstream's usage (or else the whole
	// reservation), nothing (the client's fault, refused upstream), or
	// nothing and the day's request back (the upstream could not serve).
	charge chargeRule
	// reason is why an attempt failed, for the failover metrics.
	reason string
	err    error // what to answer when nothing was written
}

type chargeRule int

const (
	chargeUsage   chargeRule = iota // usage, else the reservation
	chargeRequest                   // the request counts; no tokens, no money
	chargeNothing                   // upstream failure: all given back but the minute
)

// settle replaces the reservation with the charge of out, appends the
// usage event (for requests that count), and logs and counts it. Only the
// first call does anything.
func (t *tab) settle(out outcome) {
	if t.settled {
		return
	}
	t.settled = true
	t.stopRenewing()
	res := t.adm.Reserved()
	s, source := quota.Settlement{}, "none"
	in, cached, outTokens := int64(0), int64(0), int64(0)
	switch out.charge {
	case chargeNothing:
		s.ReturnRequest = true
	case chargeUsage:
		if u := out.usage; u != nil {
			in, cached, outTokens = u.input, u.cached, u.output
			s.Tokens, s.Cost, source = in+outTokens, t.price.Cost(in, cached, outTokens), "upstream"
			if s.Tokens > res.Tokens || s.Cost > res.Cost {
				// Charged as reported (the contract's rule), but someone
				// should know: the estimate missed, or the upstream
				// reports more than it should.
				t.p.o.Metrics.OverReservation(t.c.endpoint, t.c.model)
				t.log.Warn("usage above the reservation", "reserved_tokens", res.Tokens, "tokens", s.Tokens,
					"reserved_usd", res.Cost.String(), "usd", s.Cost.String(), "prompt_estimate", t.c.promptTokens, "input_tokens", in)
			}
		} else {
			in, outTokens = t.c.promptTokens, t.c.outputCap
			s.Tokens, s.Cost, source = res.Tokens, res.Cost, "reservation"
		}
	}
	if !s.ReturnRequest {
		s.Event = &gateway.UsageEvent{
			ID: t.adm.ID(), RequestID: t.requestID, ClerkUserID: t.user, Model: t.c.model, Endpoint: t.c.endpoint,
			InputTokens: in, CachedInputTokens: cached, OutputTokens: outTokens, CostMicros: int64(s.Cost),
			Source: source, Outcome: out.name, Stream: t.c.stream, At: t.p.o.Now(),
			Upstream: t.upstream, Attempts: t.attempts, Template: t.c.ran.template, TemplateVersion: t.c.ran.version,
		}
	}
	t.p.o.Metrics.Upstream(t.c.model, out.name, time.Since(t.start), s.Tokens, source)
	t.p.o.Metrics.Spend(t.c.model, t.plan, float64(s.Cost)/float64(quota.MicrosPerUSD))
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.r.Context()), 2*time.Second)
	defer cancel()
	if err := t.p.o.Limiter.Settle(ctx, t.adm, s); err != nil {
		// The reservation stays charged: the user pays at most what was
		// reserved, never less than nothing.
		t.log.Error("settling the reservation failed; it stays charged", "reserved_tokens", res.Tokens, "err", err)
	}
	t.log.Info("completion", "outcome", out.name, "attempts", t.attempts, "usage_source", source, "prompt_estimate", t.c.promptTokens,
		"reserved_tokens", res.Tokens, "reserved_usd", res.Cost.String(), "tokens", s.Tokens, "usd", s.Cost.String())
}

// exchange sends t's call to the first of routes that can serve it and
// relays the answer. It fails over to the next route — at most
// upstream.MaxAttempts tried — only while nothing has been sent to the
// client: when an attempt could not be made (refused, reset, no headers in
// time), the upstream answered 429, 5xx or 401/403 of our key, or a stream
// ended before its first byte. An answer the client has begun to receive
// is never sent again; the client's own fault (400/404/422) is relayed,
// never failed over.
func (p *Proxy) exchange(w http.ResponseWriter, r *http.Request, t *tab, routes []upstream.Route) outcome {
	var last outcome
	var from upstream.Route
	for _, rt := range routes {
		if t.attempts == upstream.MaxAttempts {
			break
		}
		name := rt.Upstream.Name
		done, ok := p.health.Try(name)
		if len(routes) == 1 {
			// Rotation needs somewhere else to go: a model's only upstream
			// is always tried (as before upstream tables existed), and its
			// health only reported.
			ok = true
			if done == nil {
				done = func(upstream.Result, time.Duration) {}
			}
		}
		if !ok {
			p.o.Metrics.UpstreamSkipped(name, t.c.model)
			continue
		}
		if t.attempts > 0 {
			p.o.Metrics.Failover(from.Upstream.Name, name, last.reason)
			t.log.Warn("failing over", "from", from.Upstream.Name, "to", name, "reason", last.reason)
		}
		t.attempts++
		out, served := p.attempt(w, r, t, rt, done)
		if served || out.name == "client_gone" {
			return out
		}
		last, from = out, rt
	}
	if t.attempts == 0 {
		p.o.Metrics.ModelUnavailable(t.c.model)
		return p.unavailable(routes)
	}
	return last
}

// unavailable is the answer when every upstream of a model is out of
// rotation: 503 upstream_unavailable until the first returns. All is
// given back but the minute's request.
func (p *Proxy) unavailable(routes []upstream.Route) outcome {
	retry := time.Duration(0)
	for _, rt := range routes {
		if back := time.Until(p.health.Back(rt.Upstream.Name)); retry == 0 || back < retry {
			retry = back
		}
	}
	return outcome{name: "upstream_error", charge: chargeNothing, reason: "unavailable", err: &wire.Error{
		Code: wire.CodeUpstreamUnavailable, RetryAfter: max(1, int((retry+time.Second-1)/time.Second)),
		Message: "Every AI provider of this model is out of rotation after failures; try again shortly."}}
}

// attempt sends t's call to one route. served reports that the route
// answered in a way the client gets (relayed, or refused as the client's
// fault): no other route may be tried. Otherwise out is the failure, to
// answer if it is the last.
func (p *Proxy) attempt(w http.ResponseWriter, r *http.Request, t *tab, rt upstream.Route, done func(upstream.Result, time.Duration)) (out outcome, served bool) {
	c, log, name := t.c, t.log.With("upstream", rt.Upstream.Name), rt.Upstream.Name
	// The upstream request lives as long as the client's, or until the
	// upstream body goes silent for IdleTimeout (the idle reader cancels it).
	uctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	sent := time.Now()
	resp, err := p.send(uctx, c, rt, cancel)
	if err != nil {
		if r.Context().Err() != nil {
			// The client left before the answer: not the upstream's fault,
			// and the upstream may have worked on it.
			done(upstream.Abandoned, 0)
			t.upstream, t.log = name, log
			return outcome{name: "client_gone", err: errClientGone}, true
		}
		reason := "unreachable"
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			reason = "timeout"
		}
		log.Warn("upstream attempt failed", "reason", reason, "err", err)
		done(upstream.Failed, 0)
		p.o.Metrics.UpstreamAttempt(name, c.model, reason, 0)
		return outcome{name: "upstream_error", charge: chargeNothing, reason: reason, err: err}, false
	}
	defer resp.Body.Close() // the idle reader: stops its timer
	p.o.Metrics.UpstreamAttempt(name, c.model, statusOutcome(resp.StatusCode), time.Since(sent))
	if resp.StatusCode/100 != 2 {
		err := upstreamError(resp, log)
		switch s := resp.StatusCode; {
		case clientFault(s):
			done(upstream.Served, 0)
			t.upstream, t.log = name, log
			return outcome{name: "refused", charge: chargeRequest, err: err}, true
		case s == 429:
			done(upstream.Failed, retryAfter(resp))
			return outcome{name: "upstream_error", charge: chargeNothing, reason: "rate_limited", err: err}, false
		case s == 401 || s == 403 || s == 500 || s == 502 || s == 503 || s == 504:
			done(upstream.Failed, 0)
			return outcome{name: "upstream_error", charge: chargeNothing, reason: statusOutcome(s), err: err}, false
		default: // an answer, if a strange one: not another provider's to give
			done(upstream.Served, 0)
			t.upstream, t.log = name, log
			return outcome{name: "upstream_error", charge: chargeNothing, err: err}, true
		}
	}
	if c.stream {
		// The client sees nothing until the stream's first byte: a stream
		// that ends before it is a failure like no answer at all.
		if _, err := resp.Body.(*idleReader).peek(); err != nil {
			if r.Context().Err() != nil {
				done(upstream.Abandoned, 0)
				t.upstream, t.log = name, log
				return outcome{name: "client_gone", err: errClientGone}, true
			}
			log.Warn("upstream stream ended before its first byte", "err", err)
			done(upstream.Failed, 0)
			out := cutOutcome(r, resp.Body) // idle_timeout or upstream_cut, nothing charged
			out.reason, out.err = "empty_stream", wire.Wrap(wire.CodeUpstreamError, "The AI provider's answer broke off.", err)
			return out, false
		}
	}
	done(upstream.Served, 0)
	// From here on the answer is this upstream's: what the relay logs
	// (a malformed event, a cut) names it.
	t.upstream, t.price, t.log = name, rt.Price, log
	if c.stream {
		return p.relayStream(w, r, resp, t), true
	}
	return relayJSON(w, r, resp, t), true
}

// retryAfter is a 429's Retry-After in seconds, else the default cooling.
func retryAfter(resp *http.Response) time.Duration {
	if v, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return upstream.DefaultCooling
}

// statusOutcome names an upstream's status for the metrics and logs.
func statusOutcome(status int) string {
	switch {
	case status/100 == 2:
		return "served"
	case clientFault(status):
		return "refused"
	case status == 429:
		return "rate_limited"
	case status == 401 || status == 403:
		return "auth_failed"
	case status/100 == 5:
		return "server_error"
	}
	return "other"
}

var errClientGone = errors.New("the client went away before the answer")

// send posts the request to rt with its key (never the user's token, nor
// any header of the user's). The response body it returns is an idle
// reader that cancels the request (cancel) when the upstream goes silent;
// closing it stops its timer, so the one Close of the caller ends its whole
// life. No response headers within the upstream's header timeout fail the
// request (its transport's ResponseHeaderTimeout).
func (p *Proxy) send(ctx context.Context, c call, rt upstream.Route, cancel context.CancelFunc) (*http.Response, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, rt.Upstream.BaseURL+c.path, bytes.NewReader(c.body(rt)))
	if err != nil {
		return nil, wire.Wrap(wire.CodeUpstreamError, "The AI provider could not be reached.", err)
	}
	rt.Upstream.Authorize(hr.Header)
	hr.Header.Set("Content-Type", "application/json")
	if c.stream {
		hr.Header.Set("Accept", "text/event-stream")
	}
	ov := metrics.OverheadFrom(ctx)
	waitFrom := time.Now()
	resp, err := p.clients[rt.Upstream.Name].Do(hr)
	ov.Waited(time.Since(waitFrom))
	if err != nil {
		msg := "The AI provider could not be reached."
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			msg = "The AI provider did not answer in time."
		}
		// err names the upstream URL, never the key (it is a header).
		return nil, wire.Wrap(wire.CodeUpstreamError, msg, err)
	}
	resp.Body = newIdleReader(resp.Body, p.o.IdleTimeout, cancel, ov)
	return resp, nil
}

// body is the request as rt receives it: the model under the upstream's
// name, and the gateway-owned fields only to the kinds that take them.
func (c call) body(rt upstream.Route) []byte {
	if rt.Model == c.model && rt.Upstream.OwnsFields() {
		return encodeObject(c.fields)
	}
	f := maps.Clone(c.fields)
	f["model"] = quoted(rt.Model)
	if !rt.Upstream.OwnsFields() {
		for _, k := range ownedFields {
			delete(f, k)
		}
	}
	return encodeObject(f)
}

// ownedFields are the fields the gateway sets for the upstreams that take
// them (OpenAI, Azure).
var ownedFields = []string{"store", "safety_identifier", "prompt_cache_key", "service_tier"}

// clientFault reports whether an upstream status blames the request
// itself: it counts as a request, but costs no tokens.
func clientFault(status int) bool { return status == 400 || status == 404 || status == 422 }

// upstreamError maps a non-2xx upstream answer to the contract's errors.
func upstreamError(resp *http.Response, log *slog.Logger) error {
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
	case clientFault(s):
		if msg == "" {
			msg = "The AI provider refused the request."
		}
		// Same status as OpenAI's, with its message (it is about the
		// client's request).
		return &statusError{status: s, err: &wire.Error{Code: wire.CodeBadRequest, Message: msg, Err: cause}}
	case s == 401 || s == 403:
		log.Error("the upstream refused the gateway's key: rotate it", "status", s)
		return wire.Wrap(wire.CodeUpstreamError, "The AI provider refused the gateway's credentials.", cause)
	case s == 429:
		retry := 5
		if v, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && v > 0 {
			retry = v
		}
		log.Warn("the upstream is rate-limiting the gateway", "retry_after", retry)
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
// request or token limit with the least remaining.
func setRateHeaders(w http.ResponseWriter, adm quota.Admission, now time.Time) {
	if len(adm.Usage) == 0 {
		return
	}
	t := quota.Tightest(adm.Usage)
	for _, u := range adm.Usage {
		if u.Name == adm.Refused && !u.Money() {
			t = u
		}
	}
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.FormatInt(t.Limit, 10))
	h.Set("RateLimit-Remaining", strconv.FormatInt(t.Remaining, 10))
	h.Set("RateLimit-Reset", strconv.Itoa(max(0, int(t.ResetAt.Sub(now).Seconds()+0.999))))
}
