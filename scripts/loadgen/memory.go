package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/signals-sorcery/sas/gateway/devllm"
)

// servedGateway is a `sas-gateway serve` process in front of an upstream,
// with limits no load reaches.
type servedGateway struct {
	cmd              *exec.Cmd
	base, metricsURL string
	stop             func()
}

// startGateway starts bin serve (GOMEMLIMIT as fly.toml sets it) and waits
// until it is healthy. With asDeployed it logs at fly.toml's level (info:
// a line per request and per completion, into a file as Fly's log pipe
// takes them); otherwise warnings only, to this program's stderr.
func startGateway(ctx context.Context, bin, dbURL, redisURL, issuer, upstream, key string, client *http.Client, asDeployed bool) (*servedGateway, error) {
	dir, err := os.MkdirTemp("", "sas-bench")
	if err != nil {
		return nil, err
	}
	plans := filepath.Join(dir, "plans.json")
	plan := `{"requests_per_minute":1000000000,"requests_per_day":1000000000,"tokens_per_day":1000000000000,"max_tokens":1024,"concurrent_requests":8,"models":["gpt-4o-mini"]}`
	if err := os.WriteFile(plans, []byte(`{"free":`+plan+`,"pro":`+plan+`}`), 0o600); err != nil {
		return nil, err
	}
	port, metricsPort, err := freePorts()
	if err != nil {
		return nil, err
	}
	level := "warn"
	if asDeployed {
		level = "info"
	}
	cmd := exec.CommandContext(ctx, bin, "serve")
	cmd.Env = []string{
		"HOST=127.0.0.1", "PORT=" + port, "METRICS_ADDR=127.0.0.1:" + metricsPort, "LOG_LEVEL=" + level, "GOMEMLIMIT=200MiB",
		"CLERK_ISSUER=" + issuer, "CLERK_AUDIENCE=sas-api", "DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL,
		"OPENAI_API_KEY=" + key, "OPENAI_BASE_URL=" + upstream + "/v1", "SAS_PLANS_FILE=" + plans,
	}
	cmd.Stderr = os.Stderr
	if asDeployed {
		logs, err := os.Create(filepath.Join(dir, "gateway.log"))
		if err != nil {
			return nil, err
		}
		defer logs.Close() // the child has its own descriptor
		cmd.Stderr = logs
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &servedGateway{cmd: cmd, base: "http://127.0.0.1:" + port, metricsURL: "http://127.0.0.1:" + metricsPort + "/metrics",
		stop: func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = os.RemoveAll(dir) }}
	for i := 0; ; i++ {
		if resp, err := client.Get(g.base + "/healthz"); err == nil {
			resp.Body.Close()
			return g, nil
		}
		if i > 100 {
			g.stop()
			return nil, fmt.Errorf("%s did not start on %s", bin, g.base)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memoryBench runs `sas-gateway serve` (the binary at bin) as its own
// process in front of the dev model, loads it with non-streamed completions
// at full speed for d, and samples the process's resident memory (/proc)
// and Go heap (its /metrics) every interval: the figures must level off and
// stay under half the machine.
func memoryBench(ctx context.Context, bin, dbURL, redisURL, issuer string, client *http.Client, tokens []string, o options, d time.Duration) error {
	const key = "sk-bench"
	model := devllm.New(devllm.Options{APIKey: key, ChunkDelay: -1})
	upstream := serve(model.Handler())
	g, err := startGateway(ctx, bin, dbURL, redisURL, issuer, upstream, key, client, false)
	if err != nil {
		return err
	}
	defer g.stop()
	cmd, base, metricsURL := g.cmd, g.base, g.metricsURL
	t := target{url: base + "/v1/chat/completions", body: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a short prompt for the benchmark"}]}`}
	sample := func() (rss, heap float64) {
		rss = procRSS(cmd.Process.Pid)
		heap = scrape(client, metricsURL, "go_memstats_heap_inuse_bytes")
		return rss / (1 << 20), heap / (1 << 20)
	}
	rss0, heap0 := sample()
	fmt.Printf("\nmemory of `sas-gateway serve` (own process, GOMEMLIMIT=200MiB, fly.toml's machine: 256 MB) under full load, non-streamed completions, concurrency %d:\n\n", o.concurrency)
	fmt.Println("| elapsed | requests so far | req/s in the interval | RSS MiB | Go heap in use MiB |")
	fmt.Println("|---:|---:|---:|---:|---:|")
	fmt.Printf("| 0 s (idle) | 0 | – | %.1f | %.1f |\n", rss0, heap0)
	var total atomic.Int64
	budget := &atomic.Int64{}
	budget.Store(1 << 40) // bounded by time here
	interval := d / 8
	peak := 0.0
	for i := 1; i <= 8; i++ {
		r := t.measure(client, tokens, o.concurrency, interval, budget)
		n := int64(r.rps * interval.Seconds())
		total.Add(n)
		rss, heap := sample()
		peak = max(peak, rss)
		fmt.Printf("| %v | %d | %.0f | %.1f | %.1f |\n", time.Duration(i)*interval, total.Load(), r.rps, rss, heap)
	}
	fmt.Printf("\npeak RSS %.1f MiB = %.0f%% of the 256 MB machine (target: under 50%%)\n", peak, 100*peak*(1<<20)/256e6)
	return nil
}

// procRSS is the resident set of pid in bytes (Linux).
func procRSS(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb * 1024
		}
	}
	return 0
}

// scrape reads one unlabelled gauge from a Prometheus text endpoint.
func scrape(client *http.Client, url, name string) float64 {
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), name+" "); ok {
			v, _ := strconv.ParseFloat(rest, 64)
			return v
		}
	}
	return 0
}

