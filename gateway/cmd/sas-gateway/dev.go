package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strconv"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devstack"
	"github.com/signals-sorcery/sas/gateway/serve"
	"github.com/signals-sorcery/sas/shared/buildinfo"
	"github.com/signals-sorcery/sas/shared/exitcode"
)

// dev runs the whole stack (devstack) in one process on 127.0.0.1.
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
	base := "http://" + ln.Addr().String()
	stack, err := devstack.New(ctx, devstack.Options{Config: cfg, BaseURL: base, AutoApprove: *autoApprove, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	defer stack.Close()
	// The local profile points at port 8080; on another port, say how to
	// point sas-login here.
	loginEnv := ""
	if cfg.Port != config.DefaultPort {
		loginEnv = "export SAS_ISSUER=" + base + "/dev/idp SAS_GATEWAY_URL=" + base + "\n  "
	}
	mln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen for metrics on %s (set METRICS_ADDR to change it): %w", cfg.MetricsAddr, err)
	}
	go serve.Private(ctx, mln, stack.Gateway.Metrics.PrivateHandler(), log)

	fmt.Fprintf(e.stderr, `sas-gateway dev (version %s): the whole stack on this machine, no cloud account
  gateway        %s
  identity       %s/dev/idp (dev IdP, trusted as issuer; audience %s%s)
  users          %s
  quotas         %s
  AI model       %s
  accounts       %s
  metrics        http://%s/metrics

Try:
  %ssas-login --profile local login
  curl -H "Authorization: Bearer $(sas-login --profile local token)" %s/v1/me

`, buildinfo.String(), base, base, config.DevAudience, map[bool]string{true: "; auto-approve on", false: ""}[*autoApprove], stack.Users, stack.Redis, stack.Model, stack.Accounts, mln.Addr().String(), loginEnv, base)
	return serve.Serve(ctx, serve.Server(stack.Handler, log), ln, serve.DrainTimeout, log)
}
