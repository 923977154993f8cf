// Package config reads the gateway's configuration from the environment
// variables of the contract, once, and reports every problem at once so an
// operator fixes a deploy in one round instead of one variable per restart.
package config

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway/account"
	"github.com/signals-sorcery/sas/gateway/ledger"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/upstream"
	"github.com/signals-sorcery/sas/shared/secureurl"
)

// Defaults of the contract.
const (
	DefaultPort          = 8080
	DefaultOpenAIBaseURL = "https://api.openai.com/v1"
	// DefaultMetricsAddr is loopback: /metrics names every route and model,
	// and a host's other interfaces may face a network. fly.toml sets
	// METRICS_ADDR to the wildcard, which Fly keeps on its private network.
	DefaultMetricsAddr = "127.0.0.1:9091"
	// DefaultUsageRetentionDays is how long usage events are kept: a year
	// and a month, so that last year's same month can be compared.
	DefaultUsageRetentionDays = 400
)

// Config is the gateway's configuration. Secret fields (database and Redis
// passwords inside URLs, the OpenAI key) must never be logged; use LogValue.
type Config struct {
	// Host is the listen address of serve: empty for every interface (what
	// Fly's proxy needs), 127.0.0.1 in tests and on a laptop.
	Host              string
	Port              int
	Issuer            string   // exact iss of accepted tokens
	JWKSURL           string   // optional; from discovery when empty
	Audiences         []string // accepted aud values
	AuthorizedParties []string // accepted azp values; empty accepts any
	DatabaseURL       string
	RedisURL          string
	OpenAIAPIKey      string
	OpenAIBaseURL     string
	Plans             quota.Plans  // built-in, or read from SAS_PLANS_FILE
	Prices            quota.Prices // built-in, or read from SAS_PRICES_FILE
	// Upstreams is the table of SAS_UPSTREAMS_FILE; nil without it (one
	// upstream from OpenAIAPIKey and OpenAIBaseURL).
	Upstreams   *upstream.Table
	LogLevel    slog.Level
	MetricsAddr string
	SentryDSN   string // empty: no error reporting
	Stripe      Stripe
	Clerk       Clerk
	// UsageRetention is how long usage events are kept
	// (SAS_USAGE_RETENTION_DAYS, default 400 days).
	UsageRetention time.Duration
	// UsageStream is the Redis key of the usage stream (SAS_USAGE_STREAM,
	// default ledger.DefaultStream): deployments that share one Redis
	// need one each, or they drain each other's events.
	UsageStream string
}

// Stripe is the billing configuration; billing is on when Enabled.
type Stripe struct {
	APIKey, WebhookSecret, ProPriceID string // secrets: never logged
	APIBase                           string // without /v1; empty: Stripe's
	ReturnURL                         string
}

// Clerk is the configuration of account lifecycle: Clerk's webhooks and
// its Backend API.
type Clerk struct {
	WebhookSecret string // whsec_…: enables POST /webhooks/clerk; secret
	SecretKey     string // sk_…: deletes Clerk users in DELETE /v1/me; secret
	APIURL        string // the Backend API (default https://api.clerk.com)
}

// DefaultClerkAPIURL is Clerk's Backend API.
const DefaultClerkAPIURL = account.DefaultClerkAPIURL

// Enabled reports whether billing is configured.
func (s Stripe) Enabled() bool { return s.APIKey != "" && s.WebhookSecret != "" }

// LogValue lets a Config be logged without its secrets.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", c.Host),
		slog.Int("port", c.Port),
		slog.String("issuer", c.Issuer),
		slog.String("jwks_url", c.JWKSURL),
		slog.Any("audiences", c.Audiences),
		slog.Any("authorized_parties", c.AuthorizedParties),
		slog.Bool("openai_key_set", c.OpenAIAPIKey != ""),
		slog.String("openai_base_url", c.OpenAIBaseURL),
		slog.Any("upstreams", c.upstreamNames()),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("metrics_addr", c.MetricsAddr),
		slog.Bool("sentry", c.SentryDSN != ""),
		slog.Bool("billing", c.Stripe.Enabled()),
		slog.Bool("clerk_webhooks", c.Clerk.WebhookSecret != ""),
		slog.Bool("clerk_user_deletion", c.Clerk.SecretKey != ""),
		slog.String("clerk_api_url", c.Clerk.APIURL),
		slog.String("usage_stream", c.UsageStream),
		slog.Duration("usage_retention", c.UsageRetention),
	)
}

