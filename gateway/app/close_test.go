package app_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
)

// TestNewReleasesWhatItOpenedOnFailure: a configuration refused after the
// PostgreSQL pool and the Redis client are open (a plan naming a model
// with no price) leaves nothing running — the closers list releases what
// was opened, whichever step fails — and a built gateway's Close does too.
// (Not parallel: goleak compares with the goroutines of the moment.)
func TestNewReleasesWhatItOpenedOnFailure(t *testing.T) {
	d := testenv.NewDatabase(t)
	cfg := config.Config{Issuer: "http://127.0.0.1:1", Audiences: []string{"sas-api"}, DatabaseURL: d.URL, RedisURL: testenv.RedisURL(t)}
	log := slog.New(slog.DiscardHandler)
	ignore := goleak.IgnoreCurrent()

	bad := cfg
	bad.Plans = quota.Plans{"free": {Models: []string{"no-such-model"}}, "pro": {Models: []string{"no-such-model"}}}
	if _, err := app.New(context.Background(), bad, log, app.Deps{}); err == nil || !strings.Contains(err.Error(), "no price") {
		t.Fatalf("New with an unpriced model: %v, want the missing price", err)
	}
	goleak.VerifyNone(t, ignore, testenv.HTTPLinger)

	gw, err := app.New(context.Background(), cfg, log, app.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	gw.Close()
	goleak.VerifyNone(t, ignore, testenv.HTTPLinger)
}
