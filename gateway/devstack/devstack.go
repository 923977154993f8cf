// Package devstack is the whole stack on one machine, as `sas-gateway dev`
// serves it: the gateway; the dev identity provider at /dev/idp, its
// trusted issuer; two built-in dev models at /dev/upstreams (dev-a, then
// dev-b, with a switch that makes either fail) unless an OpenAI key or an
// upstream table is configured; a stand-in for Clerk's Backend API user deletion (on
// the identity provider) unless CLERK_SECRET_KEY is set; users in
// PostgreSQL from DATABASE_URL, else in memory;
// Redis from REDIS_URL, else in process (miniredis, so the real Redis
// client code runs). The sidecar's tests run it in process.
package devstack

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devidp"
	"github.com/signals-sorcery/sas/gateway/memstore"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/redisclient"
	"github.com/signals-sorcery/sas/gateway/templates"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Options configure a Stack.
type Options struct {
	// Config is the dev configuration (config.LoadDev).
	Config config.Config
	// BaseURL is where Handler is served (http://127.0.0.1:<port>): the
	// issuer is BaseURL/dev/idp, the dev model BaseURL/dev/openai/v1.
	BaseURL string
	// AutoApprove signs in without the consent page.
	AutoApprove bool
	// Now is the clock of the identity provider and the gateway's verifier
	// (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Stack is a running dev stack. Close it after its server has stopped.
type Stack struct {
	// Handler serves the gateway, /dev/idp and /dev/openai.
	Handler http.Handler
	Gateway *app.Gateway
	IdP     *devidp.Provider
	// Users, Redis, Model and Accounts say what backs the stack, for the
	// banner.
	Users, Redis, Model, Accounts string

	closers []func()
}

// New builds the stack of o. It migrates the database of DATABASE_URL.
func New(ctx context.Context, o Options) (*Stack, error) {
	s := &Stack{}
	if err := s.build(ctx, o); err != nil {
		s.Close() // what was opened before the failure
		return nil, err
	}
	return s, nil
}

func (s *Stack) build(ctx context.Context, o Options) (err error) {
	cfg := o.Config
	cfg.Issuer = o.BaseURL + "/dev/idp"
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s.Accounts = "Clerk Backend API at " + cfg.Clerk.APIURL
	var standIn string
	if cfg.Clerk.SecretKey == "" {
		// Account deletion deletes the user at the dev identity provider,
		// through the same Backend API call as at Clerk.
		standIn = "sk_dev_" + rand.Text()
		cfg.Clerk.SecretKey, cfg.Clerk.APIURL = standIn, cfg.Issuer
		s.Accounts = "dev identity provider's stand-in for Clerk's Backend API (set CLERK_SECRET_KEY for Clerk)"
	}
	s.IdP, err = devidp.New(devidp.Options{Issuer: cfg.Issuer, AutoApprove: o.AutoApprove, Now: o.Now, SecretKey: standIn})
	if err != nil {
		return err
	}
	s.Model = "OpenAI at " + cfg.OpenAIBaseURL
	var dev devUpstreams
	switch {
	case cfg.Upstreams != nil:
		s.Model = "the upstreams of SAS_UPSTREAMS_FILE (" + strings.Join(cfg.Upstreams.Names(), ", ") + ")"
	case cfg.OpenAIAPIKey == "":
		// Two built-in dev models, dev-a then dev-b for every model, each
		// with a switch that makes it fail: a failover can be watched.
		if dev, cfg.Upstreams, err = newDevUpstreams(o.BaseURL, cfg.Plans, cfg.Prices); err != nil {
			return err
		}
		s.Model = "built-in dev models dev-a, then dev-b, at " + o.BaseURL + "/dev/upstreams (make one fail: curl -X POST " +
			o.BaseURL + "/dev/upstreams/dev-a/fail; set OPENAI_API_KEY for OpenAI)"
	}
	deps := app.Deps{Now: o.Now}
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		s.closers = append(s.closers, db.Close)
		if err := db.Migrate(ctx, log); err != nil {
			return err
		}
		deps.Store, s.Users = db, "PostgreSQL from DATABASE_URL (migrated)"
		if err := seedTemplate(ctx, db); err != nil {
			return err
		}
	} else {
		deps.Store, s.Users = memstore.New(o.Now), "in memory (set DATABASE_URL for Postgres)"
		example := templates.Example()
		example.Version = 1
		deps.Templates = templates.Static(example)
	}
	s.Redis = "Redis from REDIS_URL"
	if cfg.RedisURL == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start the in-process Redis: %w", err)
		}
		s.closers = append(s.closers, mr.Close)
		// The client every other Redis gets (redisclient.New: timeouts,
		// retries, no maintenance notifications, which miniredis would
		// refuse with a warning at every start).
		if deps.Redis, err = redisclient.New("redis://" + mr.Addr()); err != nil {
			return err
		}
		s.closers = append(s.closers, func() { _ = deps.Redis.Close() })
		s.Redis = "in-process Redis (miniredis; set REDIS_URL for a real one)"
	}
	if s.Gateway, err = app.New(ctx, cfg, log, deps); err != nil {
		return err
	}
	s.closers = append(s.closers, s.Gateway.Close)
	r := s.Gateway.API.Router()
	r.Mount("/dev/idp", http.StripPrefix("/dev/idp", s.IdP.Handler()))
	if dev != nil {
		dev.routes(r)
	}
	s.Handler = s.Gateway.Handler
	return nil
}

// Close releases what the stack holds, the last built first.
func (s *Stack) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// seedTemplate stores the example prompt template unless the database has
// one of that name already (an operator's version is never replaced).
func seedTemplate(ctx context.Context, db *postgres.DB) error {
	example := templates.Example()
	_, _, err := db.Template(ctx, example.Name, 0)
	if wire.ErrorCode(err) != wire.CodeNotFound {
		return err
	}
	_, err = db.PutTemplate(ctx, example)
	return err
}
