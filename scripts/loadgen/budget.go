package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/signals-sorcery/sas/gateway/devllm"
)

// serveBareProxy is this program re-executed as the bare reverse proxy
// (-serve-bare-proxy): httputil.ReverseProxy in front of upstream, no auth,
// nothing else, in a process of its own so that its CPU time is its own.
// It prints its address and serves until killed.
func serveBareProxy(upstream string) error {
	u, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	// A client that stops reading at the end of a round is not news.
	p.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return http.Serve(ln, p)
}

// startBareProxy starts the bare reverse proxy process in front of
// upstream and returns its base URL, its process and a stop function.
func startBareProxy(ctx context.Context, upstream string) (string, *os.Process, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-serve-bare-proxy", upstream)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, nil, fmt.Errorf("the bare proxy did not start: %w", err)
	}
	return "http://" + strings.TrimSpace(addr), cmd.Process, stop, nil
}

// procCPU is the CPU time (user + system) process pid has used (Linux:
// /proc/<pid>/stat, in clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (which may hold spaces) start after
	// its closing parenthesis; utime and stime are the 14th and 15th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// budgetBench is the latency budget (issue 23), one run: the gateway as
// deployed — `sas-gateway serve` in its own process, PostgreSQL and Redis
// as processes, the ledger on — against a bare httputil.ReverseProxy in its
// own process, both in front of the same dev model (in this process),
// rounds alternating:
//
//   - non-streamed completions at concurrency c: requests/s, and each
//     proxy process's CPU time per request;
//   - streamed completions one at a time: time to first byte, p50 and p99,
//     and what the gateway adds over the bare proxy;
//   - GET /v1/me against /healthz on the same gateway process.
//
// It ends with one table of the ratios and the targets.
func budgetBench(ctx context.Context, bin, dbURL, redisURL, issuer string, client *http.Client, tokens []string, o options, budget *atomic.Int64) error {
	const key = "sk-bench"
	model := devllm.New(devllm.Options{APIKey: key, ChunkDelay: -1})
	upstream := serve(model.Handler())
	bareURL, bareProc, stopBare, err := startBareProxy(ctx, upstream)
	if err != nil {
		return err
	}
	defer stopBare()
	g, err := startGateway(ctx, bin, dbURL, redisURL, issuer, upstream, key, client, true)
	if err != nil {
		return err
	}
	defer g.stop()

	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a short prompt for the benchmark"}]}`
	targets := []target{
		{name: "the upstream directly", url: upstream + "/v1/chat/completions", body: body, key: key},
		{name: "bare httputil.ReverseProxy (own process)", url: bareURL + "/v1/chat/completions", body: body, key: key},
		{name: "sas-gateway serve (own process; auth, reservation, settlement, ledger)", url: g.base + "/v1/chat/completions", body: body},
	}
	pids := []int{0, bareProc.Pid, g.cmd.Process.Pid}
	idleRSS := [2]float64{procRSS(pids[1]), procRSS(pids[2])}
	for _, t := range targets {
		t.measure(client, tokens, o.concurrency, o.warmup, budget)
	}
	results := make([][]result, len(targets))
	cpu := make([][]float64, len(targets)) // µs per request, per round
	for round := range o.rounds {
		for i, t := range targets {
			if round == 0 && i == 2 && o.profile != "" {
				profiled := profileDuring(client, strings.TrimSuffix(g.metricsURL, "/metrics"), o.duration, o.profile)
				defer func() {
					if err := <-profiled; err != nil {
						fmt.Fprintln(os.Stderr, "loadgen: the gateway's CPU profile:", err)
					}
				}()
			}
			before := procCPU(pids[i])
			r := t.measure(client, tokens, o.concurrency, o.duration, budget)
			if pids[i] != 0 && r.n > 0 {
				cpu[i] = append(cpu[i], float64((procCPU(pids[i])-before).Microseconds())/float64(r.n))
			}
			results[i] = append(results[i], r)
		}
	}
	fmt.Printf("\nlatency budget: non-streamed completions, concurrency %d, %d alternating rounds of %v (best round shown):\n\n", o.concurrency, o.rounds, o.duration)
	printTable(targets, results)
	fmt.Printf("\nCPU per request, median over the rounds: bare proxy %.0f µs, gateway %.0f µs (its own process; Redis's and PostgreSQL's work is not in it)\n",
		median(cpu[1]), median(cpu[2]))

	// The throughput frontier: at each concurrency, both proxies in turn;
	// for each bound on p99, the most either serves within it.
	frontier(client, tokens, targets[1:], budget)
	steadyRSS := [2]float64{procRSS(pids[1]), procRSS(pids[2])}

	// Time to first byte of a stream, one request at a time, the three
	// targets alternating, each request a different user, last seen in the
	// throughput rounds more than the user cache's short TTL (5 s) ago — as
	// an app's users are, whose requests are minutes apart: the change
	// feed vouches for them (5 minutes), so they are served from memory.
	// The pause also lets the load's after-effects (the ledger's drain,
	// GC) settle, and ends with the "recovered" memory reading.
	time.Sleep(6 * time.Second)
	fmt.Println("\nresident memory (MiB): idle before any load / right after the load / 6 s later")
	fmt.Printf("bare proxy %.1f / %.1f / %.1f; sas-gateway serve %.1f / %.1f / %.1f\n",
		idleRSS[0]/(1<<20), steadyRSS[0]/(1<<20), procRSS(pids[1])/(1<<20), idleRSS[1]/(1<<20), steadyRSS[1]/(1<<20), procRSS(pids[2])/(1<<20))
	stream := `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"a short prompt"}]}`
	st := []target{
		{url: upstream + "/v1/chat/completions", body: stream, key: key},
		{url: bareURL + "/v1/chat/completions", body: stream, key: key},
		{url: g.base + "/v1/chat/completions", body: stream},
	}
	const warm, n = 100, 500
	var lat [3][]time.Duration
	for i := range warm + n {
		for j, t := range st {
			d, err := firstByte(client, t, tokens[i%len(tokens)])
			if err != nil {
				return err
			}
			if i >= warm {
				lat[j] = append(lat[j], d)
			}
		}
	}
	for j := range lat {
		slices.Sort(lat[j])
	}
	p := func(l []time.Duration, q int) time.Duration { return l[len(l)*q/100] }
	fmt.Printf("\nstreamed completions one at a time (c=1), time to first byte, %d each after %d warm-up, alternating:\n\n", n, warm)
	fmt.Println("| path | p50 ms | p99 ms |")
	fmt.Println("|---|---:|---:|")
	for j, name := range []string{"the upstream directly", "bare reverse proxy", "sas-gateway serve"} {
		fmt.Printf("| %s | %.3f | %.3f |\n", name, ms(p(lat[j], 50)), ms(p(lat[j], 99)))
	}
	addedP50, addedP99 := p(lat[2], 50)-p(lat[1], 50), p(lat[2], 99)-p(lat[1], 99)

	// GET /v1/me against /healthz on the same process.
	me := []target{
		{name: "GET /healthz (baseline)", url: g.base + "/healthz"},
		{name: "GET /v1/me (token and user caches warm)", url: g.base + "/v1/me"},
	}
	meResults := measureAll(me, client, tokens, o, budget)
	fmt.Printf("\nsas-gateway serve, GET /v1/me against GET /healthz, concurrency %d:\n\n", o.concurrency)
	printTable(me, meResults)

	hz, m := best(meResults[0]), best(meResults[1])
	fmt.Printf("\nlatency budget, this run (targets of issue 23):\n\n")
	fmt.Println("| measure | result | target | met |")
	fmt.Println("|---|---:|---:|---|")
	row := func(name, result, target string, ok bool) {
		fmt.Printf("| %s | %s | %s | %s |\n", name, result, target, map[bool]string{true: "yes", false: "**no**"}[ok])
	}
	thr := roundRatioValue(results[2], results[1])
	row("proxied throughput, gateway / bare proxy (median of rounds)", fmt.Sprintf("%.1f %%", thr), "≥ 70 %", thr >= 70)
	cpuRatio := median(cpu[2]) / median(cpu[1])
	row("CPU per proxied request, gateway / bare proxy", fmt.Sprintf("%.2f×", cpuRatio), "≤ 1.5×", cpuRatio <= 1.5)
	row("added time to first byte, streamed, c=1, p50", fmt.Sprintf("%.3f ms", ms(addedP50)), "≤ 0.3 ms", addedP50 <= 300*time.Microsecond)
	row("added time to first byte, streamed, c=1, p99", fmt.Sprintf("%.3f ms", ms(addedP99)), "≤ 1 ms", addedP99 <= time.Millisecond)
	meRatio := 100 * m.rps / hz.rps
	row("GET /v1/me / GET /healthz, requests/s", fmt.Sprintf("%.1f %%", meRatio), "≥ 85 %", meRatio >= 85)
	p99Ratio := float64(m.p99) / float64(hz.p99)
	row("GET /v1/me p99 / GET /healthz p99", fmt.Sprintf("%.2f×", p99Ratio), "≤ 1.2×", p99Ratio <= 1.2)
	return nil
}

