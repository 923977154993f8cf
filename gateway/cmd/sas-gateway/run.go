package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/signals-sorcery/sas/gateway/account"
	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/billing"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/redisclient"
	"github.com/signals-sorcery/sas/gateway/serve"
	"github.com/signals-sorcery/sas/gateway/userbus"
	"github.com/signals-sorcery/sas/shared/buildinfo"
	"github.com/signals-sorcery/sas/shared/exitcode"
	"github.com/signals-sorcery/sas/shared/wire"
)

const usage = `sas-gateway — the SAS auth gateway (Clerk JWT verifier and API)

Usage:
  sas-gateway [serve]                                      serve the API (the default)
  sas-gateway dev [--auto-approve]                         the whole stack on 127.0.0.1, no cloud account
  sas-gateway migrate                                      apply database migrations
  sas-gateway users show <clerk_user_id>                   print a user
  sas-gateway users set-plan <clerk_user_id> <free|pro>    change a user's plan
  sas-gateway users set-status <clerk_user_id> <active|suspended|deleted>
                                                           (deleted: erased here only)
  sas-gateway users delete <clerk_user_id>                 delete an account as DELETE /v1/me does:
                                                           Stripe, here, then Clerk
  sas-gateway usage [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--user <clerk_user_id>] [--json]
                                                           spend per user, most expensive first
                                                           (default: the last 30 UTC days)
  sas-gateway usage prune [--older-than-days 400]          delete usage events past retention
  sas-gateway templates put <file.json>                    validate a prompt template, store it as the
                                                           next version and make it current
  sas-gateway templates list                               the current version of every template
  sas-gateway templates show <name> [--version N]          a template (default: its current version)
  sas-gateway templates rollback <name> <version>          make a stored version current again
  sas-gateway version                                      print the build version

Configuration comes from the environment (PORT, CLERK_ISSUER, CLERK_AUDIENCE,
DATABASE_URL, REDIS_URL, …): see README.md.
`

// env is what a command needs from the process.
type env struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	e := env{getenv: getenv, stdout: stdout, stderr: stderr}
	cmd, rest := "serve", args[1:]
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = e.serve(ctx, rest)
	case "migrate":
		err = e.migrate(ctx, rest)
	case "dev":
		err = e.dev(ctx, rest)
	case "users":
		err = e.users(ctx, rest)
	case "usage":
		err = e.usage(ctx, rest)
	case "templates":
		err = e.templatesCmd(ctx, rest)
	case "version", "--version", "-version":
		if err = parseFlags("version", rest, stderr); err == nil {
			fmt.Fprintln(stdout, buildinfo.String())
		}
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sas-gateway: unknown command %q\n\n%s", cmd, usage)
		return exitcode.Usage
	}
	return exitcode.Of("sas-gateway", err, stderr, oneLine)
}

// parseFlags parses a subcommand's flags (none so far besides -h) and
// returns its positional arguments' error: flag.ErrHelp after printing
// usage, exitcode.ErrUsage for a bad flag.
func parseFlags(name string, args []string, stderr io.Writer, positional ...*string) error {
	fs := flag.NewFlagSet("sas-gateway "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		return exitcode.FlagError(err)
	}
	if fs.NArg() != len(positional) {
		fmt.Fprintf(stderr, "sas-gateway %s: want %d argument(s), got %d\n\n%s", name, len(positional), fs.NArg(), usage)
		return exitcode.ErrUsage
	}
	for i, p := range positional {
		*p = fs.Arg(i)
	}
	return nil
}

func (e env) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

func (e env) serve(ctx context.Context, args []string) error {
	if err := parseFlags("serve", args, e.stderr); err != nil {
		return err
	}
	cfg, err := config.Load(e.getenv)
	if err != nil {
		return err
	}
	log := e.logger(cfg.LogLevel)
	gw, err := app.New(ctx, cfg, log, app.Deps{})
	if err != nil {
		return err
	}
	defer gw.Close()
	// HOST unset means every interface: Fly's proxy reaches the machine
	// over its private network.
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen on port %d (set PORT to change it): %w", cfg.Port, err)
	}
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen for metrics on %s (set METRICS_ADDR to change it): %w", cfg.MetricsAddr, err)
	}
	go serve.Private(ctx, mln, gw.Metrics.PrivateHandler(), log)
	log.Info("sas-gateway serving", "addr", ln.Addr().String(), "metrics", mln.Addr().String(), "version", buildinfo.String(), "config", cfg)
	return serve.Serve(ctx, serve.Server(gw.Handler, log), ln, serve.DrainTimeout, log)
}

func (e env) migrate(ctx context.Context, args []string) error {
	if err := parseFlags("migrate", args, e.stderr); err != nil {
		return err
	}
	db, err := e.openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	log := e.logger(slog.LevelInfo)
	if err := db.Migrate(ctx, log); err != nil {
		return err
	}
	log.Info("database is up to date")
	return nil
}

