// Command render draws a Grafana dashboard's panels to a PNG from the same
// PromQL queries Grafana would run, against a real Prometheus. It is not
// Grafana: the picture says so in its footer.
//
//	go run . -dashboard ../sas-gateway.json -prometheus http://127.0.0.1:9090 \
//	    -start 2024-05-01T12:00:00Z -end 2024-05-01T12:30:00Z -step 5s -out dashboard.png
//
// It prints one line per panel: its title, how many series its queries
// returned, and whether it had data. A query Prometheus rejects is an
// error naming the panel and the query (exit status 1).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := ParseArgs(args, stderr)
	if err != nil {
		if err == errHelp {
			return 0
		}
		fmt.Fprintln(stderr, "render:", err)
		return 2
	}
	if err := Run(ctx, opts, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "render:", err)
		return 1
	}
	return 0
}
