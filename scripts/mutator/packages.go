package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// A pkg is a package holding target files, parsed and type-checked once.
// Each mutant is type-checked in it before it may run: a mutant the compiler
// would refuse (a removed assignment that leaves a variable unused, a
// removed return that leaves a function without one) is no test of the
// tests.
type pkg struct {
	path       string // import path
	fset       *token.FileSet
	files      []*ast.File // its non-test files
	names      []string    // their absolute paths, in the same order
	src        map[string][]byte
	conf       types.Config
	candidates []*mutant
}

// listed is what `go list -json` tells of a package.
type listed struct {
	Dir, ImportPath string
	GoFiles         []string
	Module          *struct{ GoVersion string }
	Error           *struct{ Err string }
}

// loadPackages parses and type-checks the packages of the targets and
// finds their mutants. Imports come from the compiler's export data, as
// `go list -export` builds it (the same build the tests reuse).
func loadPackages(ctx context.Context, root string, targets []target, warn func(string, ...any)) ([]*pkg, error) {
	byDir := map[string][]target{}
	var patterns []string
	for _, t := range targets {
		dir := filepath.Dir(t.path)
		if _, ok := byDir[dir]; !ok {
			rel, err := filepath.Rel(root, dir)
			if err != nil {
				return nil, err
			}
			patterns = append(patterns, "./"+filepath.ToSlash(rel))
		}
		byDir[dir] = append(byDir[dir], t)
	}
	out, err := command(ctx, root, "go", append([]string{"list", "-e", "-json=Dir,ImportPath,GoFiles,Module,Error"}, patterns...)...)
	if err != nil {
		return nil, err
	}
	var list []listed
	for dec := json.NewDecoder(strings.NewReader(out)); ; {
		var l listed
		if err := dec.Decode(&l); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list: %w", err)
		}
		list = append(list, l)
	}
	var paths []string
	for _, l := range list {
		paths = append(paths, l.ImportPath)
	}
	exports, err := exportData(ctx, root, paths)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		if f := exports[path]; f != "" {
			return os.Open(f)
		}
		return nil, fmt.Errorf("no export data for %s", path)
	})
	var pkgs []*pkg
	for _, l := range list {
		if l.Error != nil {
			warn("%s: skipped: %s", l.ImportPath, l.Error.Err)
			continue
		}
		p := &pkg{path: l.ImportPath, fset: fset, src: map[string][]byte{}}
		p.conf = types.Config{Importer: imp, Sizes: types.SizesFor("gc", runtime.GOARCH)}
		if l.Module != nil && l.Module.GoVersion != "" {
			p.conf.GoVersion = "go" + l.Module.GoVersion
		}
		if err := p.parse(l); err != nil {
			return nil, err
		}
		info := &types.Info{Types: map[ast.Expr]types.TypeAndValue{}, Uses: map[*ast.Ident]types.Object{}}
		if _, err := p.conf.Check(p.path, fset, p.files, info); err != nil {
			warn("%s: skipped: it does not type-check: %v", p.path, err)
			continue
		}
		for _, t := range byDir[l.Dir] {
			i := slices.Index(p.names, t.path)
			if i < 0 {
				warn("%s: skipped: not part of %s in this build (a build tag?)", t.path, p.path)
				continue
			}
			if ast.IsGenerated(p.files[i]) {
				continue
			}
			rel, _ := filepath.Rel(root, t.path)
			for _, m := range findMutants(fset, p.files[i], p.src[t.path], info) {
				if t.covers(m.line, m.last) {
					m.pkg, m.file, m.rel = p, t.path, filepath.ToSlash(rel)
					p.candidates = append(p.candidates, m)
				}
			}
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

func (p *pkg) parse(l listed) error {
	for _, name := range l.GoFiles {
		path := filepath.Join(l.Dir, name)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(p.fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		p.files = append(p.files, f)
		p.names = append(p.names, path)
		p.src[path] = src
	}
	return nil
}

// typeChecks reports whether the package still type-checks with m applied;
// the answer is kept.
func (p *pkg) typeChecks(m *mutant) bool {
	if m.typeChecked == 0 {
		m.typeChecked = -1
		i := slices.Index(p.names, m.file)
		f, err := parser.ParseFile(p.fset, m.file, m.apply(p.src[m.file]), parser.SkipObjectResolution)
		if err == nil {
			files := append([]*ast.File(nil), p.files...)
			files[i] = f
			if _, err := p.conf.Check(p.path, p.fset, files, nil); err == nil {
				m.typeChecked = 1
			}
		}
	}
	return m.typeChecked == 1
}

// exportData maps the import path of every dependency of paths to its
// export data file, building what is missing.
func exportData(ctx context.Context, root string, paths []string) (map[string]string, error) {
	out, err := command(ctx, root, "go", append([]string{"list", "-e", "-deps", "-export", "-f", "{{.ImportPath}}\t{{.Export}}"}, paths...)...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if path, file, ok := strings.Cut(sc.Text(), "\t"); ok {
			m[path] = file
		}
	}
	return m, sc.Err()
}

// directImporters maps each package of the module to the module's packages
// that import it, in their code or their tests.
func directImporters(ctx context.Context, root string) (map[string][]string, error) {
	out, err := command(ctx, root, "go", "list", "-e", "-f",
		`{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}`, "./...")
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		seen := map[string]bool{f[0]: true}
		for _, imp := range f[1:] {
			if !seen[imp] {
				seen[imp] = true
				m[imp] = append(m[imp], f[0])
			}
		}
	}
	return m, nil
}