func (e env) users(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "sas-gateway users: want a subcommand (show, set-plan, set-status, delete)\n\n%s", usage)
		return exitcode.ErrUsage
	}
	var id, value string
	var do func(*postgres.DB) (any, error)
	switch sub := args[0]; sub {
	case "show":
		if err := parseFlags("users show", args[1:], e.stderr, &id); err != nil {
			return err
		}
		do = func(db *postgres.DB) (any, error) {
			u, err := db.User(ctx, id)
			if err != nil {
				return nil, err
			}
			b, err := db.Billing(ctx, id)
			if err != nil {
				return nil, err
			}
			return struct {
				wire.Me
				StripeCustomerID     string     `json:"stripe_customer_id,omitempty"`
				StripeSubscriptionID string     `json:"stripe_subscription_id,omitempty"`
				LastBillingEvent     string     `json:"last_billing_event,omitempty"`
				LastBillingEventAt   *time.Time `json:"last_billing_event_at,omitempty"`
				CreatedAt            time.Time  `json:"created_at"`
				UpdatedAt            time.Time  `json:"updated_at"`
			}{u.Me(), b.CustomerID, b.SubscriptionID, b.LastEvent, nonZero(b.LastEventAt), u.CreatedAt, u.UpdatedAt}, nil
		}
	case "set-plan":
		if err := parseFlags("users set-plan", args[1:], e.stderr, &id, &value); err != nil {
			return err
		}
		do = func(db *postgres.DB) (any, error) {
			u, err := db.SetPlan(ctx, id, value)
			return u.Me(), err
		}
	case "set-status":
		if err := parseFlags("users set-status", args[1:], e.stderr, &id, &value); err != nil {
			return err
		}
		do = func(db *postgres.DB) (any, error) {
			u, err := db.SetStatus(ctx, id, value)
			return u.Me(), err
		}
	case "delete":
		if err := parseFlags("users delete", args[1:], e.stderr, &id); err != nil {
			return err
		}
		return e.deleteUser(ctx, id)
	default:
		fmt.Fprintf(e.stderr, "sas-gateway users: unknown subcommand %q\n\n%s", sub, usage)
		return exitcode.ErrUsage
	}
	db, err := e.openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	defer e.announceChanges(db)()
	out, err := do(db)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// deleteUser deletes an account the way DELETE /v1/me does (the account
// package): its Stripe subscriptions cancelled when billing is configured,
// the user erased here, and deleted at Clerk when CLERK_SECRET_KEY is set.
// It prints the user as it is then, and on stderr what was done.
func (e env) deleteUser(ctx context.Context, id string) error {
	cfg, err := config.LoadAccounts(e.getenv)
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	defer e.announceChanges(db)()
	u, err := db.User(ctx, id)
	if err != nil {
		return err
	}
	log := e.logger(slog.LevelError) // the outcome is the command's own output
	var subs account.Subscriptions
	if cfg.Stripe.Enabled() {
		subs = billing.New(billing.Options{APIKey: cfg.Stripe.APIKey, WebhookSecret: cfg.Stripe.WebhookSecret,
			ProPriceID: cfg.Stripe.ProPriceID, APIBase: cfg.Stripe.APIBase, ReturnURL: cfg.Stripe.ReturnURL, DB: db, Logger: log})
	}
	accounts, err := account.New(account.Options{Store: db, Subscriptions: subs,
		ClerkSecretKey: cfg.Clerk.SecretKey, ClerkAPIURL: cfg.Clerk.APIURL, Logger: log})
	if err != nil {
		return err
	}
	if err := accounts.Delete(ctx, u); err != nil {
		return err
	}
	done := func(on bool, yes, no string) string {
		if on {
			return yes
		}
		return no
	}
	fmt.Fprintf(e.stderr, "deleted %s: %s; erased here; %s\n", id,
		done(subs != nil, "Stripe subscriptions cancelled", "billing not configured, Stripe not called"),
		done(cfg.Clerk.SecretKey != "", "deleted at Clerk", "CLERK_SECRET_KEY not set, Clerk not called: delete the user in Clerk's dashboard"))
	if u, err = db.User(ctx, id); err != nil {
		return err
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(u.Me())
}

// announceChanges makes the store announce the users it changes on the
// running instances' bus when REDIS_URL is set (it is on a Fly machine), so
// that they drop their cached copy at once; without it each instance's
// change feed finds the change within about a second. It returns what
// closes the bus's connection.
func (e env) announceChanges(db *postgres.DB) (closeBus func()) {
	bus, closeBus := e.bus(userbus.DefaultChannel, "about a second")
	if bus != nil {
		db.AnnounceTo(bus.Changed)
	}
	return closeBus
}

// bus is the running instances' bus on channel when REDIS_URL is set (nil
// otherwise, or when the URL is not valid: then stderr says the instances
// see the change within late), and what closes its connection.
func (e env) bus(channel, late string) (*userbus.Bus, func()) {
	url := strings.TrimSpace(e.getenv("REDIS_URL"))
	if url == "" {
		return nil, func() {}
	}
	rdb, err := redisclient.New(url)
	if err != nil {
		fmt.Fprintf(e.stderr, "sas-gateway: the running instances will not be told at once (%v); they see the change within %s\n", err, late)
		return nil, func() {}
	}
	return userbus.New(rdb, channel, e.logger(slog.LevelWarn)), func() { _ = rdb.Close() }
}

func (e env) openDB(ctx context.Context) (*postgres.DB, error) {
	url, err := config.LoadDatabase(e.getenv)
	if err != nil {
		return nil, err
	}
	return postgres.Open(ctx, url)
}

// oneLine renders err for the terminal: the client message of an
// application error (plus its innermost cause), else the error text.
func oneLine(err error) string {
	msg := err.Error()
	if we, ok := errors.AsType[*wire.Error](err); ok {
		msg = we.Message
		if cause := errors.Unwrap(we); cause != nil {
			msg += " (" + innermost(cause).Error() + ")"
		}
	}
	return msg
}

func innermost(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

func nonZero(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
