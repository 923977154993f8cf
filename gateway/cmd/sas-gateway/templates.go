package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/templates"
	"github.com/signals-sorcery/sas/shared/exitcode"
	"github.com/signals-sorcery/sas/shared/wire"
)

// templatesCmd manages the prompt templates: put, list, show, rollback.
func (e env) templatesCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "sas-gateway templates: want a subcommand (put, list, show, rollback)\n\n%s", usage)
		return exitcode.ErrUsage
	}
	sub, args := args[0], args[1:]
	var name, file, version string
	var showVersion int // show's --version, rollback's version
	switch sub {
	case "put":
		if err := parseFlags("templates put", args, e.stderr, &file); err != nil {
			return err
		}
	case "list":
		if err := parseFlags("templates list", args, e.stderr); err != nil {
			return err
		}
	case "show":
		fs := flag.NewFlagSet("sas-gateway templates show", flag.ContinueOnError)
		fs.SetOutput(e.stderr)
		fs.Usage = func() { fmt.Fprint(e.stderr, usage) }
		fs.IntVar(&showVersion, "version", 0, "the version to show (default: the current one)")
		// The name may come before or after the flag.
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			name, args = args[0], args[1:]
		}
		if err := fs.Parse(args); err != nil {
			return exitcode.FlagError(err)
		}
		if name == "" && fs.NArg() == 1 {
			name = fs.Arg(0)
		} else if fs.NArg() != 0 || name == "" {
			fmt.Fprintf(e.stderr, "sas-gateway templates show: want a template name\n\n%s", usage)
			return exitcode.ErrUsage
		}
	case "rollback":
		if err := parseFlags("templates rollback", args, e.stderr, &name, &version); err != nil {
			return err
		}
		v, err := strconv.Atoi(version)
		if err != nil || v < 1 {
			fmt.Fprintf(e.stderr, "sas-gateway templates rollback: the version must be a positive integer, not %q\n\n%s", version, usage)
			return exitcode.ErrUsage
		}
		showVersion = v
	default:
		fmt.Fprintf(e.stderr, "sas-gateway templates: unknown subcommand %q\n\n%s", sub, usage)
		return exitcode.ErrUsage
	}
	cfg, err := config.LoadTemplates(e.getenv)
	if err != nil {
		return err
	}
	var t templates.Template
	if sub == "put" {
		// Checked before the database is opened: an invalid file stores
		// nothing and names every problem.
		if t, err = readTemplate(file, cfg); err != nil {
			return err
		}
	}
	db, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	switch sub {
	case "put":
		v, err := db.PutTemplate(ctx, t)
		if err != nil {
			return err
		}
		e.announceTemplate(ctx, t.Name)
		fmt.Fprintf(e.stderr, "stored %s version %d; it is the current version\n", t.Name, v)
		return e.printJSON(map[string]any{"name": t.Name, "version": v})
	case "list":
		ts, err := db.CurrentTemplates(ctx)
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tVERSION\tENDPOINT\tMODEL\tVARIABLES")
		for _, t := range ts {
			vars := strings.Join(slices.Sorted(maps.Keys(t.Variables)), ", ")
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", t.Name, t.Version, t.Endpoint, t.Model, vars)
		}
		return w.Flush()
	case "show":
		t, versions, err := db.Template(ctx, name, showVersion)
		if err != nil {
			return err
		}
		current := 0
		for _, v := range versions {
			if v.Current {
				current = v.Version
			}
		}
		fmt.Fprintf(e.stderr, "%s: %d version(s), current %d\n", name, len(versions), current)
		return e.printJSON(t)
	default: // rollback
		if err := db.RollbackTemplate(ctx, name, showVersion); err != nil {
			return err
		}
		e.announceTemplate(ctx, name)
		fmt.Fprintf(e.stderr, "%s now runs version %d\n", name, showVersion)
		return nil
	}
}

// readTemplate reads and checks a template file: strict JSON (an unknown
// key is a typo), then every problem of the template at once.
func readTemplate(file string, cfg config.Templates) (templates.Template, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return templates.Template{}, fmt.Errorf("read the template: %w", err)
	}
	var t templates.Template
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil || dec.More() {
		if err == nil {
			err = errors.New("more than one JSON value")
		}
		return t, wire.Errorf(wire.CodeBadRequest, "%s is not a template (one JSON object with the documented keys): %v", file, err)
	}
	t.Version = 0 // the store numbers versions
	allowed := func(model string) bool {
		if _, priced := cfg.Prices[model]; !priced {
			return false
		}
		for _, p := range cfg.Plans {
			if p.Allows(model) {
				return true
			}
		}
		return false
	}
	if ps := t.Problems(allowed); len(ps) > 0 {
		return t, wire.Errorf(wire.CodeBadRequest, "%s is not a valid template; nothing was stored:\n  - %s", file, strings.Join(ps, "\n  - "))
	}
	return t, nil
}

// announceTemplate tells the running instances to reload the templates at
// once, when REDIS_URL is set; without it they reload within
// templates.PollEvery.
func (e env) announceTemplate(ctx context.Context, name string) {
	bus, closeBus := e.bus(templates.Channel, templates.PollEvery.String())
	defer closeBus()
	switch {
	case bus != nil:
		bus.Changed(ctx, name)
	case strings.TrimSpace(e.getenv("REDIS_URL")) == "":
		fmt.Fprintf(e.stderr, "REDIS_URL is not set: the running instances pick the change up within %v\n", templates.PollEvery)
	}
}

func (e env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
