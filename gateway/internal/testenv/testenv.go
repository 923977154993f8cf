// Package testenv gives tests the real services that scripts/test starts:
// a fresh, migrated PostgreSQL database per test (also reachable through a
// transaction-mode PgBouncer), Redis, and a logger bound to the test.
//
// Without the environment variables the tests fail, never skip: a skipped
// database test in CI is a test that silently stopped existing.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signals-sorcery/sas/gateway/postgres"
)

func env(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run scripts/test, which starts PostgreSQL, PgBouncer, Redis and stripe-mock and sets it", name)
	}
	return v
}

// StripeMockURL returns TEST_STRIPE_MOCK_URL, stripe-mock's base URL.
func StripeMockURL(t testing.TB) string { return env(t, "TEST_STRIPE_MOCK_URL") }

// RedisURL returns TEST_REDIS_URL.
func RedisURL(t testing.TB) string {
	t.Helper()
	return env(t, "TEST_REDIS_URL")
}

// Database is a throwaway database made for one test.
type Database struct {
	Name string
	// URL connects to it directly.
	URL string
	// PoolerURL connects to it through PgBouncer in transaction mode.
	PoolerURL string
}

// NewDatabase creates an empty database for t, runs the migrations, and
// drops it when t ends.
func NewDatabase(t testing.TB) Database {
	t.Helper()
	d := NewEmptyDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, d.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return d
}

// NewEmptyDatabase creates a database without running the migrations.
func NewEmptyDatabase(t testing.TB) Database {
	t.Helper()
	admin := env(t, "TEST_DATABASE_URL")
	pooler := env(t, "TEST_PGBOUNCER_URL")
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sas_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to TEST_DATABASE_URL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	return Database{Name: name, URL: withDatabase(t, admin, name), PoolerURL: withDatabase(t, pooler, name)}
}

func withDatabase(t testing.TB, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// Logger returns a logger that writes to the test's log, at debug level.
// Lines logged after the test ended (by a server still shutting down) are
// dropped instead of panicking.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