func (c Config) upstreamNames() []string {
	if c.Upstreams == nil {
		return nil
	}
	return c.Upstreams.Names()
}

// Error lists every invalid variable. Its text names variables and what is
// wrong with them, never their values (they may hold passwords).
type Error struct{ Problems []string }

func (e *Error) Error() string {
	return "invalid configuration: " + strings.Join(e.Problems, "; ")
}

// Load reads the configuration of `sas-gateway serve` through getenv.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		Host:              r.host("HOST"),
		Port:              r.port("PORT", DefaultPort),
		Issuer:            r.url("CLERK_ISSUER", true),
		JWKSURL:           r.url("CLERK_JWKS_URL", false),
		Audiences:         r.list("CLERK_AUDIENCE", true),
		AuthorizedParties: r.list("CLERK_AUTHORIZED_PARTIES", false),
		DatabaseURL:       r.postgresURL("DATABASE_URL", true),
		RedisURL:          r.redisURL("REDIS_URL", true),
		OpenAIAPIKey:      strings.TrimSpace(getenv("OPENAI_API_KEY")),
		OpenAIBaseURL:     r.url("OPENAI_BASE_URL", false),
		LogLevel:          r.logLevel("LOG_LEVEL"),
		MetricsAddr:       r.addr("METRICS_ADDR", DefaultMetricsAddr),
		SentryDSN:         r.url("SENTRY_DSN", false),
		Stripe:            r.stripe(),
		Clerk:             r.clerk(),
		UsageRetention:    r.days("SAS_USAGE_RETENTION_DAYS", DefaultUsageRetentionDays),
		UsageStream:       cmp.Or(r.get("SAS_USAGE_STREAM", false), ledger.DefaultStream),
	}
	c.Plans, c.Prices = r.plansAndPrices()
	c.Upstreams = r.upstreams(c.Plans, c.Prices)
	if c.OpenAIBaseURL == "" {
		c.OpenAIBaseURL = DefaultOpenAIBaseURL
	}
	return c, r.err()
}

// DevAudience is the OAuth client id of the local profile, which
// `sas-gateway dev` accepts as audience.
const DevAudience = "sas-local"

// LoadDev reads the configuration of `sas-gateway dev`: everything is
// optional (no DATABASE_URL: in-memory users; no REDIS_URL: in-process
// Redis), it listens on 127.0.0.1 only, and the issuer is the dev identity
// provider mounted at /dev/idp on the same port.
func LoadDev(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		Host:          "127.0.0.1",
		Port:          r.port("PORT", DefaultPort),
		Audiences:     []string{DevAudience},
		DatabaseURL:   r.postgresURL("DATABASE_URL", false),
		RedisURL:      r.redisURL("REDIS_URL", false),
		OpenAIAPIKey:  strings.TrimSpace(getenv("OPENAI_API_KEY")),
		OpenAIBaseURL: r.url("OPENAI_BASE_URL", false),
		LogLevel:      r.logLevel("LOG_LEVEL"),
		// A port of its own by default: several dev stacks (tests) at once.
		MetricsAddr:    r.addr("METRICS_ADDR", "127.0.0.1:0"),
		UsageRetention: r.days("SAS_USAGE_RETENTION_DAYS", DefaultUsageRetentionDays),
		UsageStream:    cmp.Or(r.get("SAS_USAGE_STREAM", false), ledger.DefaultStream),
		Clerk:          r.clerk(),
	}
	c.Plans, c.Prices = r.plansAndPrices()
	c.Upstreams = r.upstreams(c.Plans, c.Prices)
	c.Issuer = "http://127.0.0.1:" + strconv.Itoa(c.Port) + "/dev/idp"
	if c.OpenAIBaseURL == "" {
		c.OpenAIBaseURL = DefaultOpenAIBaseURL
	}
	return c, r.err()
}

// LoadDatabase reads only DATABASE_URL, for commands that need nothing else
// (`migrate`, `users`).
func LoadDatabase(getenv func(string) string) (string, error) {
	r := reader{getenv: getenv}
	u := r.postgresURL("DATABASE_URL", true)
	return u, r.err()
}

