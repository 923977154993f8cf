package llmproxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/memstore"
	"github.com/signals-sorcery/sas/gateway/quota"
)

// BenchmarkCompletion is one non-streamed completion through the whole
// gateway over HTTP — token check, user cache, admission and settlement in
// the real Redis, the ledger's stream, the relay, metrics — against the
// dev model on loopback, from 8 clients at once: the denominator of what
// per-request bookkeeping costs (docs/benchmarks.md).
func BenchmarkCompletion(b *testing.B) {
	benchmarkGateway(b, "/v1/chat/completions", hello)
}

// BenchmarkTemplateRun: a template run and the raw request it renders,
// through the same gateway in the same run (issue 25: a template run may
// cost at most 5 % more). BenchmarkTemplateRender is the added work alone.
func BenchmarkTemplateRun(b *testing.B) {
	tpl, _, _ := testTemplates().Get("chord-names")
	const v = `{"count": 4, "key": "C"}`
	raw, err := tpl.Render(vars(b, v), false)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("raw", func(b *testing.B) { benchmarkGateway(b, "/v1/chat/completions", string(raw)) })
	b.Run("template", func(b *testing.B) { benchmarkGateway(b, "/v1/templates/chord-names", `{"variables": `+v+`}`) })
}

func BenchmarkTemplateRender(b *testing.B) {
	tpl, _, _ := testTemplates().Get("chord-names")
	v := vars(b, `{"count": 4, "key": "C"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tpl.Render(v, false); err != nil {
			b.Fatal(err)
		}
	}
}

// benchmarkGateway posts body to path through the whole gateway over
// HTTP — token check, user cache, admission and settlement in the real
// Redis, the ledger's stream, the relay, metrics — against the dev model
// on loopback, from 8 clients at once.
func benchmarkGateway(b *testing.B, path, body string) {
	up := httptest.NewServer(devllm.New(devllm.Options{APIKey: upstreamKey, ChunkDelay: -1}).Handler())
	b.Cleanup(up.Close)
	iss := testenv.NewIssuer(b, "RS256", nil)
	plans := quota.BuiltIn()
	for name, p := range plans {
		p.RequestsPerMinute, p.RequestsPerDay, p.TokensPerDay, p.ConcurrentRequests = 1e12, 1e12, 1e15, 0
		p.USDPerDay, p.USDPerMonth = 1e15, 1e15
		plans[name] = p
	}
	cfg := config.Config{Issuer: iss.Issuer(), Audiences: []string{aud}, RedisURL: testenv.RedisURL(b),
		OpenAIAPIKey: upstreamKey, OpenAIBaseURL: up.URL + "/v1", Plans: plans, UsageStream: "sas:usage:bench:" + testenv.UUID()}
	gw, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler), app.Deps{Store: memstore.New(nil), Templates: testTemplates()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(gw.Close)
	srv := httptest.NewServer(gw.Handler)
	b.Cleanup(srv.Close)
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = iss.Token(b, fmt.Sprintf("user_bench_%d", i), aud, "b@example.com", "B", nil)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next atomic.Int64
	b.SetParallelism(4) // 4 × GOMAXPROCS clients
	cpu := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tokens[next.Add(1)%int64(len(tokens))])
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			var buf [4096]byte
			for {
				if _, err := resp.Body.Read(buf[:]); err != nil {
					break
				}
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	// The process's CPU time per request (gateway, client and dev model;
	// Redis is another process): steadier than wall time on a shared
	// machine.
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N)/1e3, "cpu-µs/op")
}

// processCPU is the CPU time (user + system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
