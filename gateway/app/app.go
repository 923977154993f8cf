// Package app assembles the gateway from its configuration: the user store,
// Redis, the token verifier, the cache and the HTTP API. The `sas-gateway`
// commands, `scripts/bench` and the end-to-end tests build it the same way.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/account"
	"github.com/signals-sorcery/sas/gateway/auth"
	"github.com/signals-sorcery/sas/gateway/billing"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/errreport"
	"github.com/signals-sorcery/sas/gateway/httpapi"
	"github.com/signals-sorcery/sas/gateway/ledger"
	"github.com/signals-sorcery/sas/gateway/llmproxy"
	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/upstream"
	"github.com/signals-sorcery/sas/gateway/userbus"
	"github.com/signals-sorcery/sas/gateway/usercache"
	"github.com/signals-sorcery/sas/gateway/userfeed"
	"github.com/signals-sorcery/sas/shared/buildinfo"
)

// Store is the user store and usage ledger the gateway runs on:
// postgres.DB, or memstore for `sas-gateway dev` without a database.
type Store interface {
	UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error)
	Ping(ctx context.Context) error
	// AnnounceTo makes f hear of every user the store changes, after the
	// commit: the store is the one publisher of user changes.
	AnnounceTo(f func(ctx context.Context, clerkUserID string))
	account.Store
	ledger.Store
	httpapi.UsageReader
}

// Gateway is an assembled gateway. Close releases its connections.
type Gateway struct {
	Handler http.Handler
	API     *httpapi.Server
	Store   Store
	DB      *postgres.DB // nil when Deps.Store was given
	Redis   *redis.Client
	Users   *usercache.Cache
	Limiter *quota.Limiter
	Metrics *metrics.Metrics
	Errors  *errreport.Reporter // nil without SENTRY_DSN
	// Ledger drains the usage stream into Store until Close (nil with
	// Deps.NoLedger).
	Ledger *ledger.Drainer
	// Bus tells the other instances that a user changed, and makes this
	// one forget the users they changed, until Close.
	Bus *userbus.Bus
	// stop ends the background work (the ledger's drain, the bus), done
	// waits for it.
	stop context.CancelFunc
	done sync.WaitGroup
}

// Deps are optional overrides of what New builds, for tests.
type Deps struct {
	HTTPClient *http.Client     // for JWKS and discovery
	Now        func() time.Time // clock of the verifier and the cache
	// NoUserCache sends every authenticated request to Postgres (for
	// benchmarks that measure what the cache saves).
	NoUserCache bool
	// UserTTL overrides how long a user row is served from memory (tests
	// make it long, to show what only the bus can make an instance forget).
	UserTTL time.Duration
	// NoTokenCache verifies every token's signature (for benchmarks).
	NoTokenCache bool
	// Store, when set, replaces the Postgres store of DATABASE_URL.
	Store Store
	// Redis, when set, replaces the client of REDIS_URL.
	Redis *redis.Client
	// UpstreamHeaderTimeout and UpstreamIdleTimeout override the proxy's
	// bounds on the upstream (tests make them short).
	UpstreamHeaderTimeout, UpstreamIdleTimeout time.Duration
	// SlotLease overrides how long a concurrency slot outlives its last
	// renewal (tests make it short).
	SlotLease time.Duration
	// NoLedger turns the usage ledger off: no stream, no drain (for
	// benchmarks that measure what it costs).
	NoLedger bool
	// LedgerClaimIdle overrides how long an unacknowledged usage event
	// waits before another instance takes it over.
	LedgerClaimIdle time.Duration
}

