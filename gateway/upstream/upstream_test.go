package upstream_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/upstream"
)

// secrets are the keys of the test environment: recognizable, so that a
// test can assert no error text ever carries one.
var secrets = map[string]string{
	"OPENAI_API_KEY":       "sk-SECRET-openai",
	"OPENAI_API_KEY_2":     "sk-SECRET-openai2",
	"AZURE_OPENAI_API_KEY": "SECRET-azure-123",
	"GEMINI_API_KEY":       "SECRET-gemini-123",
}

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// plans use the contract's example models: gpt-4o-mini for free, and the
// Gemini model besides for pro.
func plans() quota.Plans {
	return quota.Plans{
		"free": {Models: []string{"gpt-4o-mini"}},
		"pro":  {Models: []string{"gpt-4o-mini", "gemini-2.5-flash"}},
	}
}

// contractTable is the contract's example, with a price on two routes
// (the Gemini model is not in the built-in price table) and a header
// timeout on one upstream.
const contractTable = `{"upstreams":{
   "openai":  {"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY"},
   "openai2": {"kind":"openai","base_url":"https://api.openai.com/v1/","key_env":"OPENAI_API_KEY_2","header_timeout":"45s"},
   "azure":   {"kind":"azure","base_url":"https://RESOURCE.openai.azure.com/openai/v1","key_env":"AZURE_OPENAI_API_KEY"},
   "gemini":  {"kind":"openai-compatible","base_url":"https://generativelanguage.googleapis.com/v1beta/openai","key_env":"GEMINI_API_KEY","endpoints":["chat"]}},
 "models":{
   "gpt-4o-mini":      [{"upstream":"openai"},
                        {"upstream":"openai2","price":{"input":0.10,"cached_input":0.05,"output":0.80}},
                        {"upstream":"azure","model":"my-4o-mini-deployment","price":{"input":0.20,"cached_input":0.01,"output":0.50,"estimate_margin":1.25}}],
   "gemini-2.5-flash": [{"upstream":"gemini","price":{"input":0.30,"cached_input":0.075,"output":2.50}}]}}`

// route is what a test compares of a Route (an Upstream holds its key).
type route struct {
	Upstream, Model string
	Price           quota.Price
}

func routes(rs []upstream.Route) []route {
	var out []route
	for _, r := range rs {
		out = append(out, route{r.Upstream.Name, r.Model, r.Price})
	}
	return out
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "upstreams.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadContractTable: the contract's example loads with each model's
// routes in the file's order, under the upstream's model name, at the
// route's price or else the price table's.
func TestLoadContractTable(t *testing.T) {
	tab, err := upstream.Load(writeFile(t, contractTable), getenv(secrets), plans(), quota.BuiltInPrices())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"azure", "gemini", "openai", "openai2"}, tab.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	mini := []route{
		{"openai", "gpt-4o-mini", quota.BuiltInPrices()["gpt-4o-mini"]},
		{"openai2", "gpt-4o-mini", quota.Price{Input: 100_000, CachedInput: 50_000, Output: 800_000}},
		{"azure", "my-4o-mini-deployment", quota.Price{Input: 200_000, CachedInput: 10_000, Output: 500_000, EstimateMargin: 1.25}},
	}
	if diff := cmp.Diff(mini, routes(tab.Routes("gpt-4o-mini"))); diff != "" {
		t.Errorf("gpt-4o-mini routes (-want +got):\n%s", diff)
	}
	gemini := []route{{"gemini", "gemini-2.5-flash", quota.Price{Input: 300_000, CachedInput: 75_000, Output: 2_500_000}}}
	if diff := cmp.Diff(gemini, routes(tab.Routes("gemini-2.5-flash"))); diff != "" {
		t.Errorf("gemini-2.5-flash routes (-want +got):\n%s", diff)
	}
	if rs := tab.Routes("gpt-4o"); len(rs) != 0 {
		t.Errorf("a model without routes has %d", len(rs))
	}

	// Each component is the highest of its own route: input of azure,
	// cached input of the price table (openai), output of openai2.
	want := quota.Price{Input: 200_000, CachedInput: 75_000, Output: 800_000, EstimateMargin: 1.25}
	if got := upstream.ReservationPrice(tab.Routes("gpt-4o-mini")); got != want {
		t.Errorf("ReservationPrice = %+v, want %+v", got, want)
	}
	if got := upstream.ReservationPrice(nil); got != (quota.Price{}) {
		t.Errorf("ReservationPrice(nil) = %+v", got)
	}

	byName := map[string]*upstream.Upstream{}
	for _, m := range []string{"gpt-4o-mini", "gemini-2.5-flash"} {
		for _, r := range tab.Routes(m) {
			byName[r.Upstream.Name] = r.Upstream
		}
	}
	type props struct {
		Kind                 upstream.Kind
		BaseURL              string
		HeaderTimeout        time.Duration
		Chat, Responses, Own bool
	}
	wantProps := map[string]props{
		"openai":  {upstream.OpenAI, "https://api.openai.com/v1", 3 * time.Minute, true, true, true},
		"openai2": {upstream.OpenAI, "https://api.openai.com/v1", 45 * time.Second, true, true, true},
		"azure":   {upstream.Azure, "https://RESOURCE.openai.azure.com/openai/v1", 3 * time.Minute, true, true, true},
		"gemini":  {upstream.Compatible, "https://generativelanguage.googleapis.com/v1beta/openai", 3 * time.Minute, true, false, false},
	}
	gotProps := map[string]props{}
	for name, u := range byName {
		gotProps[name] = props{u.Kind, u.BaseURL, u.HeaderTimeout, u.Serves(upstream.Chat), u.Serves(upstream.Responses), u.OwnsFields()}
	}
	if diff := cmp.Diff(wantProps, gotProps); diff != "" {
		t.Errorf("upstreams (-want +got):\n%s", diff)
	}
}

