// Command sas-login signs in to Signals & Sorcery from a terminal and prints
// tokens for scripts: curl -H "Authorization: Bearer $(sas-login token)" …
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
