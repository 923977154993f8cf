-- +goose Up
-- Prompt templates: every version kept (a rollback points back at one),
-- and which version each name runs now.
CREATE TABLE IF NOT EXISTS prompt_templates (
    name       text        NOT NULL,
    version    integer     NOT NULL CHECK (version > 0),
    spec       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS prompt_template_heads (
    name       text        PRIMARY KEY,
    version    integer     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (name, version) REFERENCES prompt_templates (name, version)
);
-- The template and version a usage event ran ('' and 0: a raw request).
-- Constant defaults: a catalog change, no table rewrite.
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS template         text    NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS template_version integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE usage_events DROP COLUMN IF EXISTS template_version;
ALTER TABLE usage_events DROP COLUMN IF EXISTS template;
DROP TABLE IF EXISTS prompt_template_heads;
DROP TABLE IF EXISTS prompt_templates;
