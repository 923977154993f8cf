package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devstack"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/upstream"
	"github.com/signals-sorcery/sas/shared/wire"
)

// The dashboard and the alert rules, as shipped.
const (
	dashboardFile = "../../deploy/grafana/sas-gateway.json"
	rulesFile     = "../../deploy/prometheus/alerts.yml"
	rendererDir   = "../../deploy/grafana/render"
)

// TestDashboardAndRulesOnRealPrometheus runs the whole dev stack on the
// real PostgreSQL and Redis, a real Prometheus (Debian's) scraping its
// metrics every second and evaluating deploy/prometheus/alerts.yml, and a
// short mixed load: successes streamed and not on both APIs, free users
// refused by their limits, missing and forged tokens, a failover (dev-a
// failing), every upstream out (502s, then 503 upstream_unavailable).
// Then every query of every dashboard panel must be valid and return
// data (the error counters a healthy load leaves alone are exported at 0:
// they have data too), every alert rule must evaluate
// without error, and the renderer must draw the dashboard from that
// Prometheus (SAS_DASHBOARD_PNG, an absolute path, keeps the picture; SAS_DASHBOARD_LOAD
// makes the load longer, e.g. 2m for the docs' picture).
func TestDashboardAndRulesOnRealPrometheus(t *testing.T) {
	loadFor := 20 * time.Second
	if v := os.Getenv("SAS_DASHBOARD_LOAD"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SAS_DASHBOARD_LOAD: %v", err)
		}
		loadFor = d
	}
	db := testenv.NewDatabase(t)
	cfg, err := config.LoadDev(func(k string) string {
		return map[string]string{"DATABASE_URL": db.URL, "REDIS_URL": testenv.RedisURL(t),
			"SAS_USAGE_STREAM": "sas:usage:dashboard:" + testenv.UUID()}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	stack, err := devstack.New(context.Background(), devstack.Options{Config: cfg, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = stack.Handler
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		stack.Close()
	})
	metricsSrv := httptest.NewServer(stack.Gateway.Metrics.Handler())
	t.Cleanup(metricsSrv.Close)

	prom := startPrometheus(t, strings.TrimPrefix(metricsSrv.URL, "http://"))
	start := time.Now()
	runLoad(t, stack, base, loadFor)
	// Two more scrapes and rule evaluations after the load's last request
	// (every second): one may have begun before it.
	loaded := time.Now()
	testenv.WaitFor(t, "a scrape and a rule evaluation a second after the load", 15*time.Second, func() bool {
		return prom.caughtUp(t, loaded.Add(time.Second))
	})
	end := time.Now()

	t.Run("panels", func(t *testing.T) {
		var d struct {
			Panels []struct {
				Type, Title string
				Targets     []struct{ Expr string }
			}
		}
		b, err := os.ReadFile(dashboardFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		panels := 0
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			panels++
			data := false
			for _, q := range p.Targets {
				expr := strings.NewReplacer("$__rate_interval", "10s", "$app", "sas").Replace(q.Expr)
				n, err := prom.queryRange(expr, start, end, time.Second)
				if err != nil {
					t.Errorf("panel %q: %s: %v", p.Title, expr, err)
				}
				data = data || n > 0
			}
			if !data {
				t.Errorf("panel %q: no data after the load", p.Title)
			}
		}
		if panels < 20 {
			t.Errorf("%d panels read from %s", panels, dashboardFile)
		}
	})

	t.Run("rules", func(t *testing.T) {
		rules := prom.rules(t)
		if len(rules) < 9 {
			t.Fatalf("Prometheus loaded %d alert rules from %s", len(rules), rulesFile)
		}
		for _, r := range rules {
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("alert %s: health %q: %s", r.Name, r.Health, r.LastError)
			}
		}
	})

	t.Run("render", func(t *testing.T) {
		out := os.Getenv("SAS_DASHBOARD_PNG")
		if out == "" {
			out = filepath.Join(t.TempDir(), "dashboard.png")
		} else if out, err = filepath.Abs(out); err != nil {
			t.Fatal(err)
		}
		dash, _ := filepath.Abs(dashboardFile)
		cmd := exec.Command("go", "run", ".", "-dashboard", dash, "-prometheus", prom.url,
			"-start", start.Format(time.RFC3339), "-end", end.Format(time.RFC3339), "-step", "1s",
			"-rate-interval", "10s", "-vars", "app=sas", "-out", out)
		cmd.Dir = rendererDir
		report, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("render: %v\n%s", err, report)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.DecodeConfig(f)
		if err != nil || img.Width < 1000 || img.Height < 1000 {
			t.Errorf("%s: %dx%d, %v", out, img.Width, img.Height, err)
		}
		t.Logf("renderer:\n%s", report)
	})
}

