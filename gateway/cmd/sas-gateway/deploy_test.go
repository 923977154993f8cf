package main_test

import (
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/serve"
)

// Docker and flyctl cannot run here; these tests pin the facts in
// Dockerfile and fly.toml that the code depends on.

func readTop(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func tomlValue(t *testing.T, doc, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `\s*=\s*"?([^"\n]*)"?\s*$`).FindStringSubmatch(doc)
	if m == nil {
		t.Fatalf("fly.toml has no %s", key)
	}
	return m[1]
}

func TestFlyTOML(t *testing.T) {
	fly := readTop(t, "fly.toml")
	if got := tomlValue(t, fly, "internal_port"); got != strconv.Itoa(config.DefaultPort) {
		t.Errorf("internal_port = %s, want the default PORT %d", got, config.DefaultPort)
	}
	if got := tomlValue(t, fly, "PORT"); got != strconv.Itoa(config.DefaultPort) {
		t.Errorf("[env] PORT = %s", got)
	}
	kill, err := time.ParseDuration(tomlValue(t, fly, "kill_timeout"))
	if err != nil || kill <= serve.DrainTimeout {
		t.Errorf("kill_timeout = %v (%v), want more than the %v drain", kill, err, serve.DrainTimeout)
	}
	if sig := tomlValue(t, fly, "kill_signal"); sig != "SIGTERM" && sig != "SIGINT" {
		t.Errorf("kill_signal = %s: sas-gateway drains on SIGTERM and SIGINT only", sig)
	}
	if got := tomlValue(t, fly, "release_command"); got != "/sas-gateway migrate" {
		t.Errorf("release_command = %q", got)
	}
	if got := tomlValue(t, fly, "path"); got != "/healthz" {
		t.Errorf("health check path = %q", got)
	}
	if _, port, _ := net.SplitHostPort(config.DefaultMetricsAddr); tomlValue(t, fly, "port") != port {
		t.Errorf("[metrics] port = %s, want METRICS_ADDR's default port (%s)", tomlValue(t, fly, "port"), config.DefaultMetricsAddr)
	}
	if got := tomlValue(t, fly, "path"); got != "/healthz" {
		t.Errorf("first path = %q", got)
	}
	if !strings.Contains(fly, `path = "/metrics"`) {
		t.Error("[metrics] path is not /metrics")
	}
	if got := tomlValue(t, fly, "force_https"); got != "true" {
		t.Errorf("force_https = %q", got)
	}
	// A declared machine size, and a Go memory limit under it.
	vm, err1 := strconv.Atoi(strings.TrimSuffix(tomlValue(t, fly, "memory"), "mb"))
	limit, err2 := strconv.Atoi(strings.TrimSuffix(tomlValue(t, fly, "GOMEMLIMIT"), "MiB"))
	if err1 != nil || err2 != nil || limit*1024*1024 >= vm*1000*1000 || limit*1024*1024 < vm*1000*1000/2 {
		t.Errorf("[[vm]] memory = %d MB, GOMEMLIMIT = %d MiB: want a limit between half the machine and the machine", vm, limit)
	}
}

// TestFlyDevTOML: the dev app differs from prod in name and sizing only.
func TestFlyDevTOML(t *testing.T) {
	prod, dev := readTop(t, "fly.toml"), readTop(t, "fly.dev.toml")
	if tomlValue(t, dev, "app") != "sas-dev" || tomlValue(t, prod, "app") != "sas" {
		t.Errorf("apps: prod %q, dev %q", tomlValue(t, prod, "app"), tomlValue(t, dev, "app"))
	}
	for _, key := range []string{"internal_port", "release_command", "kill_signal", "kill_timeout", "force_https", "path", "memory", "GOMEMLIMIT", "METRICS_ADDR"} {
		if tomlValue(t, prod, key) != tomlValue(t, dev, key) {
			t.Errorf("%s differs: prod %q, dev %q", key, tomlValue(t, prod, key), tomlValue(t, dev, key))
		}
	}
}

// TestFlyMetricsNotPublic: in both apps, the metrics listener is where
// [metrics] scrapes it, on the wildcard (Fly's docs: serve metrics on
// 0.0.0.0), and never a service's internal_port — Fly's proxy forwards
// internet traffic only to those, so that keeps /metrics off the internet.
func TestFlyMetricsNotPublic(t *testing.T) {
	for _, name := range []string{"fly.toml", "fly.dev.toml"} {
		doc := readTop(t, name)
		scraped := tomlValue(t, doc, "port") // the first port: [metrics]'
		host, port, err := net.SplitHostPort(tomlValue(t, doc, "METRICS_ADDR"))
		if err != nil || port != scraped {
			t.Errorf("%s: METRICS_ADDR port %q (%v), want [metrics] port %s", name, port, err, scraped)
		}
		if host != "" {
			t.Errorf("%s: METRICS_ADDR host %q, want the wildcard (\":%s\")", name, host, scraped)
		}
		services := regexp.MustCompile(`(?m)^\s*internal_port\s*=\s*(\d+)`).FindAllStringSubmatch(doc, -1)
		if len(services) == 0 {
			t.Errorf("%s: no internal_port: this test would prove nothing", name)
		}
		for _, m := range services {
			if m[1] == scraped {
				t.Errorf("%s: the metrics port %s is a service's internal_port: Fly would publish it", name, scraped)
			}
		}
	}
}

func TestDockerfile(t *testing.T) {
	df := readTop(t, "Dockerfile")
	for _, want := range []string{
		"CGO_ENABLED=0 go build",
		"-o /out/sas-gateway ./gateway/cmd/sas-gateway",
		"COPY --from=build /out/sas-gateway /sas-gateway",
		"distroless/static",
		"USER nonroot",
		`CMD ["/sas-gateway", "serve"]`,
		"buildinfo.Version=${VERSION}",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(from) != 2 {
		t.Errorf("Dockerfile has %d FROM lines, want 2 (build, runtime)", len(from))
	}
	pinned := regexp.MustCompile(`^[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}$`)
	for _, m := range from {
		if !pinned.MatchString(m[1]) {
			t.Errorf("FROM %s: want the image pinned by digest (name:tag@sha256:…)", m[1])
		}
	}
	if regexp.MustCompile(`(?m)^ENTRYPOINT`).MatchString(df) {
		t.Error("Dockerfile has an ENTRYPOINT: fly.toml's release_command would be appended to it")
	}
}
