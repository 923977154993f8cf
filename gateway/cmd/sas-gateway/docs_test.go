package main_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/httpapi"
)

// The README is the product's reference (nothing points outside the
// repository): these tests fail when the code gains a route, an error code
// or a variable that it does not document.

// TestReadmeDocumentsEveryVariable: every variable `serve` and `dev` read.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme := readTop(t, "README.md")
	read := map[string]bool{}
	getenv := func(name string) string { read[name] = true; return "" }
	_, _ = config.Load(getenv)
	_, _ = config.LoadDev(getenv)
	if len(read) < 10 {
		t.Fatalf("only %d variables read: this test would prove little", len(read))
	}
	for name := range read {
		if !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("README.md does not document %s", name)
		}
	}
}

// TestReadmeDocumentsEveryRoute: every route of the API router is in the
// README's tables (as "`METHOD /path") and in gateway/openapi.yaml.
func TestReadmeDocumentsEveryRoute(t *testing.T) {
	readme, spec := readTop(t, "README.md"), readTop(t, "gateway/openapi.yaml")
	var n int
	err := chi.Walk(httpapi.New(httpapi.Options{}).Router(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		n++
		route = strings.TrimSuffix(route, "/")
		if !strings.Contains(readme, "`"+method+" "+route) && !strings.Contains(readme, method+" "+route+"`") {
			t.Errorf("README.md does not document %s %s", method, route)
		}
		if !strings.Contains(spec, "\n  "+route+":\n") {
			t.Errorf("gateway/openapi.yaml has no path %s", route)
		} else if block := pathBlock(spec, route); !strings.Contains(block, "\n    "+strings.ToLower(method)+":\n") {
			t.Errorf("gateway/openapi.yaml has no %s operation on %s", method, route)
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Fatalf("walked %d routes (%v): this test would prove little", n, err)
	}
}

// pathBlock is the part of the OpenAPI document under one path.
func pathBlock(spec, route string) string {
	_, rest, _ := strings.Cut(spec, "\n  "+route+":\n")
	if i := strings.Index(rest, "\n  /"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.Index(rest, "\ncomponents:"); i >= 0 {
		rest = rest[:i]
	}
	return "\n" + rest
}

// TestReadmeDocumentsEveryErrorCode: every code of shared/wire, the
// gateway's and the sidecar's.
func TestReadmeDocumentsEveryErrorCode(t *testing.T) {
	readme := readTop(t, "README.md")
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", readTop(t, "shared/wire/errors.go"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			v := s.(*ast.ValueSpec)
			if len(v.Names) == 1 && strings.HasPrefix(v.Names[0].Name, "Code") && len(v.Values) == 1 {
				if lit, ok := v.Values[0].(*ast.BasicLit); ok {
					code, _ := strconv.Unquote(lit.Value)
					codes = append(codes, code)
				}
			}
		}
	}
	if len(codes) < 20 {
		t.Fatalf("found %d codes in shared/wire/errors.go: this test would prove little", len(codes))
	}
	for _, c := range codes {
		if !strings.Contains(readme, "`"+c+"`") {
			t.Errorf("README.md does not document the error code %s", c)
		}
	}
	if !slices.Contains(codes, "account_deleted") {
		t.Error("account_deleted is not among the codes read")
	}
}
