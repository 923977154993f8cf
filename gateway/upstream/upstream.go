// Package upstream is the gateway's table of AI providers: named upstreams
// (OpenAI, Azure OpenAI, OpenAI-compatible servers), each model's ordered
// list of them, and each upstream's health on this instance (cooling after
// a 429, a circuit breaker after repeated failures), so that one
// provider's outage or rate limit does not take the app's AI features
// down. The proxy asks it which upstreams to try, in order; it never sends
// anything itself.
package upstream

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/secureurl"
)

// Kind is the protocol of an upstream.
type Kind string

// The kinds of upstream.
const (
	// OpenAI is api.openai.com (or a proxy of it): Bearer key, chat and
	// Responses, and the gateway-owned fields.
	OpenAI Kind = "openai"
	// Azure is Azure OpenAI's v1 API: an api-key header, the deployment
	// name as the model, chat and Responses, the gateway-owned fields.
	Azure Kind = "azure"
	// Compatible is any OpenAI-compatible server (Gemini's and Anthropic's
	// compatibility endpoints, Groq, self-hosted): Bearer key, the
	// endpoints listed (chat by default), none of the gateway-owned
	// fields (such servers refuse or misread them).
	Compatible Kind = "openai-compatible"
)

// Endpoints the gateway meters.
const (
	Chat      = "chat"
	Responses = "responses"
)

// DefaultHeaderTimeout bounds the wait for an upstream's response headers:
// a non-streamed completion answers only when it is complete, hence
// minutes.
const DefaultHeaderTimeout = 3 * time.Minute

// MaxAttempts is the most upstreams one request tries.
const MaxAttempts = 3

// DefaultName is the name of the one upstream made from OPENAI_API_KEY and
// OPENAI_BASE_URL when no table is configured.
const DefaultName = "openai"

// Upstream is one provider endpoint with its key.
type Upstream struct {
	Name          string
	Kind          Kind
	BaseURL       string // without a trailing slash, e.g. https://api.openai.com/v1
	HeaderTimeout time.Duration
	endpoints     []string
	key           string // never logged, never returned
}

// Serves reports whether the upstream serves an endpoint (Chat, Responses).
func (u *Upstream) Serves(endpoint string) bool { return slices.Contains(u.endpoints, endpoint) }

// OwnsFields reports whether the upstream takes the fields the gateway
// decides (store, safety_identifier, prompt_cache_key, service_tier).
func (u *Upstream) OwnsFields() bool { return u.Kind != Compatible }

// Authorize sets the upstream's credentials on an outgoing request.
func (u *Upstream) Authorize(h http.Header) {
	if u.Kind == Azure {
		h.Set("api-key", u.key)
		return
	}
	h.Set("Authorization", "Bearer "+u.key)
}

// Route is one upstream of a model: where to send it and under which name.
type Route struct {
	Upstream *Upstream
	// Model is the model's name at the upstream (Azure: the deployment).
	Model string
	// Price is what the upstream charges for it (the price table's unless
	// the route sets its own).
	Price quota.Price
}

// Table is the configured upstreams and each model's routes.
type Table struct {
	upstreams map[string]*Upstream
	models    map[string][]Route
	// prices price the models of the default table (every route of a model
	// at the price table's price).
	prices quota.Prices
	// single is the one upstream of a table without a file: every model
	// goes to it.
	single *Upstream
}

// Single is the table without SAS_UPSTREAMS_FILE: one upstream "openai"
// from OPENAI_API_KEY and OPENAI_BASE_URL serving every model, exactly as
// before upstream tables existed.
func Single(baseURL, key string, prices quota.Prices, headerTimeout time.Duration) *Table {
	u := &Upstream{Name: DefaultName, Kind: OpenAI, BaseURL: strings.TrimSuffix(baseURL, "/"),
		HeaderTimeout: cmp.Or(headerTimeout, DefaultHeaderTimeout), endpoints: []string{Chat, Responses}, key: key}
	return &Table{upstreams: map[string]*Upstream{u.Name: u}, prices: prices, single: u}
}

// Routes are model's upstreams, in the order to try them.
func (t *Table) Routes(model string) []Route {
	if t.single != nil {
		return []Route{{Upstream: t.single, Model: model, Price: t.prices[model]}}
	}
	return t.models[model]
}

// Upstreams are the table's upstreams, by name.
func (t *Table) Upstreams() []*Upstream {
	out := make([]*Upstream, 0, len(t.upstreams))
	for _, name := range t.Names() {
		out = append(out, t.upstreams[name])
	}
	return out
}

// Names are the upstreams' names, sorted.
func (t *Table) Names() []string { return slices.Sorted(maps.Keys(t.upstreams)) }

// file is SAS_UPSTREAMS_FILE.
type file struct {
	Upstreams map[string]struct {
		Kind          Kind     `json:"kind"`
		BaseURL       string   `json:"base_url"`
		KeyEnv        string   `json:"key_env"`
		Endpoints     []string `json:"endpoints"`
		HeaderTimeout string   `json:"header_timeout"`
	} `json:"upstreams"`
	Models map[string][]struct {
		Upstream string         `json:"upstream"`
		Model    string         `json:"model"`
		Price    jsontext.Value `json:"price"`
	} `json:"models"`
}

