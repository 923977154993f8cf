// Command loadgen is scripts/bench's load generator. It measures GET /v1/me
// of a gateway assembled exactly as `sas-gateway serve` assembles it (real
// PostgreSQL and Redis, a dev issuer standing in for Clerk) beside a bare
// chi handler that returns constant JSON, on 127.0.0.1 in the same run, and
// prints requests/s, p50 and p99 of each and their ratio. Then it measures
// non-streamed chat completions through the gateway against the same dev
// model called directly, and the time to a stream's first byte both ways.
//
// Every run is bounded: -duration per measurement and -max-requests in all.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devidp"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/upstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type options struct {
	duration    time.Duration
	warmup      time.Duration
	concurrency int
	users       int
	rounds      int
	maxRequests int64
	// profile, when set, receives a CPU profile of `sas-gateway serve`
	// taken during its first measured round (the budget section).
	profile string
}

func run() error {
	var o options
	flag.DurationVar(&o.duration, "duration", 4*time.Second, "measuring time per target and round")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "warm-up time per target")
	flag.IntVar(&o.concurrency, "c", 32, "concurrent connections")
	flag.IntVar(&o.users, "users", 1000, "distinct users (tokens) the requests rotate through")
	flag.IntVar(&o.rounds, "rounds", 2, "alternating rounds per target")
	flag.Int64Var(&o.maxRequests, "max-requests", 2_000_000, "stop after this many requests in all")
	flag.StringVar(&o.profile, "gateway-profile", "", "write a CPU profile of `sas-gateway serve` under load (budget section) to this file")
	only := flag.String("only", "", "run one section only: me, proxy (with failover), failover, usage, memory, budget or ab")
	baselineBin := flag.String("baseline-bin", "", "a previous sas-gateway build for the A/B section (-only ab)")
	gatewayBin := flag.String("gateway-bin", "", "sas-gateway binary for the memory section (skipped without it)")
	memDuration := flag.Duration("memory-duration", 2*time.Minute, "length of the sustained-load memory run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (servers and load) to this file")
	bareProxy := flag.String("serve-bare-proxy", "", "internal: serve a bare reverse proxy to this upstream (the budget section's own process)")
	flag.Parse()
	if *bareProxy != "" {
		return serveBareProxy(*bareProxy)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	adminURL, redisURL := os.Getenv("TEST_DATABASE_URL"), os.Getenv("TEST_REDIS_URL")
	if adminURL == "" || redisURL == "" {
		return errors.New("TEST_DATABASE_URL and TEST_REDIS_URL are not set: run scripts/bench")
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	issURL, iss, err := startIssuer()
	if err != nil {
		return err
	}
	dbURL, drop, err := newDatabase(ctx, adminURL)
	if err != nil {
		return err
	}
	defer drop()

	cfg := config.Config{Issuer: issURL, Audiences: []string{"sas-api"}, DatabaseURL: dbURL, RedisURL: redisURL}
	targets := []target{{name: "bare chi handler (baseline)", url: serve(bare())}}
	for _, v := range []struct {
		name string
		deps app.Deps
	}{
		{"GET /v1/me as deployed (token + user caches)", app.Deps{}},
		{"GET /v1/me, no token cache (signature check every request)", app.Deps{NoTokenCache: true}},
		{"GET /v1/me, no caches (signature + Postgres every request)", app.Deps{NoTokenCache: true, NoUserCache: true}},
	} {
		gw, err := app.New(ctx, cfg, log, v.deps)
		if err != nil {
			return err
		}
		defer gw.Close()
		targets = append(targets, target{name: v.name, url: serve(gw.Handler) + "/v1/me"})
	}
	tokens := make([]string, o.users)
	for i := range tokens {
		c := iss.Claims(fmt.Sprintf("user_bench_%05d", i), "sas-api", fmt.Sprintf("u%d@example.com", i), fmt.Sprintf("User %d", i))
		if tokens[i], err = iss.Sign(c); err != nil {
			return err
		}
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency, MaxConnsPerHost: o.concurrency}}
	var budget atomic.Int64
	budget.Store(o.maxRequests)
	memory := func() error {
		if *gatewayBin == "" {
			fmt.Println("\n(memory section skipped: no -gateway-bin)")
			return nil
		}
		return memoryBench(ctx, *gatewayBin, dbURL, redisURL, issURL, client, tokens, o, *memDuration)
	}
	switch *only {
	case "proxy":
		return proxyBench(ctx, o, cfg, log, client, tokens, &budget)
	case "failover":
		const key = "sk-bench"
		direct := serve(devllm.New(devllm.Options{APIKey: key, ChunkDelay: -1}).Handler())
		cfg.Plans = benchPlans()
		return failoverBench(ctx, cfg, log, client, tokens, direct, key)
	case "memory":
		return memory()
	case "usage":
		return usageBench(ctx, o, cfg, log, client, tokens, &budget)
	case "budget":
		if *gatewayBin == "" {
			return errors.New("-only budget needs -gateway-bin")
		}
		return budgetBench(ctx, *gatewayBin, dbURL, redisURL, issURL, client, tokens, o, &budget)
	case "ab":
		if *gatewayBin == "" || *baselineBin == "" {
			return errors.New("-only ab needs -gateway-bin and -baseline-bin")
		}
		return abBench(ctx, *gatewayBin, *baselineBin, dbURL, redisURL, issURL, client, tokens, o, &budget)
	}
	results := measureAll(targets, client, tokens, o, &budget)
	fmt.Printf("loadgen: concurrency %d, %d users, %d rounds of %v per target, GOMAXPROCS %d, on 127.0.0.1\n\n",
		o.concurrency, o.users, o.rounds, o.duration, runtimeProcs())
	printTable(targets, results)
	if budget.Load() <= 0 {
		fmt.Println("\n(stopped early: -max-requests reached)")
	}
	if *only == "me" {
		return nil
	}
	if err := proxyBench(ctx, o, cfg, log, client, tokens, &budget); err != nil {
		return err
	}
	if err := usageBench(ctx, o, cfg, log, client, tokens, &budget); err != nil {
		return err
	}
	if *gatewayBin != "" {
		if err := budgetBench(ctx, *gatewayBin, dbURL, redisURL, issURL, client, tokens, o, &budget); err != nil {
			return err
		}
	}
	return memory()
}

