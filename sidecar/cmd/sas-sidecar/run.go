package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/signals-sorcery/sas/shared/buildinfo"
	"github.com/signals-sorcery/sas/shared/exitcode"
	"github.com/signals-sorcery/sas/sidecar/daemon"
	"github.com/signals-sorcery/sas/sidecar/localapi"
	"github.com/signals-sorcery/sas/sidecar/profile"
	"github.com/signals-sorcery/sas/sidecar/rpc"
	"github.com/signals-sorcery/sas/sidecar/session"
)

const usage = `sas-sidecar — the Signals & Sorcery desktop daemon (spawned by the app)

Usage:
  sas-sidecar serve [--stdio] [--socket PATH] [--log-level info]
  sas-sidecar version

serve answers JSON-RPC 2.0 on stdin/stdout with --stdio (one JSON object a
line: status, login, completeLogin, logout, request; notifications ready,
authChanged, loginStarted) and HTTP on a Unix socket (default
$XDG_RUNTIME_DIR/sas/sidecar-<profile>.sock; on Windows the named pipe
\\.\pipe\sas-sidecar-<profile>-<user SID>): GET /sidecar/status,
POST /sidecar/login, POST /sidecar/completeLogin, POST /sidecar/logout, and
/v1/… proxied to the gateway.
With --stdio it exits when stdin closes. Logs go to stderr.

Configuration flags (also accepted): --profile, --issuer, --client-id,
--gateway, --scopes, --port, --token-store (see sas-login --help); the
app's own redirect URI for login {"redirect":"app"} is SAS_APP_REDIRECT_URI
(default sas://callback).
`

// ShutdownTimeout bounds the exit after stdin closes or a signal: the
// contract allows 2 s.
const ShutdownTimeout = 1500 * time.Millisecond

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return exitcode.Usage
	}
	var err error
	switch args[1] {
	case "serve":
		err = serve(ctx, args[2:], getenv, stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, buildinfo.String())
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sas-sidecar: unknown command %q\n\n%s", args[1], usage)
		return exitcode.Usage
	}
	return exitcode.Of("sas-sidecar", err, stderr, nil)
}

func serve(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sas-sidecar serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	stdio := fs.Bool("stdio", false, "answer JSON-RPC on stdin/stdout, and exit when stdin closes")
	socketPath := fs.String("socket", "", "Unix socket path, or named pipe on Windows (default per profile: $XDG_RUNTIME_DIR/sas/…, \\\\.\\pipe\\sas-sidecar-<profile>-<SID>)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	var pf profile.Flags
	pf.Register(fs)
	if err := fs.Parse(args); err != nil {
		return exitcode.FlagError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sas-sidecar serve: unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return exitcode.ErrUsage
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	settings, err := pf.Resolve(getenv)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	sess, err := session.Open(session.Options{Settings: settings})
	if err != nil {
		return err
	}
	watch := time.Duration(0)
	if v := getenv("SAS_SIDECAR_WATCH_INTERVAL"); v != "" {
		if watch, err = time.ParseDuration(v); err != nil {
			return fmt.Errorf("SAS_SIDECAR_WATCH_INTERVAL: %w", err)
		}
	}
	d := daemon.New(daemon.Options{Session: sess, Logger: log, WatchInterval: watch})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The socket (on Windows the named pipe: one handler, either listener).
	var srv *http.Server
	socket := ""
	ln, path, err := listenSocket(*socketPath, getenv, settings.Profile, log)
	switch {
	case err != nil && !*stdio:
		return err // the socket is all there is to serve
	case err != nil:
		// The app still has stdio: serve it, and say why there is no
		// socket (ready says "socket": null).
		log.Warn("the local socket cannot be served; serving stdio only", "err", err)
	default:
		socket = path
		srv = &http.Server{Handler: localapi.Handler(d, log), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() { _ = srv.Serve(ln) }()
		defer ln.Close() // removes the socket file, frees the pipe name
	}
	go d.Watch(ctx)

	var rpcDone chan error
	if *stdio {
		s := rpc.NewServer(d, stdout, log)
		s.Notify("ready", map[string]any{"socket": nullable(socket), "version": buildinfo.String()})
		rpcDone = make(chan error, 1)
		go func() { rpcDone <- s.Serve(ctx, stdin) }()
	} else {
		log.Info("sas-sidecar serving", "socket", socket, "version", buildinfo.String(), "profile", settings.Profile)
	}
	select {
	case <-ctx.Done():
		log.Info("signal received: shutting down")
	case err := <-rpcDone:
		log.Info("stdin closed: shutting down", "err", errString(err))
	}
	cancel()
	// End a sign-in in progress, then the socket's requests, all within
	// one deadline.
	stopWithin(ShutdownTimeout,
		func(context.Context) { d.Close() },
		func(ctx context.Context) {
			if srv != nil && srv.Shutdown(ctx) != nil {
				_ = srv.Close()
			}
		})
	return nil
}

// stopWithin runs the shutdown steps in order against one deadline,
// timeout from now: a step still running then is left behind (the process
// is exiting), and the steps after it do not run.
func stopWithin(timeout time.Duration, steps ...func(ctx context.Context)) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, step := range steps {
		done := make(chan struct{})
		go func() { step(ctx); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// listenSocket listens on path, or on the profile's default socket.
func listenSocket(path string, getenv func(string) string, profile string, log *slog.Logger) (net.Listener, string, error) {
	if path == "" {
		var err error
		if path, err = localapi.DefaultSocketPath(getenv, profile); err != nil {
			return nil, "", err
		}
	}
	ln, err := localapi.Listen(path, log)
	return ln, path, err
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