// TestEndpointsDefaultPerKind: an openai-compatible upstream serves chat
// only unless it lists its endpoints; openai and azure serve both.
func TestEndpointsDefaultPerKind(t *testing.T) {
	const table = `{"upstreams":{
	   "compat":  {"kind":"openai-compatible","base_url":"https://a.example/v1","key_env":"GEMINI_API_KEY"},
	   "both":    {"kind":"openai-compatible","base_url":"https://b.example/v1","key_env":"GEMINI_API_KEY","endpoints":["chat","responses"]},
	   "azure":   {"kind":"azure","base_url":"https://c.example/openai/v1","key_env":"AZURE_OPENAI_API_KEY"},
	   "azchat":  {"kind":"azure","base_url":"https://c.example/openai/v1","key_env":"AZURE_OPENAI_API_KEY","endpoints":["chat"]}},
	 "models":{"gpt-4o-mini":[{"upstream":"compat"},{"upstream":"both"},{"upstream":"azure"},{"upstream":"azchat"}]}}`
	tab, err := upstream.Parse([]byte(table), getenv(secrets), quota.Plans{"free": {Models: []string{"gpt-4o-mini"}}}, quota.BuiltInPrices())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]bool{"compat": {true, false}, "both": {true, true}, "azure": {true, true}, "azchat": {true, false}}
	got := map[string][2]bool{}
	for _, r := range tab.Routes("gpt-4o-mini") {
		got[r.Upstream.Name] = [2]bool{r.Upstream.Serves(upstream.Chat), r.Upstream.Serves(upstream.Responses)}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("serves {chat, responses} (-want +got):\n%s", diff)
	}
}