// proxyBench compares non-streamed completions through the gateway with
// the same dev model called directly, and the time to the first byte of a
// stream both ways.
func proxyBench(ctx context.Context, o options, cfg config.Config, log *slog.Logger, client *http.Client, tokens []string, budget *atomic.Int64) error {
	const key = "sk-bench"
	model := devllm.New(devllm.Options{APIKey: key, ChunkDelay: -1})
	direct := serve(model.Handler())
	cfg.OpenAIAPIKey, cfg.OpenAIBaseURL, cfg.Plans = key, direct+"/v1", benchPlans()
	gw, err := app.New(ctx, cfg, log, app.Deps{})
	if err != nil {
		return err
	}
	defer gw.Close()
	viaGateway := serve(gw.Handler)
	// The same gateway without the usage ledger: what recording every
	// request's usage costs.
	noLedger, err := app.New(ctx, cfg, log, app.Deps{NoLedger: true})
	if err != nil {
		return err
	}
	defer noLedger.Close()
	viaNoLedger := serve(noLedger.Handler)
	// A second baseline: the cheapest possible proxy (httputil.ReverseProxy,
	// no auth, no quota) — what one extra HTTP hop costs on this machine.
	du, _ := url.Parse(direct)
	plain := httputil.NewSingleHostReverseProxy(du)
	plain.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	viaPlain := serve(plain)
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a short prompt for the benchmark"}]}`
	targets := []target{
		{name: "dev model called directly (baseline)", url: direct + "/v1/chat/completions", body: body, key: key},
		{name: "same model through a bare httputil.ReverseProxy (one extra hop, nothing else)", url: viaPlain + "/v1/chat/completions", body: body, key: key},
		{name: "same model through the gateway, usage ledger off", url: viaNoLedger + "/v1/chat/completions", body: body},
		{name: "same model through the gateway as deployed (auth, reservation, proxy, settlement, ledger)", url: viaGateway + "/v1/chat/completions", body: body},
		{name: "the same request as a Responses API call through the gateway as deployed", url: viaGateway + "/v1/responses",
			body: `{"model":"gpt-4o-mini","input":"a short prompt for the benchmark"}`},
	}
	results := measureAll(targets, client, tokens, o, budget)
	fmt.Printf("\nnon-streamed POST /v1/chat/completions (and /v1/responses), concurrency %d:\n\n", o.concurrency)
	printTable(targets, results)
	// Rounds alternate the targets, so a round's ratio compares two runs a
	// few seconds apart: the median of those is steadier on a noisy machine
	// than a ratio of bests.
	fmt.Printf("\nper-round ratios over %d rounds, median (min–max): ledger on / ledger off %s; ledger off / bare reverse proxy %s; as deployed / bare reverse proxy %s; responses / chat completions, both as deployed %s\n",
		o.rounds, roundRatios(results[3], results[2]), roundRatios(results[2], results[1]), roundRatios(results[3], results[1]), roundRatios(results[4], results[3]))
	time.Sleep(2 * time.Second) // the drain catches up
	m := scrapeHandler(gw.Metrics.Handler())
	if batches := m["sas_usage_drain_latency_seconds_count"]; batches > 0 {
		fmt.Printf("usage ledger at load: %.0f events in %.0f inserts, %.1f events per Postgres round trip; backlog after the run %.0f\n",
			m["sas_usage_events_recorded_total"], batches, m["sas_usage_events_recorded_total"]/batches, m["sas_usage_stream_backlog"])
	}

	// Time to first byte of a stream, one request at a time, alternating.
	stream := `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"a short prompt"}]}`
	st := []target{{url: direct + "/v1/chat/completions", body: stream, key: key}, {url: viaGateway + "/v1/chat/completions", body: stream}}
	var lat [2][]time.Duration
	for i := range 600 {
		for j, t := range st {
			d, err := firstByte(client, t, tokens[i%len(tokens)])
			if err != nil {
				return err
			}
			if i >= 100 { // the first 100 warm up
				lat[j] = append(lat[j], d)
			}
		}
	}
	for j := range lat {
		slices.Sort(lat[j])
	}
	p50 := func(l []time.Duration) time.Duration { return l[len(l)/2] }
	fmt.Printf("\nstreamed completion, time to first byte, 500 sequential requests each (after 100 warm-up):\n\n")
	fmt.Println("| path | p50 ms | p99 ms |")
	fmt.Println("|---|---:|---:|")
	fmt.Printf("| dev model directly (baseline) | %.3f | %.3f |\n", ms(p50(lat[0])), ms(lat[0][len(lat[0])*99/100]))
	fmt.Printf("| through the gateway | %.3f | %.3f |\n", ms(p50(lat[1])), ms(lat[1][len(lat[1])*99/100]))
	fmt.Printf("\nadded time to first byte at p50: %.3f ms\n", ms(p50(lat[1])-p50(lat[0])))
	return failoverBench(ctx, cfg, log, client, tokens, direct, key)
}