// New builds the gateway of cfg. It does not wait for Postgres, Redis or the
// issuer: they are dialled on first use, so the process starts and reports
// what is missing through /readyz instead of crash-looping.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, deps Deps) (*Gateway, error) {
	m := metrics.New()
	verifier, err := auth.New(auth.Options{
		Issuer:            cfg.Issuer,
		JWKSURL:           cfg.JWKSURL,
		Audiences:         cfg.Audiences,
		AuthorizedParties: cfg.AuthorizedParties,
		HTTPClient:        deps.HTTPClient,
		Now:               deps.Now,
		Logger:            log,
		NoCache:           deps.NoTokenCache,
		OnRefresh:         m.JWKSRefreshed,
	})
	if err != nil {
		return nil, err
	}
	g := &Gateway{Store: deps.Store, Redis: deps.Redis, Metrics: m}
	if g.Store == nil {
		if g.DB, err = postgres.Open(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
		g.Store = g.DB
	}
	// go-redis's logger is process-wide: the first gateway's logger serves
	// (setting it again would race with clients already logging).
	setRedisLogger.Do(func() { redis.SetLogger(redisLogger{log}) })
	if g.Redis == nil {
		if g.Redis, err = NewRedis(cfg.RedisURL); err != nil {
			g.Close()
			return nil, err
		}
	}
	g.Bus = userbus.New(g.Redis, "", log)
	// The change feed (PostgreSQL stores): users keep minutes in memory
	// while it tells every instance which ones changed.
	var feed *userfeed.Feed
	changesSeen := func() time.Time { return time.Time{} }
	if fs, ok := g.Store.(userfeed.Store); ok {
		feed = userfeed.New(fs, userfeed.Options{Now: deps.Now, Logger: log})
		changesSeen = feed.Seen
	}
	g.Users = usercache.New(g.Store, usercache.Options{TTL: deps.UserTTL, Now: deps.Now, ChangesSeen: changesSeen, OnLookup: m.UserCache, OnStale: func(err error) {
		// Postgres is down and a known user is served from memory: the
		// outage shows in the metrics, as a refused request would.
		m.DependencyError("postgres")
		log.Debug("user served from the cache: the database is unavailable", "err", err)
	}})
	m.UserCacheSize(g.Users.Len)
	var users httpapi.UserStore = g.Users
	if deps.NoUserCache {
		users = g.Store
	}
	// Work that runs until Close, detached from ctx's cancellation.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	g.stop = stop
	// Every change the store makes to a user shows at once here and,
	// through the bus, on the other instances.
	g.Store.AnnounceTo(func(ctx context.Context, clerkUserID string) {
		g.Users.Forget(clerkUserID)
		g.Bus.Changed(ctx, clerkUserID)
	})
	stream := cmp.Or(cfg.UsageStream, ledger.DefaultStream)
	if deps.NoLedger {
		stream = ""
	}
	g.Limiter = quota.NewLimiter(g.Redis, quota.LimiterOptions{Now: deps.Now, SlotLease: deps.SlotLease, UsageStream: stream})
	if stream != "" {
		g.Ledger = ledger.New(ledger.Options{Redis: g.Redis, Stream: stream, Store: g.Store, ClaimIdle: deps.LedgerClaimIdle,
			Retention: cfg.UsageRetention, Metrics: g.Metrics, Logger: log})
	}
	if g.Errors, err = errreport.New(cfg.SentryDSN, buildinfo.String(), deps.HTTPClientTransport()); err != nil {
		g.Close()
		return nil, err
	}
	plans, prices := quota.OrBuiltIn(cfg.Plans, cfg.Prices)
	if missing := quota.Unpriced(plans, prices); len(missing) > 0 {
		g.Close()
		return nil, fmt.Errorf("no price for the models of the plans (%s)", strings.Join(missing, ", "))
	}
	var proxy httpapi.AIProxy
	upstreams := cfg.Upstreams
	if upstreams == nil && cfg.OpenAIAPIKey != "" {
		upstreams = upstream.Single(cfg.OpenAIBaseURL, cfg.OpenAIAPIKey, prices, deps.UpstreamHeaderTimeout)
	}
	if upstreams != nil {
		proxy = llmproxy.New(llmproxy.Options{
			Upstreams: upstreams, Plans: plans, Prices: prices, Limiter: g.Limiter,
			IdleTimeout: deps.UpstreamIdleTimeout, Metrics: g.Metrics, Logger: log, Now: deps.Now,
		})
	}
	var bill httpapi.Billing
	var subscriptions account.Subscriptions
	if cfg.Stripe.Enabled() {
		if g.DB == nil {
			g.Close()
			return nil, errors.New("billing needs PostgreSQL (DATABASE_URL)")
		}
		b := billing.New(billing.Options{
			APIKey: cfg.Stripe.APIKey, WebhookSecret: cfg.Stripe.WebhookSecret, ProPriceID: cfg.Stripe.ProPriceID,
			APIBase: cfg.Stripe.APIBase, ReturnURL: cfg.Stripe.ReturnURL, DB: g.DB,
			HTTPClient: deps.HTTPClient, Logger: log,
		})
		bill, subscriptions = b, b
	}
	accounts, err := account.New(account.Options{
		Store: g.Store, Subscriptions: subscriptions,
		ClerkSecretKey: cfg.Clerk.SecretKey, ClerkAPIURL: cfg.Clerk.APIURL, WebhookSecret: cfg.Clerk.WebhookSecret,
		HTTPClient: deps.HTTPClient, Logger: log,
	})
	if err != nil {
		g.Close()
		return nil, err
	}
	g.API = httpapi.New(httpapi.Options{
		Billing:  bill,
		Accounts: accounts,
		Usage:    g.Store,
		Verifier: verifier,
		Users:    users,
		Plans:    plans,
		Quota:    g.Limiter,
		Proxy:    proxy,
		Metrics:  g.Metrics,
		Errors:   g.Errors,
		Checks: map[string]httpapi.Check{
			"postgres": g.Store.Ping,
			"redis":    func(ctx context.Context) error { return g.Redis.Ping(ctx).Err() },
		},
		Logger: log,
		Now:    deps.Now,
	})
	g.Handler = g.API
	// Started last: go-redis writes its client's options when a connection
	// is first set up, which would race with ledger.New cloning them.
	g.done.Go(func() { g.Bus.Run(bg, g.Users.Forget, g.Users.Expire) })
	if feed != nil {
		g.done.Go(func() { feed.Run(bg, g.Users.Forget, g.Users.Expire) })
	}
	if g.Ledger != nil {
		g.done.Go(func() { g.Ledger.Run(bg) })
	}
	return g, nil
}

