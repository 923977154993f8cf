package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/templates"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestTemplateVersions: puts number versions per name and make the new
// one current; a rollback points back at a stored one; show reads any
// version; an unknown name or version is not_found. Directly and through
// PgBouncer (the spec travels as JSON text in exec mode).
func TestTemplateVersions(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		a := templates.Example()
		for want := 1; want <= 3; want++ {
			a.MaxOutputTokens = int64(100 * want)
			if v, err := db.PutTemplate(ctx, a); err != nil || v != want {
				t.Fatalf("put %d: version %d, %v", want, v, err)
			}
		}
		b := templates.Example()
		b.Name = "other"
		if v, err := db.PutTemplate(ctx, b); err != nil || v != 1 {
			t.Fatalf("another name: version %d, %v", v, err)
		}
		current := func() map[string]int64 {
			t.Helper()
			ts, err := db.CurrentTemplates(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]int64{}
			for _, x := range ts {
				m[x.Name] = int64(x.Version)*1000 + x.MaxOutputTokens
			}
			return m
		}
		if got := current(); got["loop-idea"] != 3300 || got["other"] != 1300 || len(got) != 2 {
			t.Errorf("current = %v", got)
		}
		if err := db.RollbackTemplate(ctx, "loop-idea", 1); err != nil {
			t.Fatal(err)
		}
		if got := current(); got["loop-idea"] != 1100 {
			t.Errorf("after the rollback: %v", got)
		}
		tpl, versions, err := db.Template(ctx, "loop-idea", 2)
		if err != nil || tpl.Version != 2 || tpl.MaxOutputTokens != 200 || len(versions) != 3 || !versions[0].Current || versions[2].Current {
			t.Errorf("show version 2: %+v %+v %v", tpl, versions, err)
		}
		for _, bad := range []func() error{
			func() error { return db.RollbackTemplate(ctx, "loop-idea", 9) },
			func() error { return db.RollbackTemplate(ctx, "nope", 1) },
			func() error { _, _, err := db.Template(ctx, "nope", 0); return err },
			func() error { _, _, err := db.Template(ctx, "loop-idea", 9); return err },
		} {
			if err := bad(); wire.ErrorCode(err) != wire.CodeNotFound {
				t.Errorf("got %v, want not_found", err)
			}
		}
	})
}

// TestRollbackWaitsForAPut (found in review): a rollback takes the name's
// lock as a put does, so the two never interleave — here a put's
// transaction holds the lock, and the rollback returns only after it ends.
func TestRollbackWaitsForAPut(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		for range 2 {
			if _, err := db.PutTemplate(ctx, templates.Example()); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := db.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('sas.template:' || $1))`, "loop-idea"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- db.RollbackTemplate(ctx, "loop-idea", 1) }()
		select {
		case err := <-done:
			t.Fatalf("the rollback returned (%v) while a put held the name", err)
		case <-time.After(300 * time.Millisecond):
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