// Templates is what `sas-gateway templates` reads: the database, and the
// plans and prices a template's model is checked against.
type Templates struct {
	DatabaseURL string
	Plans       quota.Plans
	Prices      quota.Prices
}

// LoadTemplates reads DATABASE_URL, SAS_PLANS_FILE and SAS_PRICES_FILE,
// checked as for serve.
func LoadTemplates(getenv func(string) string) (Templates, error) {
	r := reader{getenv: getenv}
	t := Templates{DatabaseURL: r.postgresURL("DATABASE_URL", true)}
	t.Plans, t.Prices = r.plansAndPrices()
	return t, r.err()
}

// Accounts is what `sas-gateway users delete` reads: the database, and
// Stripe and Clerk's Backend API when they are configured.
type Accounts struct {
	DatabaseURL string
	Stripe      Stripe
	Clerk       Clerk
}

// LoadAccounts reads DATABASE_URL and the Stripe and Clerk variables,
// checked as for serve.
func LoadAccounts(getenv func(string) string) (Accounts, error) {
	r := reader{getenv: getenv}
	a := Accounts{DatabaseURL: r.postgresURL("DATABASE_URL", true), Stripe: r.stripe(), Clerk: r.clerk()}
	return a, r.err()
}

// reader collects problems while reading variables.
type reader struct {
	getenv   func(string) string
	problems []string
}

func (r *reader) err() error {
	if len(r.problems) == 0 {
		return nil
	}
	return &Error{Problems: r.problems}
}

func (r *reader) fail(name, format string, args ...any) {
	r.problems = append(r.problems, name+" "+fmt.Sprintf(format, args...))
}

func (r *reader) get(name string, required bool) string {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" && required {
		r.fail(name, "is required")
	}
	return v
}

func (r *reader) port(name string, def int) int {
	v := r.get(name, false)
	if v == "" {
		return def
	}
	p, err := strconv.Atoi(v)
	if err != nil || p < 1 || p > 65535 {
		r.fail(name, "must be a port number between 1 and 65535")
		return def
	}
	return p
}

func (r *reader) host(name string) string {
	v := r.get(name, false)
	if v != "" && v != "localhost" && net.ParseIP(v) == nil {
		r.fail(name, "must be an IP address or localhost")
		return ""
	}
	return v
}

// url accepts https URLs, and http URLs only on loopback hosts (local
// development and tests): a token key set fetched over plain HTTP from the
// internet could be swapped by anyone on the path.
func (r *reader) url(name string, required bool) string {
	v := r.get(name, required)
	if v == "" {
		return ""
	}
	if err := secureurl.Check(v); err != nil {
		r.fail(name, "%v", err)
		return ""
	}
	return v
}

func (r *reader) list(name string, required bool) []string {
	var out []string
	for _, s := range strings.Split(r.get(name, required), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if required && len(out) == 0 && strings.TrimSpace(r.getenv(name)) != "" {
		r.fail(name, "must list at least one value")
	}
	return out
}

func (r *reader) postgresURL(name string, required bool) string {
	return r.dsn(name, required, "PostgreSQL connection", []string{"postgres", "postgresql"},
		func(v string) error { _, err := pgxpool.ParseConfig(v); return err })
}

func (r *reader) redisURL(name string, required bool) string {
	return r.dsn(name, required, "Redis", []string{"redis", "rediss"},
		func(v string) error { _, err := redis.ParseURL(v); return err })
}

// dsn reads a connection URL with one of schemes and checks it with parse.
// The parser's own error is dropped: it may quote the URL, password and all.
func (r *reader) dsn(name string, required bool, kind string, schemes []string, parse func(string) error) string {
	v := r.get(name, required)
	if v == "" {
		return ""
	}
	scheme, _, _ := strings.Cut(v, "://")
	if !slices.Contains(schemes, scheme) {
		r.fail(name, "must be a %s:// URL", strings.Join(schemes, ":// or "))
		return ""
	}
	if parse(v) != nil {
		r.fail(name, "is not a valid %s URL", kind)
		return ""
	}
	return v
}

// stripe reads the billing variables: all of STRIPE_API_KEY,
// STRIPE_WEBHOOK_SECRET and STRIPE_PRO_PRICE_ID, or none (billing off), and
// APP_RETURN_URL with them.
func (r *reader) stripe() Stripe {
	s := Stripe{
		APIKey:        r.get("STRIPE_API_KEY", false),
		WebhookSecret: r.get("STRIPE_WEBHOOK_SECRET", false),
		ProPriceID:    r.get("STRIPE_PRO_PRICE_ID", false),
		APIBase:       r.url("STRIPE_API_BASE", false),
		ReturnURL:     r.get("APP_RETURN_URL", false),
	}
	set := 0
	for _, v := range []string{s.APIKey, s.WebhookSecret, s.ProPriceID} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		return Stripe{}
	case set < 3:
		r.fail("STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET and STRIPE_PRO_PRICE_ID", "must be set together (or none, to turn billing off)")
	}
	if u, err := url.Parse(s.ReturnURL); err != nil || u.Scheme == "" {
		r.fail("APP_RETURN_URL", "must be an absolute URL (https://… or the app's own scheme) when billing is on")
	}
	return s
}

