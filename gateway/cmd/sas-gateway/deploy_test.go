package main_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
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
	if err != nil || kill <= app.DrainTimeout {
		t.Errorf("kill_timeout = %v (%v), want more than the %v drain", kill, err, app.DrainTimeout)
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
	if got := tomlValue(t, fly, "port"); ":"+got != config.DefaultMetricsAddr {
		t.Errorf("[metrics] port = %s, want METRICS_ADDR's default %s", got, config.DefaultMetricsAddr)
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
	for _, key := range []string{"internal_port", "release_command", "kill_signal", "kill_timeout", "force_https", "path", "memory", "GOMEMLIMIT"} {
		if tomlValue(t, prod, key) != tomlValue(t, dev, key) {
			t.Errorf("%s differs: prod %q, dev %q", key, tomlValue(t, prod, key), tomlValue(t, dev, key))
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
	if regexp.MustCompile(`(?m)^ENTRYPOINT`).MatchString(df) {
		t.Error("Dockerfile has an ENTRYPOINT: fly.toml's release_command would be appended to it")
	}
}