// TestAuthorize: Bearer for openai and openai-compatible; Azure's api-key
// header, and no Authorization header at all, for azure.
func TestAuthorize(t *testing.T) {
	tab, err := upstream.Parse([]byte(contractTable), getenv(secrets), plans(), quota.BuiltInPrices())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]http.Header{
		"openai":  {"Authorization": {"Bearer sk-SECRET-openai"}},
		"openai2": {"Authorization": {"Bearer sk-SECRET-openai2"}},
		"azure":   {"Api-Key": {"SECRET-azure-123"}},
		"gemini":  {"Authorization": {"Bearer SECRET-gemini-123"}},
	}
	got := map[string]http.Header{}
	for _, m := range []string{"gpt-4o-mini", "gemini-2.5-flash"} {
		for _, r := range tab.Routes(m) {
			h := http.Header{}
			r.Upstream.Authorize(h)
			got[r.Upstream.Name] = h
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

// TestKeyIsTrimmed: a key read from the environment loses the newline a
// secrets file often leaves.
func TestKeyIsTrimmed(t *testing.T) {
	env := map[string]string{"K": " sk-abc\n"}
	tab, err := upstream.Parse([]byte(`{"upstreams":{"u":{"kind":"openai","base_url":"https://x.example/v1","key_env":"K"}},"models":{"gpt-4o-mini":[{"upstream":"u"}]}}`),
		getenv(env), quota.Plans{}, quota.BuiltInPrices())
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	tab.Routes("gpt-4o-mini")[0].Upstream.Authorize(h)
	if got := h.Get("Authorization"); got != "Bearer sk-abc" {
		t.Errorf("Authorization = %q", got)
	}
}

// TestBaseURLs: https anywhere, plain http only on loopback.
func TestBaseURLs(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://api.openai.com/v1":      true,
		"http://127.0.0.1:8080/v1":       true,
		"http://localhost/v1":            true,
		"http://[::1]:9/v1":              true,
		"http://example.com":             false,
		"http://10.0.0.1/v1":             false,
		"ftp://example.com/v1":           false,
		"api.openai.com/v1":              false,
		"https://":                       false,
		"https://user:pw@api.example/v1": false,
		"":                               false,
	} {
		table := `{"upstreams":{"u":{"kind":"openai","base_url":` + quote(raw) + `,"key_env":"OPENAI_API_KEY"}},"models":{"gpt-4o-mini":[{"upstream":"u"}]}}`
		_, err := upstream.Parse([]byte(table), getenv(secrets), quota.Plans{}, quota.BuiltInPrices())
		if (err == nil) != ok {
			t.Errorf("base_url %q: err = %v, want ok=%v", raw, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "upstream u: base_url") {
			t.Errorf("base_url %q: the error does not name it: %v", raw, err)
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

// TestParseRefuses: each bad table is refused with a message naming the
// problem, and no message ever holds a key.
func TestParseRefuses(t *testing.T) {
	const (
		good  = `"openai":{"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY"}`
		route = `"gpt-4o-mini":[{"upstream":"openai"}]`
	)
	table := func(upstreams, models string) string {
		return `{"upstreams":{` + upstreams + `},"models":{` + models + `}}`
	}
	for _, tc := range []struct {
		name, table string
		env         map[string]string // secrets when nil
		want        []string
	}{
		{name: "malformed JSON", table: `{"upstreams":{`, want: []string{"not a valid upstream table"}},
		{name: "not an object", table: `[]`, want: []string{"not a valid upstream table"}},
		{name: "unknown top-level key", table: `{"upstreams":{` + good + `},"models":{` + route + `},"fallback":true}`,
			want: []string{"not a valid upstream table", `"fallback"`}},
		{name: "unknown upstream key holding a key", table: table(`"openai":{"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY","api_key":"sk-SECRET-openai"}`, route),
			want: []string{"not a valid upstream table", `"api_key"`}},
		{name: "unknown route key", table: table(good, `"gpt-4o-mini":[{"upstream":"openai","weight":2}]`),
			want: []string{"not a valid upstream table", `"weight"`}},
		{name: "duplicate upstream", table: table(good+","+good, route), want: []string{"not a valid upstream table", "duplicate"}},
		{name: "no upstreams", table: table(``, ``), env: map[string]string{}, want: []string{"no upstreams"}},
		{name: "unknown kind", table: table(`"openai":{"kind":"anthropic","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY"}`, route),
			want: []string{"upstream openai: kind must be openai, azure or openai-compatible"}},
		{name: "no kind", table: table(`"openai":{"base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY"}`, route),
			want: []string{"upstream openai: kind must be"}},
		{name: "unknown endpoint", table: table(`"openai":{"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY","endpoints":["embeddings"]}`, route),
			want: []string{`upstream openai: endpoints must be chat or responses ("embeddings")`}},
		{name: "key_env missing", table: table(`"openai":{"kind":"openai","base_url":"https://api.openai.com/v1"}`, route),
			want: []string{"upstream openai: key_env is missing"}},
		{name: "key_env unset", table: table(good, route), env: map[string]string{"OPENAI_API_KEY": " \n"},
			want: []string{"upstream openai: the environment variable OPENAI_API_KEY (key_env) is not set"}},
		{name: "key_env holding the key itself", table: table(`"openai":{"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"sk-SECRET-openai"}`, route),
			want: []string{"upstream openai: key_env must be the name of an environment variable"}},
		{name: "key_env holding a hex key", table: table(`"azure":{"kind":"azure","base_url":"https://r.openai.azure.com/openai/v1","key_env":"SECRET0123456789abcdef"}`, route),
			want: []string{"upstream azure: key_env must be the name of an environment variable"}},
		{name: "base_url missing", table: table(`"openai":{"kind":"openai","key_env":"OPENAI_API_KEY"}`, route),
			want: []string{"upstream openai: base_url is missing"}},
		{name: "base_url plain http", table: table(`"openai":{"kind":"openai","base_url":"http://example.com","key_env":"OPENAI_API_KEY"}`, route),
			want: []string{"upstream openai: base_url must use https"}},
		{name: "base_url with the key as password", table: table(`"openai":{"kind":"openai","base_url":"https://u:sk-SECRET-openai@api.openai.com/v1","key_env":"OPENAI_API_KEY"}`, route),
			want: []string{"upstream openai: base_url must not contain credentials"}},
		{name: "header_timeout not a duration", table: table(`"openai":{"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY","header_timeout":"3 minutes"}`, route),
			want: []string{"upstream openai: header_timeout must be a positive Go duration"}},
		{name: "header_timeout zero", table: table(`"openai":{"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY","header_timeout":"0s"}`, route),
			want: []string{"upstream openai: header_timeout must be a positive Go duration"}},
		{name: "header_timeout negative", table: table(`"openai":{"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY","header_timeout":"-1s"}`, route),
			want: []string{"upstream openai: header_timeout must be a positive Go duration"}},
		{name: "route to an unknown upstream", table: table(good, `"gpt-4o-mini":[{"upstream":"openai"},{"upstream":"azure"}]`),
			want: []string{`model gpt-4o-mini: upstream "azure" (entry 2) is not in upstreams`}},
		{name: "model without routes", table: table(good, route+`,"gpt-4o":[]`), want: []string{"model gpt-4o: no upstreams"}},
		{name: "plan's model without an upstream", table: table(good, ``),
			want: []string{"model gpt-4o-mini of plan free has no upstream"}},
		{name: "model without a price", table: table(good, route+`,"o3":[{"upstream":"openai"}]`),
			want: []string{"model o3: no price (in the price table, or a price on the route to openai)"}},
		{name: "bad route price", table: table(good, `"gpt-4o-mini":[{"upstream":"openai","price":{"input":"cheap","output":-1}}]`),
			want: []string{"model gpt-4o-mini, upstream openai: price: cached_input is missing", "model gpt-4o-mini, upstream openai: price: json:"}},
		{name: "route price out of range margin", table: table(good, `"gpt-4o-mini":[{"upstream":"openai","price":{"input":1,"cached_input":1,"output":1,"estimate_margin":0.5}}]`),
			want: []string{"model gpt-4o-mini, upstream openai: price: estimate_margin must be a number from 1 to 10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = secrets
			}
			tab, err := upstream.Parse([]byte(tc.table), getenv(env), quota.Plans{"free": {Models: []string{"gpt-4o-mini"}}}, quota.BuiltInPrices())
			if err == nil {
				t.Fatalf("accepted: %v", tab.Names())
			}
			if tab != nil {
				t.Errorf("a table with the error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q: %v", w, err)
				}
			}
			assertNoSecret(t, err.Error())
		})
	}
}

func assertNoSecret(t *testing.T, msg string) {
	t.Helper()
	for name, key := range secrets {
		if strings.Contains(msg, key) {
			t.Errorf("the message holds the key of %s: %s", name, msg)
		}
	}
	if strings.Contains(msg, "SECRET") {
		t.Errorf("the message holds a key: %s", msg)
	}
}

// TestLoadNamesEveryProblem: one file with many problems fails once, with
// one single-line message that names the variable and every problem, and
// none of the keys (every key_env variable is set to a secret).
func TestLoadNamesEveryProblem(t *testing.T) {
	const table = `{"upstreams":{
	   "openai":  {"kind":"openai","base_url":"https://api.openai.com/v1","key_env":"OPENAI_API_KEY","header_timeout":"soon"},
	   "openai2": {"kind":"openai","base_url":"http://example.com","key_env":"OPENAI_API_KEY_2"},
	   "azure":   {"kind":"azur","base_url":"https://r.openai.azure.com/openai/v1","key_env":"AZURE_OPENAI_API_KEY"},
	   "gemini":  {"kind":"openai-compatible","base_url":"https://g.example/v1","key_env":"UNSET_KEY"},
	   "nokey":   {"kind":"openai","base_url":"https://api.openai.com/v1"}},
	 "models":{
	   "gpt-4o-mini":      [{"upstream":"openai"},{"upstream":"missing"},{"upstream":"openai2","price":{"input":1}}],
	   "gemini-2.5-flash": [{"upstream":"gemini"}]}}`
	path := writeFile(t, table)
	_, err := upstream.Load(path, getenv(secrets), quota.BuiltIn(), quota.BuiltInPrices())
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"SAS_UPSTREAMS_FILE " + path + ": ",
		"upstream openai: header_timeout must be a positive Go duration",
		"upstream openai2: base_url must use https",
		"upstream azure: kind must be openai, azure or openai-compatible",
		"upstream gemini: the environment variable UNSET_KEY (key_env) is not set",
		"upstream nokey: key_env is missing",
		`model gpt-4o-mini: upstream "missing" (entry 2) is not in upstreams`,
		"model gpt-4o-mini, upstream openai2: price: output is missing",
		"model gemini-2.5-flash: no price",
		"model gpt-4o of plan pro has no upstream",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the message does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("the message spans several lines: %q", msg)
	}
	assertNoSecret(t, msg)

	if _, err := upstream.Load(filepath.Join(t.TempDir(), "absent.json"), getenv(secrets), quota.BuiltIn(), quota.BuiltInPrices()); err == nil ||
		!strings.HasPrefix(err.Error(), "SAS_UPSTREAMS_FILE ") {
		t.Errorf("a missing file: %v", err)
	}
}

// TestSingle: without a table, one upstream "openai" serves every model
// (even one without a price: the plans decide which models are served) at
// the price table's price, with both endpoints and a Bearer key.
func TestSingle(t *testing.T) {
	prices := quota.BuiltInPrices()
	tab := upstream.Single("http://127.0.0.1:9999/v1/", "sk-single", prices, 0)
	if diff := cmp.Diff([]string{"openai"}, tab.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	for _, m := range []string{"gpt-4o-mini", "gpt-4o", "anything"} {
		want := []route{{"openai", m, prices[m]}}
		if diff := cmp.Diff(want, routes(tab.Routes(m))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", m, diff)
		}
	}
	u := tab.Routes("gpt-4o")[0].Upstream
	if u.Name != upstream.DefaultName || u.Kind != upstream.OpenAI || u.BaseURL != "http://127.0.0.1:9999/v1" ||
		u.HeaderTimeout != upstream.DefaultHeaderTimeout || !u.Serves(upstream.Chat) || !u.Serves(upstream.Responses) || !u.OwnsFields() {
		t.Errorf("upstream = %+v", u)
	}
	h := http.Header{}
	u.Authorize(h)
	if diff := cmp.Diff(http.Header{"Authorization": {"Bearer sk-single"}}, h); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if got := upstream.Single("https://api.openai.com/v1", "k", prices, 10*time.Second).Routes("gpt-4o")[0].Upstream.HeaderTimeout; got != 10*time.Second {
		t.Errorf("HeaderTimeout = %v, want 10s", got)
	}
}
