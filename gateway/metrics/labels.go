package metrics

import (
	"net/http"
	"sync"

	"github.com/signals-sorcery/sas/shared/wire"
)

// Other is the label value of anything outside a label's fixed set.
//
// Every label value comes from a fixed set, because each distinct value
// is a series that lives until the process exits: a label fed from request
// data (a made-up method, a model name a client typed) would let anyone
// grow /metrics, and the scraper's storage, without bound.
const Other = "other"

// Unmatched is the route label of requests no route matched (404s, and
// methods the router does not know).
const Unmatched = "unmatched"

// oneOf returns v if it is in set, else Other.
func oneOf(set map[string]bool, v string) string {
	if set[v] {
		return v
	}
	return Other
}

func setOf(values ...string) map[string]bool {
	s := make(map[string]bool, len(values))
	for _, v := range values {
		s[v] = true
	}
	return s
}

// The label sets. The values other than methods and plans are the ones
// their callers pass (auth's token reasons, quota's limit names, the
// proxy's outcomes): a new value there shows as "other" until it is added
// here.
var (
	methods = setOf(http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace)
	tokenReasons = setOf("missing", "too_large", "malformed", "unknown_key", "issuer", "signature",
		"claims", "expired", "not_yet_valid", "audience")
	plans  = setOf(wire.PlanFree, wire.PlanPro)
	limits = setOf("requests_per_minute", "requests_per_day", "tokens_per_day", "usd_per_day",
		"usd_per_month", "concurrent_requests", "max_input_tokens")
	outcomes = setOf("complete", "client_gone", "upstream_cut", "idle_timeout", "malformed", "refused",
		"upstream_error", "aborted")
	sources          = setOf("upstream", "reservation", "none")
	endpoints        = setOf("chat.completions", "responses")
	upstreamOutcomes = setOf("served", "refused", "rate_limited", "auth_failed", "server_error", "other",
		"timeout", "unreachable", "empty_stream", "skipped")
	dependencies = setOf("postgres", "redis", "issuer")
	cacheResults = setOf("hit", "miss", "stale")
)

// method is the label of an HTTP method: one of RFC 9110's, or Other.
func method(m string) string { return oneOf(methods, m) }

// models is the set of model label values: the price table's models,
// declared with AllowModels.
type models struct {
	mu  sync.RWMutex
	set map[string]bool
}

func (s *models) allow(names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set == nil {
		s.set = make(map[string]bool, len(names))
	}
	for _, n := range names {
		s.set[n] = true
	}
}

func (s *models) label(name string) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return oneOf(s.set, name)
}