// runLoad drives the mixed load for d, then makes every upstream fail
// until their circuits open.
func runLoad(t *testing.T, stack *devstack.Stack, base string, d time.Duration) {
	t.Helper()
	ctx := context.Background()
	token := func(user string) string {
		tok, err := stack.IdP.Sign(stack.IdP.Claims(user, config.DevAudience, user+"@example.com", user))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	call := func(method, path, tok, body string) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	bodies := []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a chord progression"}]}`},
		{"/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"a melody"}]}`},
		{"/v1/responses", `{"model":"gpt-4o-mini","input":"a drum pattern"}`},
		{"/v1/responses", `{"model":"gpt-4o-mini","input":"a bass line","stream":true}`},
	}
	// Pro users succeed (60 a minute each); the free ones run into their
	// limits (10 a minute, 2 at once).
	var pros []string
	for i := range 4 {
		user := fmt.Sprintf("user_dash_pro_%d_%s", i, testenv.UUID()[:8])
		tok := token(user)
		if s := call("GET", "/v1/me", tok, ""); s != http.StatusOK {
			t.Fatalf("/v1/me: %d", s)
		}
		if _, err := stack.Gateway.Store.(*postgres.DB).SetPlan(ctx, user, wire.PlanPro); err != nil {
			t.Fatal(err)
		}
		stack.Gateway.Users.Forget(user)
		pros = append(pros, tok)
	}
	free := token("user_dash_free_" + testenv.UUID()[:8])

	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w, tok := range pros {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i++ {
				b := bodies[i%len(bodies)]
				call("POST", b.path, tok, b.body)
				call("GET", []string{"/v1/me", "/v1/limits", "/v1/usage", "/v1/models"}[i%4], tok, "")
				time.Sleep(time.Second) // under the pro plan's 60 a minute
			}
		})
	}
	wg.Go(func() {
		for i := 0; time.Now().Before(deadline); i++ {
			call("POST", bodies[0].path, free, bodies[0].body) // refused after 10 a minute
			call("GET", "/v1/me", "", "")                      // missing token
			call("GET", "/v1/me", "not.a.token", "")           // malformed
			call("POST", "/v1/chat/completions", pros[0], `{"model":"gpt-4o-mini"}`)
			time.Sleep(500 * time.Millisecond)
		}
	})
	// A third of the way in, dev-a fails for a while: the requests fail
	// over to dev-b.
	time.Sleep(d / 3)
	call("POST", "/dev/upstreams/dev-a/fail?status=503", "", "")
	time.Sleep(d / 4)
	call("POST", "/dev/upstreams/dev-a/recover", "", "")
	wg.Wait()
	// Every upstream out: 502s until both circuits open, then 503
	// upstream_unavailable.
	call("POST", "/dev/upstreams/dev-a/fail?status=500", "", "")
	call("POST", "/dev/upstreams/dev-b/fail?status=500", "", "")
	for range upstream.TripAfter + 2 {
		call("POST", bodies[0].path, pros[0], bodies[0].body)
	}
	call("POST", "/dev/upstreams/dev-a/recover", "", "")
	call("POST", "/dev/upstreams/dev-b/recover", "", "")
}

// prometheus is a Prometheus server started for one test.
type prometheus struct {
	t   *testing.T
	url string
}

