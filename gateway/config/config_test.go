package config_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/quota"
)

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func valid() map[string]string {
	return map[string]string{
		"CLERK_ISSUER":   "https://clerk.sas.example.com",
		"CLERK_AUDIENCE": "sas-api, oauth_client_123 ,",
		"DATABASE_URL":   "postgres://u:pw@db.example.com:5432/sas?sslmode=require",
		"REDIS_URL":      "rediss://default:pw@redis.example.com:6379",
	}
}

func TestLoadDefaults(t *testing.T) {
	c, err := config.Load(getenv(valid()))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Port:           8080,
		Issuer:         "https://clerk.sas.example.com",
		Audiences:      []string{"sas-api", "oauth_client_123"},
		DatabaseURL:    "postgres://u:pw@db.example.com:5432/sas?sslmode=require",
		RedisURL:       "rediss://default:pw@redis.example.com:6379",
		OpenAIBaseURL:  "https://api.openai.com/v1",
		LogLevel:       slog.LevelInfo,
		MetricsAddr:    "127.0.0.1:9091",
		Plans:          quota.BuiltIn(),
		Prices:         quota.BuiltInPrices(),
		UsageRetention: 400 * 24 * time.Hour,
		UsageStream:    "sas:usage",
		Clerk:          config.Clerk{APIURL: config.DefaultClerkAPIURL},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLoadAll(t *testing.T) {
	env := valid()
	env["PORT"] = "9000"
	env["CLERK_JWKS_URL"] = "https://clerk.sas.example.com/.well-known/jwks.json"
	env["CLERK_AUTHORIZED_PARTIES"] = "app1,app2"
	env["OPENAI_API_KEY"] = "sk-test"
	env["OPENAI_BASE_URL"] = "http://127.0.0.1:9999/v1"
	env["LOG_LEVEL"] = "DEBUG"
	env["METRICS_ADDR"] = "127.0.0.1:9191"
	c, err := config.Load(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9000 || c.LogLevel != slog.LevelDebug || c.MetricsAddr != "127.0.0.1:9191" ||
		!cmp.Equal(c.AuthorizedParties, []string{"app1", "app2"}) || c.OpenAIAPIKey != "sk-test" {
		t.Errorf("config = %+v", c)
	}
}

// TestLoadReportsEveryProblemAtOnce: one message names every bad variable
// and none of their values.
func TestLoadReportsEveryProblemAtOnce(t *testing.T) {
	env := map[string]string{
		"PORT":            "80a",
		"CLERK_ISSUER":    "http://clerk.example.com", // plain http off loopback
		"CLERK_JWKS_URL":  "not a url",
		"CLERK_AUDIENCE":  " , ",
		"DATABASE_URL":    "mysql://root:db-s3cret@x/y",
		"REDIS_URL":       "redis://:redis-s3cret@host:notaport",
		"OPENAI_BASE_URL": "ftp://x",
		"LOG_LEVEL":       "loud",
		"METRICS_ADDR":    "nope",
		"SAS_PLANS_FILE":  "/nonexistent/plans.json",
	}
	_, err := config.Load(getenv(env))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *config.Error", err)
	}
	for _, name := range []string{"PORT", "CLERK_ISSUER", "CLERK_JWKS_URL", "CLERK_AUDIENCE", "DATABASE_URL", "REDIS_URL", "OPENAI_BASE_URL", "LOG_LEVEL", "METRICS_ADDR", "SAS_PLANS_FILE"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("message does not name %s: %v", name, err)
		}
	}
	for _, secret := range []string{"db-s3cret", "redis-s3cret"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("message leaks %s", secret)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message spans several lines: %q", err)
	}
}