// clerk reads the account-lifecycle variables: a webhook secret must be a
// Svix signing secret, a secret key Clerk's (sk_…, not the publishable
// pk_… key).
func (r *reader) clerk() Clerk {
	c := Clerk{
		WebhookSecret: r.get("CLERK_WEBHOOK_SECRET", false),
		SecretKey:     r.get("CLERK_SECRET_KEY", false),
		APIURL:        cmp.Or(r.url("CLERK_API_URL", false), DefaultClerkAPIURL),
	}
	if s := c.WebhookSecret; s != "" {
		if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_")); err != nil || !strings.HasPrefix(s, "whsec_") {
			r.fail("CLERK_WEBHOOK_SECRET", "must be the endpoint's signing secret (whsec_…, from the Clerk dashboard's Webhooks page)")
		}
	}
	if s := c.SecretKey; s != "" && !strings.HasPrefix(s, "sk_") {
		r.fail("CLERK_SECRET_KEY", "must be a Clerk secret key (sk_live_… or sk_test_…, from the dashboard's API keys page)")
	}
	return c
}

// plansAndPrices reads SAS_PLANS_FILE and SAS_PRICES_FILE, and checks that
// every model of every plan has a price: a model served without one would
// be served without a money budget.
func (r *reader) plansAndPrices() (quota.Plans, quota.Prices) {
	plans, err := quota.Load(r.get("SAS_PLANS_FILE", false))
	if err != nil {
		r.problems = append(r.problems, err.Error())
		plans = quota.BuiltIn()
	}
	prices, err := quota.LoadPrices(r.get("SAS_PRICES_FILE", false))
	if err != nil {
		r.problems = append(r.problems, err.Error())
		return plans, quota.BuiltInPrices()
	}
	if missing := quota.Unpriced(plans, prices); len(missing) > 0 {
		r.fail("SAS_PRICES_FILE", "has no price for the models of the plans (%s)", strings.Join(missing, ", "))
	}
	return plans, prices
}

// upstreams reads SAS_UPSTREAMS_FILE, if set: every model of every plan
// needs an upstream there, and every upstream its key in the environment.
func (r *reader) upstreams(plans quota.Plans, prices quota.Prices) *upstream.Table {
	path := r.get("SAS_UPSTREAMS_FILE", false)
	if path == "" {
		return nil
	}
	t, err := upstream.Load(path, r.getenv, plans, prices)
	if err != nil {
		r.problems = append(r.problems, err.Error())
	}
	return t
}

func (r *reader) logLevel(name string) slog.Level {
	switch strings.ToLower(r.get(name, false)) {
	case "", "info":
		return slog.LevelInfo
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		r.fail(name, "must be one of debug, info, warn, error")
		return slog.LevelInfo
	}
}

func (r *reader) addr(name, def string) string {
	v := r.get(name, false)
	if v == "" {
		return def
	}
	_, port, err := net.SplitHostPort(v)
	if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 0 || p > 65535 {
		r.fail(name, "must be host:port or :port")
		return def
	}
	return v
}

// days reads a positive whole number of days.
func (r *reader) days(name string, def int) time.Duration {
	v := r.get(name, false)
	n := def
	if v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 100*365 {
			r.fail(name, "must be a whole number of days, at least 1")
			n = def
		}
	}
	return time.Duration(n) * 24 * time.Hour
}