// HTTPClientTransport is the transport of Deps.HTTPClient, if any.
func (d Deps) HTTPClientTransport() http.RoundTripper {
	if d.HTTPClient == nil {
		return nil
	}
	return d.HTTPClient.Transport
}

// Close stops the ledger's drain after a last flush and the bus, then
// releases the gateway's connections (and sends pending error reports).
// Call it after the server has drained: requests settled during the drain
// are flushed.
func (g *Gateway) Close() {
	if g.stop != nil {
		g.stop()
		g.done.Wait()
	}
	g.Errors.Close(2 * time.Second)
	if g.DB != nil {
		g.DB.Close()
	}
	if g.Redis != nil {
		_ = g.Redis.Close()
	}
}

// NewRedis returns a client for a redis:// or rediss:// URL with timeouts
// short enough that a dead Redis answers 503 quickly instead of hanging.
func NewRedis(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		// The parser's error may quote the URL with its password.
		return nil, errors.New("redis: REDIS_URL is not a valid redis:// or rediss:// URL")
	}
	opts.DialTimeout = 2 * time.Second
	// go-redis retries a failed dial 5 times by default; a Redis that
	// refuses connections should turn into a fast 503, not a 1 s stall.
	opts.DialerRetries = 2
	opts.DialerRetryTimeout = 50 * time.Millisecond
	opts.MaxRetries = 1
	opts.ReadTimeout = time.Second
	opts.WriteTimeout = time.Second
	opts.PoolTimeout = 2 * time.Second
	// Maintenance notifications are Redis Enterprise's; asked for on
	// Upstash or redis-server, the handshake fails, go-redis logs a warning
	// at every start and then rewrites its options while other goroutines
	// may read them.
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(opts), nil
}

var setRedisLogger sync.Once

// redisLogger sends go-redis's internal messages (dial failures, pool
// events) to slog instead of its own stderr logger: one log format.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn("redis", "msg", fmt.Sprintf(format, v...))
}

// ServeMetrics serves /metrics on ln until ctx is done.
func ServeMetrics(ctx context.Context, ln net.Listener, m *metrics.Metrics, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	// Go's profiler, on the private listener only (never the API's): the
	// operator profiles a running machine over `fly proxy 9091`.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	_ = srv.Serve(ln)
}

// Serving limits. WriteTimeout stays unset on purpose: streamed chat
// completions legitimately write for minutes; handlers bound their own work.
const (
	ReadHeaderTimeout = 10 * time.Second
	ReadTimeout       = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	// DrainTimeout is how long in-flight requests may finish after SIGTERM
	// or SIGINT. fly.toml's kill_timeout must be longer.
	DrainTimeout = 25 * time.Second
)

// Server returns an http.Server for h with the serving limits.
func Server(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve serves srv on ln until ctx is done, then stops accepting
// and waits up to drain for in-flight requests before closing the rest.
// Request contexts are not derived from ctx, so a signal does not cancel
// the requests it is waiting for.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		log.Warn("drain timed out: closing remaining connections", "err", err)
		_ = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", serr)
	}
	return err
}
