package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/redisclient"
	"github.com/signals-sorcery/sas/gateway/templates"
	"github.com/signals-sorcery/sas/gateway/userbus"
)

// TestTemplatesAcrossInstances: three instances on one PostgreSQL and
// Redis. A put — stored, then announced as `sas-gateway templates put`
// does — is run by all three within 1 s, and so is a rollback; a run's
// usage event reaches PostgreSQL with the template and version; while
// PostgreSQL is unreachable, the version in memory keeps being served.
func TestTemplatesAcrossInstances(t *testing.T) {
	t.Parallel()
	d := testenv.NewDatabase(t)
	proxy, viaProxy := testenv.ProxyURL(t, d.URL)
	s := newStack(t, 3, viaProxy, d.URL)
	db, err := postgres.Open(context.Background(), d.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rdb, err := redisclient.New(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	announce := func(name string) { userbus.New(rdb, templates.Channel, nil).Changed(ctx, name) }
	tok := s.token("user_tpl_" + testenv.UUID()[:8])

	// versions returns the version of loop-idea each instance lists.
	versions := func() []int {
		var vs []int
		for _, base := range s.urls {
			status, body := call(t, "GET", base+"/v1/templates", tok, "")
			var list struct{ Data []templates.Info }
			if status != 200 || json.Unmarshal([]byte(body), &list) != nil {
				t.Fatalf("GET /v1/templates: %d %s", status, body)
			}
			v := 0
			for _, i := range list.Data {
				if i.Name == "loop-idea" {
					v = i.Version
				}
			}
			vs = append(vs, v)
		}
		return vs
	}
	// within waits at most 1 s for every instance to list version want.
	within := func(what string, want int) {
		t.Helper()
		start := time.Now()
		for {
			vs := versions()
			if vs[0] == want && vs[1] == want && vs[2] == want {
				t.Logf("%s: every instance runs version %d after %v", what, want, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > time.Second {
				t.Fatalf("%s: instances list versions %v 1 s later, want %d on each", what, vs, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	put := func(input string) {
		t.Helper()
		tpl := templates.Example()
		tpl.Input = input
		if _, err := db.PutTemplate(ctx, tpl); err != nil {
			t.Fatal(err)
		}
		announce(tpl.Name)
	}
	put("First: a {{bars}}-bar loop in {{key}} for {{style}}.")
	within("the first put", 1)
	put("Second: a {{bars}}-bar loop in {{key}} for {{style}}.")
	within("the second put", 2)
	run := func(base string) string {
		t.Helper()
		status, body := call(t, "POST", base+"/v1/templates/loop-idea", tok, `{"variables": {"bars": 4, "key": "C", "style": "dub"}}`)
		if status != 200 {
			t.Fatalf("run: %d %s", status, body)
		}
		return body
	}
	for _, base := range s.urls {
		if body := run(base); !strings.Contains(body, "Second: a 4-bar loop in C for dub.") {
			t.Errorf("version 2 not run: %s", body)
		}
	}
	if err := db.RollbackTemplate(ctx, "loop-idea", 1); err != nil {
		t.Fatal(err)
	}
	announce("loop-idea")
	within("the rollback", 1)

	// PostgreSQL unreachable, and a reload asked for: version 1 stays.
	proxy.Cut()
	announce("loop-idea")
	time.Sleep(300 * time.Millisecond)
	for _, base := range s.urls {
		if body := run(base); !strings.Contains(body, "First: a 4-bar loop in C for dub.") {
			t.Errorf("during the outage: %s", body)
		}
	}
	proxy.Restore()

	// The ledger: three runs of version 2, three of version 1.
	testenv.WaitFor(t, "the runs' usage events in PostgreSQL", 20*time.Second, func() bool {
		var n int
		_ = s.check.QueryRow(ctx, `SELECT count(*) FROM usage_events WHERE template = 'loop-idea'`).Scan(&n)
		return n == 6
	})
	var got string
	if err := s.check.QueryRow(ctx, `SELECT string_agg(template_version::text, ',' ORDER BY template_version) FROM usage_events
		WHERE template = 'loop-idea'`).Scan(&got); err != nil || got != "1,1,1,2,2,2" {
		t.Errorf("usage events' template versions: %q (%v), want 1,1,1,2,2,2", got, err)
	}

}
