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
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

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
	"github.com/signals-sorcery/sas/gateway/redisclient"
	"github.com/signals-sorcery/sas/gateway/templates"
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

// Gateway is an assembled gateway. Close releases what New opened.
type Gateway struct {
	Handler http.Handler
	API     *httpapi.Server
	Store   Store
	DB      *postgres.DB // nil when Deps.Store was given
	Users   *usercache.Cache
	Limiter *quota.Limiter
	Metrics *metrics.Metrics
	Errors  *errreport.Reporter // nil without SENTRY_DSN

	redis *redis.Client
	// closers release what New opened or started, the last first: the
	// background work (the ledger's drain after a last flush, the bus, the
	// change feed), the error reports, Redis, PostgreSQL.
	closers []func()
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
	// Redis, when set, replaces the client of REDIS_URL (its owner closes
	// it).
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
	// Templates, when set, replaces the prompt templates read from
	// PostgreSQL (the dev stack's without a database).
	Templates *templates.Cache
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
	g := &Gateway{Store: deps.Store, redis: deps.Redis, Metrics: m}
	built := false
	defer func() {
		if !built {
			g.Close() // what was opened before the failure
		}
	}()
	if g.Store == nil {
		if g.DB, err = postgres.Open(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
		g.Store = g.DB
		g.closers = append(g.closers, g.DB.Close)
	}
	redisclient.SetLogger(log)
	if g.redis == nil {
		if g.redis, err = redisclient.New(cfg.RedisURL); err != nil {
			return nil, err
		}
		g.closers = append(g.closers, func() { _ = g.redis.Close() })
	}
	bus := userbus.New(g.redis, "", log)
	// The change feed (PostgreSQL stores): users keep minutes in memory
	// while it tells every instance which ones changed.
	var feed *userfeed.Feed
	var changesSeen func() time.Time // none without a feed
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
	// Every change the store makes to a user shows at once here and,
	// through the bus, on the other instances.
	g.Store.AnnounceTo(func(ctx context.Context, clerkUserID string) {
		g.Users.Forget(clerkUserID)
		bus.Changed(ctx, clerkUserID)
	})
	stream := cmp.Or(cfg.UsageStream, ledger.DefaultStream)
	if deps.NoLedger {
		stream = ""
	}
	g.Limiter = quota.NewLimiter(g.redis, quota.LimiterOptions{Now: deps.Now, SlotLease: deps.SlotLease, UsageStream: stream})
	var drainer *ledger.Drainer
	if stream != "" {
		drainer = ledger.New(ledger.Options{Redis: g.redis, Stream: stream, Store: g.Store, ClaimIdle: deps.LedgerClaimIdle,
			Retention: cfg.UsageRetention, Metrics: g.Metrics, Logger: log})
	}
	if g.Errors, err = errreport.New(cfg.SentryDSN, buildinfo.String(), deps.HTTPClientTransport()); err != nil {
		return nil, err
	}
	g.closers = append(g.closers, func() { g.Errors.Close(2 * time.Second) })
	plans, prices := quota.OrBuiltIn(cfg.Plans, cfg.Prices)
	if missing := quota.Unpriced(plans, prices); len(missing) > 0 {
		return nil, fmt.Errorf("no price for the models of the plans (%s)", strings.Join(missing, ", "))
	}
	var proxy httpapi.AIProxy
	upstreams := cfg.Upstreams
	if upstreams == nil && cfg.OpenAIAPIKey != "" {
		upstreams = upstream.Single(cfg.OpenAIBaseURL, cfg.OpenAIAPIKey, prices, deps.UpstreamHeaderTimeout)
	}
	// Prompt templates: read from PostgreSQL, reloaded when an operator's
	// put or rollback is announced (and every few seconds regardless).
	// (A PostgreSQL store given in Deps counts: the dev stack's is.)
	tpl, tplBus := deps.Templates, (*userbus.Bus)(nil)
	if ts, ok := g.Store.(templates.Store); ok && tpl == nil {
		tpl, tplBus = templates.NewCache(ts, log), userbus.New(g.redis, templates.Channel, log)
	}
	if upstreams != nil {
		proxy = llmproxy.New(llmproxy.Options{Templates: tpl,
			Upstreams: upstreams, Plans: plans, Prices: prices, Limiter: g.Limiter,
			IdleTimeout: deps.UpstreamIdleTimeout, Metrics: g.Metrics, Logger: log, Now: deps.Now,
		})
	}
	var bill httpapi.Billing
	var subscriptions account.Subscriptions
	if cfg.Stripe.Enabled() {
		if g.DB == nil {
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
			"redis":    func(ctx context.Context) error { return g.redis.Ping(ctx).Err() },
		},
		Logger: log,
		Now:    deps.Now,
	})
	g.Handler = g.API
	// Work that runs until Close, detached from ctx's cancellation. Started
	// last: go-redis writes its client's options when a connection is first
	// set up, which would race with ledger.New cloning them.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	g.closers = append(g.closers, func() { stop(); background.Wait() })
	background.Go(func() { bus.Run(bg, g.Users.Forget, g.Users.Expire) })
	if feed != nil {
		background.Go(func() { feed.Run(bg, g.Users.Forget, g.Users.Expire) })
	}
	if drainer != nil {
		background.Go(func() { drainer.Run(bg) })
	}
	if tplBus != nil {
		reload := func() { _ = tpl.Reload(bg) }
		background.Go(func() { tpl.Run(bg) })
		background.Go(func() { tplBus.Run(bg, func(string) { reload() }, reload) })
	}
	built = true
	return g, nil
}

// HTTPClientTransport is the transport of Deps.HTTPClient, if any.
func (d Deps) HTTPClientTransport() http.RoundTripper {
	if d.HTTPClient == nil {
		return nil
	}
	return d.HTTPClient.Transport
}

// Close stops the ledger's drain after a last flush, the bus and the
// change feed, then releases the gateway's connections (and sends pending
// error reports). Call it after the server has drained: requests settled
// during the drain are flushed.
func (g *Gateway) Close() {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i]()
	}
	g.closers = nil
}
