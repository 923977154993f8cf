package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// status is what became of a mutant.
type status int

const (
	killed   status = iota // a test failed: the tests noticed
	survived               // every test passed: they did not
	timedOut               // the tests did not finish within -timeout
	skipped                // not a verdict: the build failed, or the package's tests fail unmutated
	notRun                 // the budget ran out, or the run was interrupted
)

func (s status) String() string {
	return [...]string{"killed", "survived", "timed out", "skipped", "not run"}[s]
}

type result struct {
	status  status
	elapsed time.Duration
}

// runner runs the tests of mutated packages. The mutated file reaches the
// compiler through `go test -overlay`: the tree is never written, so there
// is nothing to restore, whatever stops the run.
type runner struct {
	root      string
	dir       string // overlays, removed at the end
	timeout   time.Duration
	baseline  bool
	importers map[string][]string
	stderr    io.Writer

	passes map[string]bool // package → its tests pass unmutated
	broken []string
	n      int
}

// run runs one mutant: the tests of its package (and of its importers with
// -importers), after a first unmutated run of them when -baseline asks.
func (r *runner) run(ctx context.Context, m *mutant) result {
	pkgs := append([]string{m.pkg.path}, r.importers[m.pkg.path]...)
	if r.baseline {
		if r.passes == nil {
			r.passes = map[string]bool{}
		}
		ok, known := r.passes[m.pkg.path]
		if !known {
			res, out := r.goTest(ctx, "", pkgs)
			if res.status == notRun {
				return res
			}
			ok = res.status == survived
			r.passes[m.pkg.path] = ok
			fmt.Fprintf(r.stderr, "mutate: baseline %s: tests pass: %t (%.1f s)\n", m.pkg.path, ok, res.elapsed.Seconds())
			if !ok {
				r.broken = append(r.broken, m.pkg.path)
				fmt.Fprintf(r.stderr, "%s\n", tail(out, 30))
			}
		}
		if !ok {
			return result{status: skipped}
		}
	}
	r.n++
	dir := filepath.Join(r.dir, strconv.Itoa(r.n))
	if err := os.Mkdir(dir, 0o700); err != nil {
		fmt.Fprintln(r.stderr, "mutate:", err)
		return result{status: skipped}
	}
	mutated := filepath.Join(dir, filepath.Base(m.file))
	overlay := filepath.Join(dir, "overlay.json")
	js, _ := json.Marshal(map[string]map[string]string{"Replace": {m.file: mutated}})
	if err := os.WriteFile(mutated, m.apply(m.pkg.src[m.file]), 0o600); err != nil {
		fmt.Fprintln(r.stderr, "mutate:", err)
		return result{status: skipped}
	}
	if err := os.WriteFile(overlay, js, 0o600); err != nil {
		fmt.Fprintln(r.stderr, "mutate:", err)
		return result{status: skipped}
	}
	defer os.RemoveAll(dir)
	res, out := r.goTest(ctx, overlay, pkgs)
	if res.status == skipped {
		fmt.Fprintf(r.stderr, "mutate: %s: the build failed:\n%s\n", m.short(), tail(out, 10))
	}
	return res
}

// goTest runs go test once and classifies the outcome. Vet is off: a vet
// finding in a mutant (say x != a || x != b) is not a test that failed.
func (r *runner) goTest(ctx context.Context, overlay string, pkgs []string) (result, []byte) {
	tctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	args := []string{"test", "-count=1", "-failfast", "-vet=off", "-timeout=" + r.timeout.String()}
	if overlay != "" {
		args = append(args, "-overlay="+overlay)
	}
	cmd := exec.CommandContext(tctx, "go", append(args, pkgs...)...)
	cmd.Dir = r.root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	killGroup(cmd)
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := result{elapsed: time.Since(start)}
	switch {
	case ctx.Err() != nil:
		res.status = notRun
	case tctx.Err() != nil, bytes.Contains(out.Bytes(), []byte("panic: test timed out after")):
		res.status = timedOut
	case err == nil:
		res.status = survived
	case bytes.Contains(out.Bytes(), []byte("[build failed]")), bytes.Contains(out.Bytes(), []byte("[setup failed]")):
		res.status = skipped
	default:
		res.status = killed
	}
	return res, out.Bytes()
}

// tail returns the last n lines of out.
func tail(out []byte, n int) []byte {
	lines := bytes.SplitAfter(bytes.TrimRight(out, "\n"), []byte("\n"))
	return bytes.Join(lines[max(0, len(lines)-n):], nil)
}