// profileDuring fetches a CPU profile of d from the gateway's metrics
// listener (base) into file, in the background.
func profileDuring(client *http.Client, base string, d time.Duration, file string) <-chan error {
	done := make(chan error, 1)
	go func() {
		secs := max(1, int(d.Seconds())-1)
		resp, err := client.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs))
		if err != nil {
			done <- err
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(file)
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		done <- errors.Join(err, f.Close())
	}()
	return done
}

// firstByte is the time from sending t's request to the first byte of its
// answer; the rest is read and dropped.
func firstByte(client *http.Client, t target, tok string) (time.Duration, error) {
	req := t.request(tok)
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: status %d", t.url, resp.StatusCode)
	}
	var b [1]byte
	if _, err := io.ReadFull(resp.Body, b[:]); err != nil {
		return 0, errors.Join(fmt.Errorf("%s: no first byte", t.url), err)
	}
	d := time.Since(t0)
	_, _ = io.Copy(io.Discard, resp.Body)
	return d, nil
}

// median of xs (0 when empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

// frontier prints, for each bound on p99 latency, the highest throughput
// each target reaches within it over concurrencies 1 … 64 (1 s per level
// and target, alternating): the public gateway board's "throughput at a
// tail bound", which a single concurrency hides.
func frontier(client *http.Client, tokens []string, targets []target, budget *atomic.Int64) {
	levels := []int{1, 2, 4, 8, 16, 32, 64}
	bounds := []time.Duration{2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond}
	res := make([][]result, len(targets))
	for _, c := range levels {
		for i, t := range targets {
			res[i] = append(res[i], t.measure(client, tokens, c, time.Second, budget))
		}
	}
	fmt.Println("\nthroughput frontier: the most requests/s served with p99 within the bound (concurrency 1–64, 1 s each):")
	fmt.Println()
	fmt.Println("| p99 bound | bare proxy req/s (at c) | sas-gateway serve req/s (at c) | gateway / bare |")
	fmt.Println("|---:|---:|---:|---:|")
	for _, b := range bounds {
		var best [2]result
		var at [2]int
		for i := range targets {
			for j, r := range res[i] {
				if r.errors == 0 && r.n > 0 && r.p99 <= b && r.rps > best[i].rps {
					best[i], at[i] = r, levels[j]
				}
			}
		}
		cell := func(i int) string {
			if best[i].n == 0 {
				return "none within"
			}
			return fmt.Sprintf("%.0f (%d)", best[i].rps, at[i])
		}
		ratio := "–"
		if best[0].rps > 0 && best[1].rps > 0 {
			ratio = fmt.Sprintf("%.0f %%", 100*best[1].rps/best[0].rps)
		}
		fmt.Printf("| %v | %s | %s | %s |\n", b, cell(0), cell(1), ratio)
	}
}
