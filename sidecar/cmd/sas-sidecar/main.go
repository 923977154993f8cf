// Command sas-sidecar is the daemon the Electron app spawns: it signs the
// user in, keeps their tokens, and makes gateway calls for the app over
// stdio JSON-RPC and a Unix socket. The token never reaches JavaScript.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
