package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// A target is a file to mutate and, when a base revision is in play, the
// lines of it that changed since (nil: every line).
type target struct {
	path  string
	lines map[int]bool
}

// covers reports whether a mutant spanning lines first..last touches a
// changed line.
func (t target) covers(first, last int) bool {
	if t.lines == nil {
		return true
	}
	for l := first; l <= last; l++ {
		if t.lines[l] {
			return true
		}
	}
	return false
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := command(ctx, "", "go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(out)
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// selectTargets turns the command line into files: the paths given (files
// or package patterns) or, without paths, the Go files changed since the
// base; restricted to changed lines when o.useBase. Test files are never
// targets.
func selectTargets(ctx context.Context, root string, o options) ([]target, error) {
	var changed map[string]map[int]bool
	if o.useBase {
		var err error
		if changed, err = changedLines(ctx, root, o.base); err != nil {
			return nil, err
		}
	}
	var files []string
	if len(o.paths) == 0 {
		for f := range changed {
			files = append(files, f)
		}
	} else {
		var err error
		if files, err = expand(ctx, root, o.paths); err != nil {
			return nil, err
		}
	}
	slices.Sort(files)
	var out []target
	for _, f := range slices.Compact(files) {
		if !strings.HasSuffix(f, ".go") || strings.HasSuffix(f, "_test.go") {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			continue // deleted since the base
		}
		t := target{path: f}
		if o.useBase {
			lines, ok := changed[f]
			if !ok {
				continue
			}
			t.lines = lines
		}
		out = append(out, t)
	}
	return out, nil
}

// expand resolves files and package patterns to absolute file paths.
func expand(ctx context.Context, root string, paths []string) ([]string, error) {
	var files, patterns []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".go") {
			abs, err := filepath.Abs(p)
			if err != nil {
				return nil, err
			}
			files = append(files, abs)
		} else {
			patterns = append(patterns, p)
		}
	}
	if len(patterns) > 0 {
		args := append([]string{"list", "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}`}, patterns...)
		out, err := command(ctx, root, "go", args...)
		if err != nil {
			return nil, err
		}
		files = append(files, strings.Fields(out)...)
	}
	return files, nil
}

// changedLines returns, for each Go file changed since the merge base of
// base and HEAD, the lines that are new or changed in the working tree:
// committed since the base, uncommitted and untracked alike. An untracked
// file is new in full: its lines are nil, which target.covers reads as every
// line (a file whose only change is a deletion has an empty map: no line).
func changedLines(ctx context.Context, root, base string) (map[string]map[int]bool, error) {
	from, err := mergeBase(ctx, root, base)
	if err != nil {
		return nil, err
	}
	diff, err := command(ctx, root, "git", "diff", "-U0", "--no-color", "--no-ext-diff", "--relative", from, "--", "*.go")
	if err != nil {
		return nil, err
	}
	changed, err := parseDiff(strings.NewReader(diff))
	if err != nil {
		return nil, err
	}
	out := map[string]map[int]bool{}
	for f, lines := range changed {
		out[filepath.Join(root, f)] = lines
	}
	untracked, err := command(ctx, root, "git", "ls-files", "--others", "--exclude-standard", "--", "*.go")
	if err != nil {
		return nil, err
	}
	for _, f := range strings.Fields(untracked) {
		out[filepath.Join(root, f)] = nil
	}
	return out, nil
}

// mergeBase resolves the base revision: the one given, else origin/main
// when there is one, else HEAD~1; then its merge base with HEAD, so that
// what others merged meanwhile does not count as this change.
func mergeBase(ctx context.Context, root, base string) (string, error) {
	if base == "" {
		base = "HEAD~1"
		if _, err := command(ctx, root, "git", "rev-parse", "--verify", "--quiet", "origin/main^{commit}"); err == nil {
			base = "origin/main"
		}
	}
	out, err := command(ctx, root, "git", "merge-base", base, "HEAD")
	if err != nil {
		return "", fmt.Errorf("base %s: %w", base, err)
	}
	return strings.TrimSpace(out), nil
}

// parseDiff reads a `git diff -U0` and returns the new-side line numbers of
// every hunk, per file (paths as the diff names them, without "b/").
func parseDiff(r io.Reader) (map[string]map[int]bool, error) {
	out := map[string]map[int]bool{}
	var cur map[int]bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "+++ "):
			name := strings.TrimPrefix(line, "+++ ")
			cur = nil
			if name != "/dev/null" {
				cur = map[int]bool{}
				out[strings.TrimPrefix(name, "b/")] = cur
			}
		case strings.HasPrefix(line, "@@ ") && cur != nil:
			// @@ -a[,b] +c[,d] @@: d lines from c (d defaults to 1).
			fields := strings.Fields(line)
			if len(fields) < 3 || !strings.HasPrefix(fields[2], "+") {
				return nil, fmt.Errorf("diff: bad hunk header %q", line)
			}
			startS, countS, hasCount := strings.Cut(fields[2][1:], ",")
			start, err := strconv.Atoi(startS)
			if err != nil {
				return nil, fmt.Errorf("diff: bad hunk header %q", line)
			}
			count := 1
			if hasCount {
				if count, err = strconv.Atoi(countS); err != nil {
					return nil, fmt.Errorf("diff: bad hunk header %q", line)
				}
			}
			for l := start; l < start+count; l++ {
				cur[l] = true
			}
		}
	}
	return out, sc.Err()
}

// command runs a program and returns its standard output; its standard
// error is in the error.
func command(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}