// benchPlans are the built-in plans with limits out of the way of a load.
func benchPlans() quota.Plans {
	plans := quota.BuiltIn()
	free := plans["free"]
	free.RequestsPerMinute, free.RequestsPerDay, free.TokensPerDay = 1<<40, 1<<40, 1<<50
	free.ConcurrentRequests, free.USDPerDay, free.USDPerMonth = 0, 0, 0
	plans["free"] = free
	return plans
}

// failoverBench is what a failover costs: non-streamed completions, one at
// a time, through a gateway whose first upstream refuses every connection
// (so each is served by the second), beside the same requests through a
// gateway with the one upstream. After 5 refusals the first upstream's
// circuit opens and it is skipped, so each failing gateway serves only its
// first 4 requests here: fresh gateways, 4 requests each, alternating with
// the baseline's.
func failoverBench(ctx context.Context, cfg config.Config, log *slog.Logger, client *http.Client, tokens []string, direct, key string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	refused := "http://" + ln.Addr().String() + "/v1"
	ln.Close()
	table := func(urls ...string) (*upstream.Table, error) {
		var defs, routes []string
		for i, u := range urls {
			defs = append(defs, fmt.Sprintf(`"u%d":{"kind":"openai","base_url":%q,"key_env":"KEY"}`, i, u))
			routes = append(routes, fmt.Sprintf(`{"upstream":"u%d"}`, i))
		}
		r := "[" + strings.Join(routes, ",") + "]"
		return upstream.Parse([]byte(`{"upstreams":{`+strings.Join(defs, ",")+`},"models":{"gpt-4o-mini":`+r+`,"gpt-4o":`+r+`}}`),
			func(string) string { return key }, cfg.Plans, quota.BuiltInPrices())
	}
	gateway := func(urls ...string) (string, func(), error) {
		t, err := table(urls...)
		if err != nil {
			return "", nil, err
		}
		c := cfg
		c.Upstreams = t
		gw, err := app.New(ctx, c, log, app.Deps{NoLedger: true})
		if err != nil {
			return "", nil, err
		}
		return serve(gw.Handler), gw.Close, nil
	}
	one, closeOne, err := gateway(direct + "/v1")
	if err != nil {
		return err
	}
	defer closeOne()
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a short prompt for the benchmark"}]}`
	call := func(base string, tok string) (time.Duration, error) {
		t := target{url: base + "/v1/chat/completions", body: body}
		t0 := time.Now()
		resp, err := client.Do(t.request(tok))
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(t0), nil
	}
	for range 20 { // warm-up
		if _, err := call(one, tokens[0]); err != nil {
			return err
		}
	}
	var lat [2][]time.Duration
	for g := range 60 {
		failing, closeFailing, err := gateway(refused, direct+"/v1")
		if err != nil {
			return err
		}
		for i := range 4 { // both gateways' token and user caches warmed
			for _, base := range []string{one, failing} {
				t := target{url: base + "/v1/me"}
				if resp, err := client.Do(t.request(tokens[(g*4+i)%len(tokens)])); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
		for i := range 4 {
			tok := tokens[(g*4+i)%len(tokens)]
			d0, err := call(one, tok)
			if err != nil {
				return err
			}
			d1, err := call(failing, tok)
			if err != nil {
				closeFailing()
				return err
			}
			lat[0], lat[1] = append(lat[0], d0), append(lat[1], d1)
		}
		closeFailing()
	}
	for j := range lat {
		slices.Sort(lat[j])
	}
	p50 := func(l []time.Duration) time.Duration { return l[len(l)/2] }
	fmt.Printf("\nfailover: non-streamed completions one at a time, %d each, alternating:\n\n", len(lat[0]))
	fmt.Println("| path | p50 ms | p99 ms |")
	fmt.Println("|---|---:|---:|")
	fmt.Printf("| one upstream, served at the first try (baseline) | %.3f | %.3f |\n", ms(p50(lat[0])), ms(lat[0][len(lat[0])*99/100]))
	fmt.Printf("| first upstream refuses the connection, the second serves | %.3f | %.3f |\n", ms(p50(lat[1])), ms(lat[1][len(lat[1])*99/100]))
	fmt.Printf("\nadded by one failover at p50: %.3f ms\n", ms(p50(lat[1])-p50(lat[0])))
	return nil
}

type target struct {
	name string
	url  string
	body string // POST body; GET when empty
	// key, when set, is the bearer for every request instead of the users'
	// tokens (the direct calls to the model).
	key string
}

func (t target) request(tok string) *http.Request {
	method, body := http.MethodGet, io.Reader(nil)
	if t.body != "" {
		method, body = http.MethodPost, strings.NewReader(t.body)
	}
	req, _ := http.NewRequest(method, t.url, body)
	if t.key != "" {
		tok = t.key
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if t.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

type result struct {
	rps      float64
	n        int // requests answered 200
	p50, p99 time.Duration
	errors   int64
}

// best picks the round with the highest throughput: on a shared, noisy
// 2-core machine the slower rounds measure the neighbours, not the code.
func best(rs []result) result {
	return slices.MaxFunc(rs, func(a, b result) int { return int(a.rps - b.rps) })
}

func (t target) measure(client *http.Client, tokens []string, workers int, d time.Duration, budget *atomic.Int64) result {
	var (
		mu     sync.Mutex
		lat    []time.Duration
		errs   atomic.Int64
		wg     sync.WaitGroup
		next   atomic.Int64
		cutoff = time.Now().Add(d)
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(cutoff) && budget.Add(-1) >= 0 {
				req := t.request(tokens[int(next.Add(1))%len(tokens)])
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs.Add(1)
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	r := result{errors: errs.Load()}
	if n := len(lat); n > 0 {
		r.n = n
		r.rps = float64(n) / elapsed.Seconds()
		r.p50 = lat[n*50/100]
		r.p99 = lat[n*99/100]
	}
	return r
}

// bare is the baseline: chi, one route, constant JSON of the same shape.
func bare() http.Handler {
	r := chi.NewRouter()
	body := []byte(`{"id":"user_abc123","email":"steve@example.com","username":"Steve","plan":"free","status":"active"}` + "\n")
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	return r
}

func serve(h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = http.Serve(ln, h) }()
	return "http://" + ln.Addr().String()
}

func startIssuer() (string, *devidp.Provider, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	url := "http://" + ln.Addr().String()
	p, err := devidp.New(devidp.Options{Issuer: url})
	if err != nil {
		return "", nil, err
	}
	go func() { _ = http.Serve(ln, p.Handler()) }()
	return url, p, nil
}

// newDatabase creates and migrates a throwaway database.
func newDatabase(ctx context.Context, adminURL string) (string, func(), error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sas_bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	cfg := conn.Config()
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	drop := func() {
		if c, err := pgx.Connect(ctx, adminURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	}
	db, err := postgres.Open(ctx, url)
	if err != nil {
		drop()
		return "", nil, err
	}
	defer db.Close()
	if err := db.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		drop()
		return "", nil, err
	}
	return url, drop, nil
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// measureAll warms every target up (connections, JWKS, user rows, caches),
// then measures them in alternating rounds, so a noisy moment hits all.
func measureAll(targets []target, client *http.Client, tokens []string, o options, budget *atomic.Int64) [][]result {
	for i := range targets {
		targets[i].measure(client, tokens, o.concurrency, o.warmup, budget)
	}
	results := make([][]result, len(targets))
	for range o.rounds {
		for i := range targets {
			results[i] = append(results[i], targets[i].measure(client, tokens, o.concurrency, o.duration, budget))
		}
	}
	return results
}

// printTable prints the best round of each target against the first.
func printTable(targets []target, results [][]result) {
	fmt.Println("| target | requests/s | p50 ms | p99 ms | errors | req/s vs baseline |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	base := best(results[0]).rps
	for i, t := range targets {
		r := best(results[i])
		fmt.Printf("| %s | %.0f | %.2f | %.2f | %d | %.0f%% |\n", t.name, r.rps, ms(r.p50), ms(r.p99), r.errors, 100*r.rps/base)
	}
}

// roundRatios is the median, min and max of a[i]/b[i] over the rounds.
func roundRatios(a, b []result) string {
	rs := ratios(a, b)
	if len(rs) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%% (%.1f–%.1f%%)", median(rs), slices.Min(rs), slices.Max(rs))
}

// roundRatioValue is the median of a[i]/b[i] over the rounds, in percent.
func roundRatioValue(a, b []result) float64 { return median(ratios(a, b)) }

// ratios are a[i]/b[i] in percent, round by round.
func ratios(a, b []result) []float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i].rps > 0 {
			rs = append(rs, 100*a[i].rps/b[i].rps)
		}
	}
	return rs
}