func freePorts() (string, string, error) {
	var ports []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		defer ln.Close()
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		ports = append(ports, p)
	}
	return ports[0], ports[1], nil
}

// scrapeHandler reads a Prometheus handler's unlabelled series.
func scrapeHandler(h http.Handler) map[string]float64 {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out := map[string]float64{}
	s := bufio.NewScanner(rec.Body)
	for s.Scan() {
		name, v, ok := strings.Cut(s.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		out[name], _ = strconv.ParseFloat(v, 64)
	}
	return out
}

// abBench compares two builds of `sas-gateway serve` — this one (bin) and
// a previous one (baseline) — in front of the same dev model, with a bare
// reverse proxy and the model called directly, in alternating rounds of one
// run: the one fair way on a noisy machine to say whether a change made the
// proxy slower.
func abBench(ctx context.Context, bin, baseline, dbURL, redisURL, issuer string, client *http.Client, tokens []string, o options, budget *atomic.Int64) error {
	const key = "sk-bench"
	model := devllm.New(devllm.Options{APIKey: key, ChunkDelay: -1})
	upstream := serve(model.Handler())
	du, _ := url.Parse(upstream)
	plain := httputil.NewSingleHostReverseProxy(du)
	plain.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	var gws []*servedGateway
	for _, b := range []string{baseline, bin} {
		g, err := startGateway(ctx, b, dbURL, redisURL, issuer, upstream, key, client, false)
		if err != nil {
			return err
		}
		defer g.stop()
		gws = append(gws, g)
	}
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a short prompt for the benchmark"}]}`
	targets := []target{
		{name: "dev model called directly (baseline)", url: upstream + "/v1/chat/completions", body: body, key: key},
		{name: "bare httputil.ReverseProxy", url: serve(plain) + "/v1/chat/completions", body: body, key: key},
		{name: "previous sas-gateway serve (" + filepath.Base(baseline) + ")", url: gws[0].base + "/v1/chat/completions", body: body},
		{name: "this sas-gateway serve", url: gws[1].base + "/v1/chat/completions", body: body},
	}
	results := measureAll(targets, client, tokens, o, budget)
	fmt.Printf("\nA/B: two builds of `sas-gateway serve`, each its own process, non-streamed completions, concurrency %d, %d alternating rounds:\n\n", o.concurrency, o.rounds)
	printTable(targets, results)
	fmt.Printf("\nper-round ratios, median (min–max): this / previous %s; previous / bare reverse proxy %s; this / bare reverse proxy %s\n",
		roundRatios(results[3], results[2]), roundRatios(results[2], results[1]), roundRatios(results[3], results[1]))
	return nil
}
