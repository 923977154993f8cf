package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signals-sorcery/sas/gateway/templates"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TemplateVersion is one stored version of a template.
type TemplateVersion struct {
	Version   int
	Current   bool
	CreatedAt time.Time
}

// PutTemplate stores t as its name's next version and makes it current,
// in one transaction (concurrent puts of one name serialise on its head
// row). It returns the version.
//
// Errors: unavailable, internal.
func (db *DB) PutTemplate(ctx context.Context, t templates.Template) (int, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, classify(err)
	}
	defer tx.Rollback(ctx)
	if err := lockTemplate(ctx, tx, t.Name); err != nil {
		return 0, err
	}
	var version int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) + 1 FROM prompt_templates WHERE name = $1`, t.Name).Scan(&version); err != nil {
		return 0, classify(err)
	}
	t.Version = version
	spec, err := json.Marshal(t)
	if err != nil {
		return 0, wire.Wrap(wire.CodeInternal, "The template could not be encoded.", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO prompt_templates (name, version, spec) VALUES ($1, $2, $3::jsonb)`, t.Name, version, string(spec)); err != nil {
		return 0, classify(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO prompt_template_heads (name, version) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, updated_at = now()`, t.Name, version); err != nil {
		return 0, classify(err)
	}
	return version, classify(tx.Commit(ctx))
}

// RollbackTemplate makes an earlier (or any stored) version current. It
// takes the name's lock as PutTemplate does: of a rollback and a put at
// once, one wins whole, and each one's "current" is true when it returns.
//
// Errors: not_found (no such name or version), unavailable.
func (db *DB) RollbackTemplate(ctx context.Context, name string, version int) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return classify(err)
	}
	defer tx.Rollback(ctx)
	if err := lockTemplate(ctx, tx, name); err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE prompt_template_heads SET version = $2, updated_at = now()
		WHERE name = $1 AND EXISTS (SELECT 1 FROM prompt_templates WHERE name = $1 AND version = $2)`, name, version)
	if err != nil {
		return classify(err)
	}
	if tag.RowsAffected() == 0 {
		return wire.Errorf(wire.CodeNotFound, "No template %q with version %d.", name, version)
	}
	return classify(tx.Commit(ctx))
}

// lockTemplate serialises the writers of one template name until the
// transaction ends (its head, or the insert of its first version).
func lockTemplate(ctx context.Context, tx pgx.Tx, name string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('sas.template:' || $1))`, name)
	return classify(err)
}

// CurrentTemplates returns the current version of every template.
//
// Errors: unavailable, internal.
func (db *DB) CurrentTemplates(ctx context.Context) ([]templates.Template, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT t.spec FROM prompt_template_heads h
		JOIN prompt_templates t ON t.name = h.name AND t.version = h.version ORDER BY h.name`)
	if err != nil {
		return nil, classify(err)
	}
	specs, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, classify(err)
	}
	out := make([]templates.Template, 0, len(specs))
	for _, s := range specs {
		var t templates.Template
		if err := json.Unmarshal(s, &t); err != nil {
			return nil, wire.Wrap(wire.CodeInternal, "A stored template could not be read.", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// Template returns one version of a template (0: the current one) and
// the list of its versions.
//
// Errors: not_found, unavailable.
func (db *DB) Template(ctx context.Context, name string, version int) (templates.Template, []TemplateVersion, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT t.version, t.version = h.version, t.created_at FROM prompt_templates t
		JOIN prompt_template_heads h ON h.name = t.name WHERE t.name = $1 ORDER BY t.version`, name)
	if err != nil {
		return templates.Template{}, nil, classify(err)
	}
	versions, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TemplateVersion, error) {
		var v TemplateVersion
		return v, r.Scan(&v.Version, &v.Current, &v.CreatedAt)
	})
	if err != nil {
		return templates.Template{}, nil, classify(err)
	}
	var spec []byte
	err = db.pool.QueryRow(ctx, `SELECT t.spec FROM prompt_templates t JOIN prompt_template_heads h ON h.name = t.name
		WHERE t.name = $1 AND t.version = CASE WHEN $2 = 0 THEN h.version ELSE $2 END`, name, version).Scan(&spec)
	if errors.Is(err, pgx.ErrNoRows) {
		return templates.Template{}, nil, wire.Errorf(wire.CodeNotFound, "No template %q (version %d).", name, version)
	}
	if err != nil {
		return templates.Template{}, nil, classify(err)
	}
	var t templates.Template
	if err := json.Unmarshal(spec, &t); err != nil {
		return templates.Template{}, nil, wire.Wrap(wire.CodeInternal, "A stored template could not be read.", err)
	}
	return t, versions, nil
}