// fileWriter writes files into a temp dir of t's and returns their paths.
func fileWriter(t *testing.T) func(name, body string) string {
	t.Helper()
	dir := t.TempDir()
	return func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// TestPricesFile: SAS_PRICES_FILE replaces the price table, and a table
// that leaves a model of a plan unpriced stops the start, naming it.
func TestPricesFile(t *testing.T) {
	write := fileWriter(t)
	env := valid()
	env["SAS_PRICES_FILE"] = write("prices.json", `{"gpt-4o-mini":{"input":0.2,"cached_input":0.1,"output":0.8},"gpt-4o":{"input":3,"cached_input":1.5,"output":12}}`)
	c, err := config.Load(getenv(env))
	if err != nil || c.Prices["gpt-4o"].Output != 12_000_000 {
		t.Fatalf("prices = %v, %v", c.Prices, err)
	}
	env["SAS_PRICES_FILE"] = write("partial.json", `{"gpt-4o-mini":{"input":0.2,"cached_input":0.1,"output":0.8}}`)
	if _, err := config.Load(getenv(env)); err == nil || !strings.Contains(err.Error(), "SAS_PRICES_FILE has no price for the models of the plans (pro: gpt-4o)") {
		t.Errorf("unpriced model: %v", err)
	}
	env["SAS_PLANS_FILE"] = write("plans.json", `{"free":{"requests_per_minute":1,"requests_per_day":1,"tokens_per_day":1,"max_tokens":1,"models":["gpt-4o-mini"]},
		"pro":{"requests_per_minute":1,"requests_per_day":1,"tokens_per_day":1,"max_tokens":1,"models":["gpt-4o-mini","o3"]}}`)
	if _, err := config.Load(getenv(env)); err == nil || !strings.Contains(err.Error(), "pro: o3") {
		t.Errorf("a plan's model without a price: %v", err)
	}
	env["SAS_PRICES_FILE"] = write("bad.json", `{"gpt-4o-mini":{"input":"cheap"}}`)
	if _, err := config.LoadDev(getenv(env)); err == nil || !strings.Contains(err.Error(), "SAS_PRICES_FILE") {
		t.Errorf("dev with a bad prices file: %v", err)
	}
}

func TestLoadRequired(t *testing.T) {
	_, err := config.Load(getenv(nil))
	for _, name := range []string{"CLERK_ISSUER", "CLERK_AUDIENCE", "DATABASE_URL", "REDIS_URL"} {
		if err == nil || !strings.Contains(err.Error(), name+" is required") {
			t.Errorf("missing %s not reported: %v", name, err)
		}
	}
}

func TestURLRules(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://clerk.example.com":      true,
		"http://127.0.0.1:8080/dev/idp":  true,
		"http://localhost:8080":          true,
		"http://[::1]:8080":              true,
		"http://clerk.example.com":       false,
		"https://user:pw@clerk.example":  false,
		"clerk.example.com":              false,
		"https://":                       false,
		"javascript:alert(1)":            false,
		"https://clerk.example.com/path": true,
	} {
		env := valid()
		env["CLERK_ISSUER"] = raw
		_, err := config.Load(getenv(env))
		if (err == nil) != ok {
			t.Errorf("CLERK_ISSUER=%q: err = %v, want ok=%v", raw, err, ok)
		}
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	env := valid()
	env["OPENAI_API_KEY"] = "sk-very-secret"
	c, err := config.Load(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", c)
	for _, secret := range []string{"sk-very-secret", ":pw@"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("log line contains %q: %s", secret, b.String())
		}
	}
}

func TestStripeAllOrNothing(t *testing.T) {
	env := valid()
	env["STRIPE_API_KEY"] = "sk_live_secret"
	_, err := config.Load(getenv(env))
	if err == nil || !strings.Contains(err.Error(), "must be set together") || strings.Contains(err.Error(), "sk_live_secret") {
		t.Errorf("partial Stripe config: %v", err)
	}
	env["STRIPE_WEBHOOK_SECRET"], env["STRIPE_PRO_PRICE_ID"] = "whsec_x", "price_x"
	if _, err := config.Load(getenv(env)); err == nil || !strings.Contains(err.Error(), "APP_RETURN_URL") {
		t.Errorf("no return URL: %v", err)
	}
	env["APP_RETURN_URL"] = "sas://billing/done"
	c, err := config.Load(getenv(env))
	if err != nil || !c.Stripe.Enabled() {
		t.Errorf("full Stripe config: %+v %v", c.Stripe, err)
	}
	if c, _ := config.Load(getenv(valid())); c.Stripe.Enabled() {
		t.Error("billing on without Stripe variables")
	}
}

// TestClerkLifecycleVariables: the webhook secret must be a Svix signing
// secret and the secret key a Clerk secret key; errors name the variables,
// never their values; the Backend API defaults to Clerk's.
func TestClerkLifecycleVariables(t *testing.T) {
	c, err := config.Load(getenv(valid()))
	if err != nil || c.Clerk.WebhookSecret != "" || c.Clerk.SecretKey != "" || c.Clerk.APIURL != config.DefaultClerkAPIURL {
		t.Fatalf("defaults: %+v %v", c.Clerk, err)
	}
	for name, bad := range map[string]string{
		"CLERK_WEBHOOK_SECRET": "not-a-secret!!",
		"CLERK_SECRET_KEY":     "pk_live_publishable",
		"CLERK_API_URL":        "api.clerk.com",
	} {
		env := valid()
		env[name] = bad
		_, err := config.Load(getenv(env))
		if err == nil || !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), bad) {
			t.Errorf("%s=%s: %v", name, bad, err)
		}
	}
	env := valid()
	env["CLERK_WEBHOOK_SECRET"], env["CLERK_SECRET_KEY"], env["CLERK_API_URL"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "sk_test_abc", "http://127.0.0.1:9/clerk"
	c, err = config.Load(getenv(env))
	if err != nil || c.Clerk.WebhookSecret == "" || c.Clerk.SecretKey != "sk_test_abc" || c.Clerk.APIURL != "http://127.0.0.1:9/clerk" {
		t.Errorf("set: %+v %v", c.Clerk, err)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", c)
	if strings.Contains(b.String(), "whsec_") || strings.Contains(b.String(), "sk_test_abc") {
		t.Errorf("a Clerk secret in the log: %s", b.String())
	}
}

// TestUpstreamsFileProblems: a bad SAS_UPSTREAMS_FILE is reported with
// every other bad variable in one message, which names each of the
// table's problems and none of the keys its upstreams read.
func TestUpstreamsFileProblems(t *testing.T) {
	path := filepath.Join(t.TempDir(), "upstreams.json")
	table := `{"upstreams":{
	   "openai": {"kind":"openai","base_url":"http://api.openai.com/v1","key_env":"OPENAI_API_KEY"},
	   "azure":  {"kind":"azure","base_url":"https://r.openai.azure.com/openai/v1","key_env":"AZURE_OPENAI_API_KEY"},
	   "groq":   {"kind":"groq","base_url":"https://api.groq.com/openai/v1","key_env":"GROQ_API_KEY"}},
	 "models":{"gpt-4o-mini":[{"upstream":"openai"},{"upstream":"azure"},{"upstream":"groq"}]}}`
	if err := os.WriteFile(path, []byte(table), 0o600); err != nil {
		t.Fatal(err)
	}
	env := valid()
	env["PORT"] = "80a"
	env["LOG_LEVEL"] = "loud"
	env["OPENAI_API_KEY"] = "sk-SECRET-openai"
	env["GROQ_API_KEY"] = "gsk_SECRET_groq"
	env["SAS_UPSTREAMS_FILE"] = path
	_, err := config.Load(getenv(env))
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *config.Error", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"PORT", "LOG_LEVEL", "SAS_UPSTREAMS_FILE " + path,
		"upstream openai: base_url must use https",
		"upstream azure: the environment variable AZURE_OPENAI_API_KEY (key_env) is not set",
		"upstream groq: kind must be openai, azure or openai-compatible",
		"model gpt-4o of plan pro has no upstream",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message does not say %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "SECRET") || strings.Contains(msg, "\n") {
		t.Errorf("the message holds a key or spans lines: %q", msg)
	}

	env = valid()
	env["SAS_UPSTREAMS_FILE"] = filepath.Join(t.TempDir(), "absent.json")
	if _, err := config.Load(getenv(env)); err == nil || !strings.Contains(err.Error(), "SAS_UPSTREAMS_FILE") {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := config.LoadDev(getenv(env)); err == nil || !strings.Contains(err.Error(), "SAS_UPSTREAMS_FILE") {
		t.Errorf("dev with a missing file: %v", err)
	}
}

// TestUpstreamsFile: a good SAS_UPSTREAMS_FILE becomes Config.Upstreams,
// priced by SAS_PRICES_FILE; the log line names the upstreams, never their
// keys. Without the variable there is no table (one upstream from
// OPENAI_API_KEY, built by the app).
func TestUpstreamsFile(t *testing.T) {
	write := fileWriter(t)
	env := valid()
	env["OPENAI_API_KEY"] = "sk-SECRET-openai"
	env["AZURE_OPENAI_API_KEY"] = "SECRET-azure-123"
	env["SAS_PRICES_FILE"] = write("prices.json", `{"gpt-4o-mini":{"input":0.2,"cached_input":0.1,"output":0.8},"gpt-4o":{"input":3,"cached_input":1.5,"output":12}}`)
	env["SAS_UPSTREAMS_FILE"] = write("upstreams.json", `{"upstreams":{
	   "openai": {"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY"},
	   "azure":  {"kind":"azure","base_url":"https://r.openai.azure.com/openai/v1","key_env":"AZURE_OPENAI_API_KEY"}},
	 "models":{"gpt-4o-mini":[{"upstream":"openai"},{"upstream":"azure","model":"mini-deployment"}],
	           "gpt-4o":[{"upstream":"azure","model":"4o-deployment"}]}}`)
	c, err := config.Load(getenv(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Upstreams == nil {
		t.Fatal("no upstream table")
	}
	if diff := cmp.Diff([]string{"azure", "openai"}, c.Upstreams.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	var got []string
	for _, r := range c.Upstreams.Routes("gpt-4o-mini") {
		got = append(got, r.Upstream.Name+" "+r.Model+" "+r.Price.Output.String())
	}
	if diff := cmp.Diff([]string{"openai gpt-4o-mini 0.8", "azure mini-deployment 0.8"}, got); diff != "" {
		t.Errorf("gpt-4o-mini routes (-want +got):\n%s", diff)
	}

	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "config", c)
	if !strings.Contains(b.String(), `"upstreams":["azure","openai"]`) {
		t.Errorf("the log line does not name the upstreams: %s", b.String())
	}
	if strings.Contains(b.String(), "SECRET") {
		t.Errorf("the log line holds a key: %s", b.String())
	}

	dev, err := config.LoadDev(getenv(env))
	if err != nil || dev.Upstreams == nil {
		t.Errorf("dev: %v, %v", dev.Upstreams, err)
	}

	delete(env, "SAS_UPSTREAMS_FILE")
	if c, err := config.Load(getenv(env)); err != nil || c.Upstreams != nil {
		t.Errorf("without SAS_UPSTREAMS_FILE: %v, %v", c.Upstreams, err)
	}
}
