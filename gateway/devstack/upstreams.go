package devstack

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-chi/chi/v5"

	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/upstream"
)

// DevUpstreams are the names of the dev stack's two upstreams: every model
// goes to dev-a first and fails over to dev-b.
var DevUpstreams = []string{"dev-a", "dev-b"}

// devUpstream is a dev model behind a switch that makes it fail, so that a
// failover can be watched on one machine.
type devUpstream struct {
	model    *devllm.Model
	failing  atomic.Int32 // the status it answers with; 0: it serves
	requests atomic.Int64
}

func (d *devUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.requests.Add(1)
	if s := int(d.failing.Load()); s != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s)
		fmt.Fprintf(w, `{"error":{"message":"this dev upstream was told to fail with %d","type":"server_error"}}`, s)
		return
	}
	d.model.Handler().ServeHTTP(w, r)
}

// devUpstreams serves the dev upstreams and their switches under
// /dev/upstreams:
//
//	GET  /dev/upstreams                          each one's state and request count
//	POST /dev/upstreams/{name}/fail[?status=503] make it answer that status (429, 500, 502, 503, 504)
//	POST /dev/upstreams/{name}/recover           make it serve again
//	     /dev/upstreams/{name}/v1/…              its OpenAI-compatible API
type devUpstreams map[string]*devUpstream

// newDevUpstreams makes the dev upstreams and the table that routes every
// model of plans to them, in order, with keys of their own (so that the
// proxy's real code path runs, keys and all).
func newDevUpstreams(baseURL string, plans quota.Plans, prices quota.Prices) (devUpstreams, *upstream.Table, error) {
	ups, keys := devUpstreams{}, map[string]string{}
	var defs, routes []string
	for _, name := range DevUpstreams {
		key := "sk-dev-" + rand.Text()
		env := "SAS_DEV_KEY_" + strings.ToUpper(strings.TrimPrefix(name, "dev-"))
		keys[env] = key
		ups[name] = &devUpstream{model: devllm.New(devllm.Options{APIKey: key})}
		defs = append(defs, fmt.Sprintf(`%q:{"kind":"openai","base_url":%q,"key_env":%q}`, name, baseURL+"/dev/upstreams/"+name+"/v1", env))
		routes = append(routes, fmt.Sprintf(`{"upstream":%q}`, name))
	}
	plans, prices = quota.OrBuiltIn(plans, prices)
	seen := map[string]bool{}
	var models []string
	for _, p := range plans {
		for _, m := range p.Models {
			if !seen[m] {
				seen[m] = true
				models = append(models, fmt.Sprintf(`%q:[%s]`, m, strings.Join(routes, ",")))
			}
		}
	}
	table := `{"upstreams":{` + strings.Join(defs, ",") + `},"models":{` + strings.Join(models, ",") + `}}`
	t, err := upstream.Parse([]byte(table), func(k string) string { return keys[k] }, plans, prices)
	return ups, t, err
}

// routes mounts the dev upstreams on r.
func (d devUpstreams) routes(r chi.Router) {
	r.Get("/dev/upstreams", func(w http.ResponseWriter, _ *http.Request) { d.state(w) })
	r.Post("/dev/upstreams/{name}/fail", func(w http.ResponseWriter, r *http.Request) {
		status := 503
		if s := r.URL.Query().Get("status"); s != "" {
			status, _ = strconv.Atoi(s)
		}
		u := d[chi.URLParam(r, "name")]
		if u == nil || !slices.Contains([]int{429, 500, 502, 503, 504}, status) {
			http.Error(w, "no such dev upstream, or a status other than 429, 500, 502, 503, 504", http.StatusBadRequest)
			return
		}
		u.failing.Store(int32(status))
		d.state(w)
	})
	r.Post("/dev/upstreams/{name}/recover", func(w http.ResponseWriter, r *http.Request) {
		u := d[chi.URLParam(r, "name")]
		if u == nil {
			http.Error(w, "no such dev upstream", http.StatusNotFound)
			return
		}
		u.failing.Store(0)
		d.state(w)
	})
	for name, u := range d {
		r.Mount("/dev/upstreams/"+name+"/v1", http.StripPrefix("/dev/upstreams/"+name, u))
	}
}

func (d devUpstreams) state(w http.ResponseWriter) {
	type state struct {
		Failing  *int  `json:"failing"` // the status it answers with; null: it serves
		Requests int64 `json:"requests"`
	}
	out := map[string]state{}
	for name, u := range d {
		s := state{Requests: u.requests.Load()}
		if f := int(u.failing.Load()); f != 0 {
			s.Failing = &f
		}
		out[name] = s
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
