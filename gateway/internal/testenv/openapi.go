package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/signals-sorcery/sas/gateway"
)

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

func spec() (*openapi3.T, routers.Router, error) {
	specOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/yaml", openapi3filter.PlainBodyDecoder)
		specDoc, specErr = openapi3.NewLoader().LoadFromData(gateway.OpenAPI)
		if specErr != nil {
			return
		}
		if specErr = specDoc.Validate(context.Background()); specErr != nil {
			return
		}
		// Match requests whatever host the test server has.
		specDoc.Servers = openapi3.Servers{{URL: "/"}}
		specRouter, specErr = legacy.NewRouter(specDoc)
	})
	return specDoc, specRouter, specErr
}

// OpenAPI wraps a gateway handler so that every response it gives is
// validated against gateway/openapi.yaml; a response that does not match
// fails t. Bodies still stream through as they are written.
func OpenAPI(t testing.TB, h http.Handler) http.Handler {
	t.Helper()
	doc, router, err := spec()
	if err != nil {
		t.Fatalf("gateway/openapi.yaml: %v", err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		check(t, doc, router, r, rec)
	})
}

func check(t testing.TB, doc *openapi3.T, router routers.Router, r *http.Request, rec *recorder) {
	req := r.Clone(context.Background())
	req.URL = &url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	route, params, err := router.FindRoute(req)
	if err != nil {
		// No route in the spec (a 404, a 405): the answer must still be the
		// error envelope.
		schema := doc.Components.Schemas["Error"].Value
		var v any
		if derr := jsonDecode(rec.body.Bytes(), &v); derr != nil || schema.VisitJSON(v) != nil {
			t.Errorf("openapi: %s %s → %d is not the error envelope: %s", r.Method, r.URL.Path, rec.status, rec.body.String())
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status:  rec.status,
		Header:  rec.Header(),
		Body:    io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("openapi: %s %s → %d does not match gateway/openapi.yaml: %v", r.Method, r.URL.Path, rec.status, err)
	}
}

// recorder passes a response through while keeping a copy.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(p)
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController flush and set deadlines through it.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func jsonDecode(b []byte, v any) error { return json.Unmarshal(b, v) }
