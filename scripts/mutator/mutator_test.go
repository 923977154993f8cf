package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// module writes a one-package Go module into a temp dir and returns it.
func module(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files["go.mod"] = "module example.com/m\n\ngo 1.26\n"
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const shop = `package m

import (
	"errors"
	"log/slog"
	"sync"
)

var errEmpty = errors.New("empty")

// Total adds up prices, refusing an empty list.
func Total(prices []int, label string) (int, error) {
	if len(prices) == 0 {
		slog.Warn("no prices", "n", len(prices)+1)
		return 0, errEmpty
	}
	sum := 0
	for _, p := range prices {
		sum += p
	}
	label = label + "!"
	return sum, nil
}

// Open reports whether the shop is open at hour h.
func Open(h int) bool {
	if h < 9 || h >= 17 {
		return false
	}
	return true
}

var (
	mu    sync.Mutex
	count int
)

// Count counts one more.
func Count() {
	mu.Lock()
	count++
	mu.Unlock()
}
`

// TestMutants lists the mutants of a small file: operators swapped where the
// types allow (no - for the string +), nothing in the logging call, no
// removal of a mutex call, and no mutant that would not compile (the
// removal of sum += p leaves p unused, that of a final return leaves the
// function without one).
func TestMutants(t *testing.T) {
	dir := module(t, map[string]string{"shop.go": shop})
	var warnings []string
	warn := func(f string, args ...any) { warnings = append(warnings, f) }
	pkgs, err := loadPackages(t.Context(), dir, []target{{path: filepath.Join(dir, "shop.go")}}, warn)
	if err != nil || len(pkgs) != 1 || len(warnings) > 0 {
		t.Fatalf("loadPackages: %d packages, %v, warnings %q", len(pkgs), err, warnings)
	}
	var got []string
	for _, m := range pkgs[0].candidates {
		if pkgs[0].typeChecks(m) {
			got = append(got, m.String())
		}
	}
	slices.Sort(got)
	want := []string{
		"shop.go:13: negation: if len(prices) == 0 { → if len(prices) != 0 {",
		"shop.go:15: nil error: return 0, errEmpty → return 0, nil",
		"shop.go:15: removal: return 0, errEmpty → (statement removed)",
		"shop.go:19: arithmetic: sum += p → sum -= p",
		"shop.go:21: removal: label = label + \"!\" → (statement removed)",
		"shop.go:27: boundary: if h < 9 || h >= 17 { → if h < 9 || h > 17 {",
		"shop.go:27: boundary: if h < 9 || h >= 17 { → if h <= 9 || h >= 17 {",
		"shop.go:27: logical: if h < 9 || h >= 17 { → if h < 9 && h >= 17 {",
		"shop.go:28: boolean: return false → return true",
		"shop.go:28: removal: return false → (statement removed)",
		"shop.go:30: boolean: return true → return false",
		"shop.go:41: arithmetic: count++ → count--",
		"shop.go:41: removal: count++ → (statement removed)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mutants (-want +got):\n%s", diff)
	}
}

// TestRun runs mutants for real, through go test -overlay: the test kills
// the fee mutants and misses the age boundary, and the file is untouched.
func TestRun(t *testing.T) {
	const fee = `package m

// Fee is 1 per started 100 of amount.
func Fee(amount int) int { return (amount + 99) / 100 }

// Adult reports whether age is 18 or more.
func Adult(age int) bool { return age >= 18 }
`
	const feeTest = `package m

import "testing"

func TestFee(t *testing.T) {
	if Fee(150) != 2 || !Adult(30) || Adult(5) {
		t.Fatal("wrong")
	}
}
`
	dir := module(t, map[string]string{"fee.go": fee, "fee_test.go": feeTest})
	t.Chdir(dir)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"mutate", "-seed", "1", "-timeout", "2m", "."}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("run = %d\n%s", code, &stderr)
	}
	want := "fee.go:7: boundary: func Adult(age int) bool { return age >= 18 } → func Adult(age int) bool { return age > 18 }\n" +
		"mutate: 2 killed, 1 survived, 0 timed out of 3 (66.7 %)\n"
	if diff := cmp.Diff(want, stdout.String()); diff != "" {
		t.Errorf("stdout (-want +got):\n%s\nstderr:\n%s", diff, &stderr)
	}
	if src, err := os.ReadFile(filepath.Join(dir, "fee.go")); err != nil || string(src) != fee {
		t.Errorf("fee.go changed by the run: %v\n%s", err, src)
	}
}

func TestParseDiff(t *testing.T) {
	diff := strings.Join([]string{
		"diff --git a/x.go b/x.go",
		"--- a/x.go",
		"+++ b/x.go",
		"@@ -3,0 +4,2 @@ func f() {",
		"+a",
		"+b",
		"@@ -10 +12 @@",
		"-c",
		"+d",
		"@@ -20,3 +22,0 @@",
		"-e",
		"diff --git a/gone.go b/gone.go",
		"--- a/gone.go",
		"+++ /dev/null",
		"@@ -1,2 +0,0 @@",
		"-f",
	}, "\n")
	got, err := parseDiff(strings.NewReader(diff))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int]bool{"x.go": {4: true, 5: true, 12: true}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("parseDiff (-want +got):\n%s", d)
	}
}
