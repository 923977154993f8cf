package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devidp"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/memstore"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/shared/buildinfo"
	"github.com/signals-sorcery/sas/shared/exitcode"
)

// dev runs the whole stack in one process on 127.0.0.1: the gateway, the
// dev identity provider at /dev/idp as its trusted issuer, Postgres from
// DATABASE_URL or in-memory users, Redis from REDIS_URL or an in-process
// Redis (miniredis, so the real Redis client code runs).
func (e env) dev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sas-gateway dev", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage) }
	autoApprove := fs.Bool("auto-approve", false, "sign in without the consent page (as dev@example.com, or the login_hint)")
	if err := fs.Parse(args); err != nil {
		return exitcode.FlagError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "sas-gateway dev: unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return exitcode.ErrUsage
	}
	cfg, err := config.LoadDev(e.getenv)
	if err != nil {
		return err
	}
	log := e.logger(cfg.LogLevel)
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen on 127.0.0.1:%d (set PORT to change it): %w", cfg.Port, err)
	}
	idp, err := devidp.New(devidp.Options{Issuer: cfg.Issuer, AutoApprove: *autoApprove})
	if err != nil {
		ln.Close()
		return err
	}
	base := "http://" + ln.Addr().String()
	// The local profile points at port 8080; on another port, say how to
	// point sas-login here.
	loginEnv := ""
	if cfg.Port != config.DefaultPort {
		loginEnv = "export SAS_ISSUER=" + cfg.Issuer + " SAS_GATEWAY_URL=" + base + "\n  "
	}
	model := "OpenAI at " + cfg.OpenAIBaseURL
	var devModel *devllm.Model
	if cfg.OpenAIAPIKey == "" {
		// The built-in dev model, served on this port at /dev/openai, with
		// a key of its own so the proxy's real code path runs.
		cfg.OpenAIAPIKey, cfg.OpenAIBaseURL = "sk-dev-"+rand.Text(), base+"/dev/openai/v1"
		devModel = devllm.New(devllm.Options{APIKey: cfg.OpenAIAPIKey})
		model = "built-in dev model at " + cfg.OpenAIBaseURL + " (set OPENAI_API_KEY for OpenAI)"
	}
	deps := app.Deps{}
	users, rdbDesc := "in memory (set DATABASE_URL for Postgres)", ""
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			ln.Close()
			return err
		}
		defer db.Close()
		if err := db.Migrate(ctx, log); err != nil {
			ln.Close()
			return err
		}
		deps.Store, users = db, "PostgreSQL from DATABASE_URL (migrated)"
	} else {
		deps.Store = memstore.New(nil)
	}
	if cfg.RedisURL != "" {
		rdbDesc = "Redis from REDIS_URL"
	} else {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			ln.Close()
			return fmt.Errorf("start the in-process Redis: %w", err)
		}
		defer mr.Close()
		deps.Redis = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		rdbDesc = "in-process Redis (miniredis; set REDIS_URL for a real one)"
	}
	gw, err := app.New(ctx, cfg, log, deps)
	if err != nil {
		ln.Close()
		return err
	}
	defer gw.Close()
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen for metrics on %s (set METRICS_ADDR to change it): %w", cfg.MetricsAddr, err)
	}
	go app.ServeMetrics(ctx, mln, gw.Metrics, log)
	gw.API.Router().Mount("/dev/idp", http.StripPrefix("/dev/idp", idp.Handler()))
	if devModel != nil {
		gw.API.Router().Mount("/dev/openai", http.StripPrefix("/dev/openai", devModel.Handler()))
	}

	fmt.Fprintf(e.stderr, `sas-gateway dev (version %s): the whole stack on this machine, no cloud account
  gateway        %s
  identity       %s/dev/idp (dev IdP, trusted as issuer; audience %s%s)
  users          %s
  quotas         %s
  AI model       %s
  metrics        http://%s/metrics

Try:
  %ssas-login --profile local login
  curl -H "Authorization: Bearer $(sas-login --profile local token)" %s/v1/me

`, buildinfo.String(), base, base, config.DevAudience, map[bool]string{true: "; auto-approve on", false: ""}[*autoApprove], users, rdbDesc, model, mln.Addr().String(), loginEnv, base)
	return app.Serve(ctx, app.Server(gw.Handler, log), ln, app.DrainTimeout, log)
}