// startPrometheus starts Debian's prometheus on a free loopback port,
// scraping target every second (with app="sas", as Fly labels series)
// and evaluating the shipped alert rules every second; it is killed
// when t ends.
func startPrometheus(t *testing.T, target string) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed: scripts/test installs it (apt-get install prometheus)")
	}
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: sas-gateway
    static_configs:
      - targets: [%q]
        labels: {app: sas}
`, rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		addr := freeAddr(t)
		logs := &testenv.SyncBuffer{}
		cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr, "--log.level=warn")
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		p := &prometheus{t: t, url: "http://" + addr}
		for range 200 {
			select {
			case <-exited:
			default:
				if resp, err := http.Get(p.url + "/-/ready"); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						t.Cleanup(func() {
							_ = cmd.Process.Kill()
							<-exited
							if t.Failed() {
								t.Logf("prometheus log:\n%s", logs)
							}
						})
						return p
					}
				}
				time.Sleep(50 * time.Millisecond)
				continue
			}
			break
		}
		_ = cmd.Process.Kill()
		<-exited
		t.Logf("prometheus did not start on %s (retrying):\n%s", addr, logs)
	}
	t.Fatal("prometheus did not start")
	return nil
}

// freeAddr returns a loopback address no one listens on right now.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// queryRange runs a range query and returns the number of its series
// with at least one number (NaN is no data: a quantile of nothing).
func (p *prometheus) queryRange(expr string, start, end time.Time, step time.Duration) (int, error) {
	q := url.Values{"query": {expr}, "start": {strconv.FormatInt(start.Unix(), 10)},
		"end": {strconv.FormatInt(end.Unix(), 10)}, "step": {step.String()}}
	var r struct {
		Status, Error string
		Data          struct {
			Result []struct {
				Values [][2]any
			}
		}
	}
	if err := p.get("/api/v1/query_range?"+q.Encode(), &r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("prometheus: %s", r.Error)
	}
	n := 0
	for _, s := range r.Data.Result {
		for _, v := range s.Values {
			if f, err := strconv.ParseFloat(fmt.Sprint(v[1]), 64); err == nil && !math.IsNaN(f) {
				n++
				break
			}
		}
	}
	return n, nil
}

// caughtUp reports whether every target was scraped and every rule group
// evaluated after t0.
func (p *prometheus) caughtUp(t *testing.T, t0 time.Time) bool {
	t.Helper()
	var targets struct {
		Data struct {
			ActiveTargets []struct{ LastScrape time.Time }
		}
	}
	var rules struct {
		Data struct {
			Groups []struct{ LastEvaluation time.Time }
		}
	}
	if err := p.get("/api/v1/targets", &targets); err != nil {
		t.Fatal(err)
	}
	if err := p.get("/api/v1/rules", &rules); err != nil {
		t.Fatal(err)
	}
	if len(targets.Data.ActiveTargets) == 0 || len(rules.Data.Groups) == 0 {
		return false
	}
	for _, x := range targets.Data.ActiveTargets {
		if x.LastScrape.Before(t0) {
			return false
		}
	}
	for _, g := range rules.Data.Groups {
		if g.LastEvaluation.Before(t0) {
			return false
		}
	}
	return true
}

type rule struct {
	Name, Health, LastError string
}

// rules returns the alert rules Prometheus loaded and evaluated.
func (p *prometheus) rules(t *testing.T) []rule {
	t.Helper()
	var r struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					rule
					Type string
				}
			}
		}
	}
	if err := p.get("/api/v1/rules", &r); err != nil {
		t.Fatal(err)
	}
	var out []rule
	for _, g := range r.Data.Groups {
		for _, x := range g.Rules {
			if x.Type == "alerting" {
				out = append(out, x.rule)
			}
		}
	}
	return out
}

func (p *prometheus) get(path string, v any) error {
	resp, err := http.Get(p.url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%d %s: %w", resp.StatusCode, b, err)
	}
	return nil
}