// Load reads the table of SAS_UPSTREAMS_FILE (path): every upstream's
// kind, https base URL (http only on loopback), key from the environment
// variable key_env, endpoints and header timeout; every model's routes.
// Every model of every plan needs a route and a price. The error names
// every problem at once, never a key's value.
func Load(path string, getenv func(string) string, plans quota.Plans, prices quota.Prices) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SAS_UPSTREAMS_FILE %s: %w", path, err)
	}
	t, err := Parse(data, getenv, plans, prices)
	if err != nil {
		return nil, fmt.Errorf("SAS_UPSTREAMS_FILE %s: %w", path, err)
	}
	return t, nil
}

// Parse reads a table in SAS_UPSTREAMS_FILE's format (see Load).
func Parse(data []byte, getenv func(string) string, plans quota.Plans, prices quota.Prices) (*Table, error) {
	t, problems := parse(data, getenv, plans, prices)
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return t, nil
}

func parse(data []byte, getenv func(string) string, plans quota.Plans, prices quota.Prices) (*Table, []string) {
	var f file
	if err := json.Unmarshal(data, &f, json.RejectUnknownMembers(true)); err != nil {
		return nil, []string{"not a valid upstream table: " + err.Error()}
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	t := &Table{upstreams: map[string]*Upstream{}, models: map[string][]Route{}, prices: prices}
	if len(f.Upstreams) == 0 {
		fail("no upstreams")
	}
	for name, c := range f.Upstreams {
		u := &Upstream{Name: name, Kind: c.Kind, BaseURL: strings.TrimSuffix(c.BaseURL, "/"), HeaderTimeout: DefaultHeaderTimeout, endpoints: c.Endpoints}
		switch c.Kind {
		case OpenAI, Azure:
			if len(u.endpoints) == 0 {
				u.endpoints = []string{Chat, Responses}
			}
		case Compatible:
			if len(u.endpoints) == 0 {
				u.endpoints = []string{Chat}
			}
		default:
			fail("upstream %s: kind must be openai, azure or openai-compatible", name)
		}
		for _, e := range u.endpoints {
			if e != Chat && e != Responses {
				fail("upstream %s: endpoints must be chat or responses (%q)", name, e)
			}
		}
		if err := checkBaseURL(u.BaseURL); err != nil {
			fail("upstream %s: base_url %v", name, err)
		}
		switch {
		case c.KeyEnv == "":
			fail("upstream %s: key_env is missing (the environment variable that holds its key)", name)
		case !envName.MatchString(c.KeyEnv):
			// Not quoted: an operator may have pasted the key itself here.
			fail("upstream %s: key_env must be the name of an environment variable (such as OPENAI_API_KEY), not the key", name)
		case strings.TrimSpace(getenv(c.KeyEnv)) == "":
			fail("upstream %s: the environment variable %s (key_env) is not set", name, c.KeyEnv)
		default:
			u.key = strings.TrimSpace(getenv(c.KeyEnv))
		}
		if c.HeaderTimeout != "" {
			d, err := time.ParseDuration(c.HeaderTimeout)
			if err != nil || d <= 0 {
				fail("upstream %s: header_timeout must be a positive Go duration such as 30s or 3m", name)
			}
			u.HeaderTimeout = d
		}
		t.upstreams[name] = u
	}
	for model, routes := range f.Models {
		if len(routes) == 0 {
			fail("model %s: no upstreams", model)
		}
		for i, r := range routes {
			u, ok := t.upstreams[r.Upstream]
			if !ok {
				fail("model %s: upstream %q (entry %d) is not in upstreams", model, r.Upstream, i+1)
				continue
			}
			rt := Route{Upstream: u, Model: cmp.Or(r.Model, model), Price: prices[model]}
			if len(r.Price) > 0 {
				p, errs := quota.ParsePrice([]byte(r.Price))
				for _, e := range errs {
					fail("model %s, upstream %s: price: %s", model, r.Upstream, e)
				}
				rt.Price = p
			} else if _, ok := prices[model]; !ok {
				fail("model %s: no price (in the price table, or a price on the route to %s)", model, r.Upstream)
			}
			t.models[model] = append(t.models[model], rt)
		}
	}
	for planName, plan := range plans {
		for _, m := range plan.Models {
			if _, ok := f.Models[m]; !ok {
				fail("model %s of plan %s has no upstream", m, planName)
			}
		}
	}
	return t, problems
}

// envName is an environment variable's name as operators write them;
// every provider's key has a lower-case letter or a dash.
var envName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// checkBaseURL accepts https URLs, and http on loopback (a local server).
func checkBaseURL(s string) error {
	switch err := secureurl.Check(s); {
	case s == "":
		return fmt.Errorf("is missing")
	case err == secureurl.ErrNotAbsolute:
		return fmt.Errorf("must be an https URL such as https://api.openai.com/v1")
	default:
		return err
	}
}

// ReservationPrice is the price a request of model reserves at: for each
// of input, cached input and output the highest among its routes, so that
// whichever upstream serves it, the charge is within the reservation.
func ReservationPrice(routes []Route) quota.Price {
	var p quota.Price
	for _, r := range routes {
		p.Input = max(p.Input, r.Price.Input)
		p.CachedInput = max(p.CachedInput, r.Price.CachedInput)
		p.Output = max(p.Output, r.Price.Output)
		p.EstimateMargin = max(p.EstimateMargin, r.Price.EstimateMargin)
	}
	return p
}
