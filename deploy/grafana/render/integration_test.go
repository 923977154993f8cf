package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
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
	"sync/atomic"
	"testing"
	"time"
)

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// metricsServer serves a text-format /metrics page whose counters grow on
// every scrape.
func metricsServer(t *testing.T) *httptest.Server {
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		n := scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP test_requests_total Requests served.\n# TYPE test_requests_total counter\n")
		fmt.Fprintf(w, "test_requests_total{route=\"/v1/me\"} %d\n", 3*n)
		fmt.Fprintf(w, "test_requests_total{route=\"/v1/chat/completions\"} %d\n", 7*n+n%3)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// startPrometheus runs the real prometheus binary scraping target every
// second, on a free port of 127.0.0.1 (another port if that one was taken
// meanwhile), and returns its URL once it is ready. It is killed when the
// test ends.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("the prometheus binary is needed (apt-get install prometheus): %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: render-test\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := range 5 {
		addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		cmd := exec.Command(bin,
			"--config.file="+cfg,
			"--storage.tsdb.path="+filepath.Join(dir, fmt.Sprintf("data%d", attempt)),
			"--web.listen-address="+addr,
			"--log.level=warn")
		logs := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting prometheus: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		base := "http://" + addr
		ready, gone := waitReady(base, exited, 20*time.Second)
		if ready {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return base
		}
		if !gone {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("prometheus at %s was not ready within 20 s:\n%s", addr, logs.String())
		}
		if strings.Contains(logs.String(), "address already in use") {
			t.Logf("port clash on %s, trying another", addr)
			continue
		}
		t.Fatalf("prometheus exited:\n%s", logs.String())
	}
	t.Fatal("prometheus found no free port in 5 tries")
	return ""
}

// waitReady polls /-/ready until it answers 200 (ready), the process
// exits (gone), or the time is up (neither).
func waitReady(base string, exited <-chan error, limit time.Duration) (ready, gone bool) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false, true
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true, false
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false, false
}

// waitSamples polls an instant query until its single value reaches want.
func waitSamples(t *testing.T, base, query string, want float64, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	last := "no answer"
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
		if err == nil {
			var r struct {
				Data struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			if err == nil && len(r.Data.Result) > 0 {
				s, _ := r.Data.Result[0].Value[1].(string)
				last = s
				if v, err := strconv.ParseFloat(s, 64); err == nil && v >= want {
					return
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s did not reach %g within %s (last: %s)", query, want, limit, last)
}

const testDashboard = `{
  "title": "Render integration test",
  "schemaVersion": 39,
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "app", "type": "query", "query": "label_values(up, job)", "includeAll": true,
     "current": {"text": "All", "value": "$__all"}}
  ]},
  "panels": [
    {"type": "row", "title": "Traffic", "collapsed": false, "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}, "panels": []},
    {"type": "timeseries", "title": "Request rate", "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8},
     "datasource": {"type": "prometheus", "uid": "${datasource}"},
     "fieldConfig": {"defaults": {"unit": "reqps"}, "overrides": []},
     "targets": [{"refId": "A", "expr": "sum by (route) (rate(test_requests_total{job=~\"$app\"}[$__rate_interval]))", "legendFormat": "{{route}}"}]},
    {"type": "timeseries", "title": "Missing metric", "gridPos": {"x": 12, "y": 1, "w": 12, "h": 8},
     "datasource": {"type": "prometheus", "uid": "${datasource}"},
     "fieldConfig": {"defaults": {"unit": "s"}, "overrides": []},
     "targets": [{"refId": "A", "expr": "histogram_quantile(0.99, sum by (le) (rate(does_not_exist_bucket[$__rate_interval])))", "legendFormat": "p99"}]}
  ]
}`

const brokenDashboard = `{
  "title": "Broken",
  "panels": [
    {"type": "timeseries", "title": "Fine panel", "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
     "targets": [{"refId": "A", "expr": "up"}]},
    {"type": "timeseries", "title": "Broken panel", "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8},
     "targets": [{"refId": "B", "expr": "sum(rate(test_requests_total[$__rate_interval])"}]}
  ]
}`

func TestRenderAgainstPrometheus(t *testing.T) {
	target := metricsServer(t)
	base := startPrometheus(t, strings.TrimPrefix(target.URL, "http://"))
	waitSamples(t, base, `count_over_time(test_requests_total{route="/v1/me"}[1m])`, 5, 20*time.Second)

	dir := t.TempDir()
	dash := filepath.Join(dir, "dashboard.json")
	if err := os.WriteFile(dash, []byte(testDashboard), 0o644); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	start := end.Add(-30 * time.Second)
	common := []string{
		"-prometheus", base,
		"-start", start.UTC().Format(time.RFC3339),
		"-end", strconv.FormatInt(end.Unix(), 10),
		"-step", "1s", "-rate-interval", "4s", "-width", "1200",
	}

	t.Run("renders", func(t *testing.T) {
		out := filepath.Join(dir, "dashboard.png")
		var stdout, stderr bytes.Buffer
		args := append([]string{"-dashboard", dash, "-out", out, "-vars", "app=.*"}, common...)
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
		}
		t.Logf("stdout:\n%s", stdout.String())
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("want one line per panel (2), got %q", lines)
		}
		if want := `panel "Request rate" (timeseries): 2 series, data`; lines[0] != want {
			t.Errorf("line 1 = %q, want %q", lines[0], want)
		}
		if want := `panel "Missing metric" (timeseries): 0 series, no data`; lines[1] != want {
			t.Errorf("line 2 = %q, want %q", lines[1], want)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatalf("the PNG does not decode: %v", err)
		}
		if w := img.Bounds().Dx(); w != 1200 {
			t.Errorf("PNG width %d, want 1200", w)
		}
		if h := img.Bounds().Dy(); h < 200 {
			t.Errorf("PNG height %d, want a picture of a row of panels", h)
		}
		if sample := os.Getenv("RENDER_SAMPLE_OUT"); sample != "" {
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(sample, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("invalid PromQL names the panel and the query", func(t *testing.T) {
		bad := filepath.Join(dir, "broken.json")
		if err := os.WriteFile(bad, []byte(brokenDashboard), 0o644); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "broken.png")
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"-dashboard", bad, "-out", out}, common...), &stdout, &stderr)
		if code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
		}
		msg := stderr.String()
		for _, want := range []string{`"Broken panel"`, "sum(rate(test_requests_total[4s])", "bad_data"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not contain %q", msg, want)
			}
		}
		if strings.Contains(msg, "Fine panel") {
			t.Errorf("error blames the valid panel: %q", msg)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("a PNG was written despite the error (stat: %v)", err)
		}
	})

	t.Run("unreachable Prometheus", func(t *testing.T) {
		nowhere := "http://127.0.0.1:" + strconv.Itoa(freePort(t))
		var stdout, stderr bytes.Buffer
		args := []string{"-dashboard", dash, "-out", filepath.Join(dir, "x.png"), "-prometheus", nowhere,
			"-start", "now-1m", "-end", "now", "-step", "5s"}
		if code := run(context.Background(), args, &stdout, &stderr); code != 1 {
			t.Fatalf("exit %d, want 1", code)
		}
		if msg := stderr.String(); !strings.Contains(msg, "cannot reach Prometheus at "+nowhere) {
			t.Errorf("error %q does not say Prometheus is unreachable", msg)
		}
	})
}
