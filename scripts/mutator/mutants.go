package main

import (
	"fmt"
	"go/ast"
	"go/token"
	"go/types"
	"slices"
	"strings"
)

// A mutant is one small fault: the bytes [start, end) of a file replaced by
// repl. Offsets are into the file as read when the run started.
type mutant struct {
	pkg         *pkg
	file        string // absolute path
	rel         string // path from the module root, for reports
	line, last  int    // the lines the replaced bytes span
	op          string // operator name, e.g. "boundary"
	start, end  int
	repl        string
	orig, mut   string // what a reader sees: the line before and after
	typeChecked int8   // 0 not yet known, 1 type-checks, -1 does not
}

// String is the report line of a survivor.
func (m *mutant) String() string {
	return fmt.Sprintf("%s:%d: %s: %s → %s", m.rel, m.line, m.op, m.orig, m.mut)
}

func (m *mutant) short() string { return fmt.Sprintf("%s:%d: %s", m.rel, m.line, m.op) }

// apply returns src with the mutant's replacement made.
func (m *mutant) apply(src []byte) []byte {
	out := make([]byte, 0, len(src)+len(m.repl))
	out = append(out, src[:m.start]...)
	out = append(out, m.repl...)
	return append(out, src[m.end:]...)
}

// swaps are the operator mutants: each operator, what it becomes and the
// operator's name in reports. Arithmetic applies to numbers only: + on
// strings has no - to swap with.
var swaps = map[token.Token]struct {
	to token.Token
	op string
}{
	token.LSS:        {token.LEQ, "boundary"},
	token.LEQ:        {token.LSS, "boundary"},
	token.GTR:        {token.GEQ, "boundary"},
	token.GEQ:        {token.GTR, "boundary"},
	token.EQL:        {token.NEQ, "negation"},
	token.NEQ:        {token.EQL, "negation"},
	token.LAND:       {token.LOR, "logical"},
	token.LOR:        {token.LAND, "logical"},
	token.ADD:        {token.SUB, "arithmetic"},
	token.SUB:        {token.ADD, "arithmetic"},
	token.MUL:        {token.QUO, "arithmetic"},
	token.QUO:        {token.MUL, "arithmetic"},
	token.REM:        {token.MUL, "arithmetic"},
	token.ADD_ASSIGN: {token.SUB_ASSIGN, "arithmetic"},
	token.SUB_ASSIGN: {token.ADD_ASSIGN, "arithmetic"},
	token.MUL_ASSIGN: {token.QUO_ASSIGN, "arithmetic"},
	token.QUO_ASSIGN: {token.MUL_ASSIGN, "arithmetic"},
	token.INC:        {token.DEC, "arithmetic"},
	token.DEC:        {token.INC, "arithmetic"},
}

// finder collects the mutants of one file.
type finder struct {
	fset   *token.FileSet
	src    []byte
	info   *types.Info
	bodies map[*ast.BlockStmt]bool // function bodies
	out    []*mutant
}

// findMutants returns every mutant of one parsed file of a type-checked
// package (info holds its Types and Uses). Nothing inside a logging call is
// mutated: a log line's wording is not behaviour the tests should pin down.
// Whether a mutant compiles is checked later, by pkg.
func findMutants(fset *token.FileSet, f *ast.File, src []byte, info *types.Info) []*mutant {
	fd := &finder{fset: fset, src: src, info: info, bodies: map[*ast.BlockStmt]bool{}}
	ast.Inspect(f, fd.visit)
	return fd.out
}

func (fd *finder) visit(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.GenDecl:
		return n.Tok != token.IMPORT
	case *ast.FuncDecl:
		if n.Body != nil {
			fd.bodies[n.Body] = true
		}
	case *ast.FuncLit:
		fd.bodies[n.Body] = true
	case *ast.ExprStmt:
		if fd.calls(n.X, "log/slog", "log") {
			return false // logging: its wording is no behaviour to test
		}
	case *ast.BlockStmt:
		fd.removals(n.List, fd.bodies[n])
	case *ast.CaseClause:
		fd.removals(n.Body, false)
	case *ast.CommClause:
		fd.removals(n.Body, false)
	case *ast.BinaryExpr:
		s, ok := swaps[n.Op]
		if !ok || (s.op == "arithmetic" && !fd.numeric(n, n.X)) {
			break
		}
		fd.add(s.op, n.OpPos, len(n.Op.String()), s.to.String())
	case *ast.AssignStmt:
		if s, ok := swaps[n.Tok]; ok && len(n.Lhs) == 1 && fd.numeric(nil, n.Lhs[0]) {
			fd.add(s.op, n.TokPos, len(n.Tok.String()), s.to.String())
		}
	case *ast.IncDecStmt:
		s := swaps[n.Tok]
		fd.add(s.op, n.TokPos, len(n.Tok.String()), s.to.String())
	case *ast.UnaryExpr:
		if n.Op == token.NOT {
			fd.add("negation", n.OpPos, 1, "")
		}
	case *ast.Ident:
		if obj := fd.info.Uses[n]; obj != nil && (obj == types.Universe.Lookup("true") || obj == types.Universe.Lookup("false")) {
			fd.add("boolean", n.Pos(), len(n.Name), map[string]string{"true": "false", "false": "true"}[n.Name])
		}
	case *ast.ReturnStmt:
		// return …, err → return …, nil: the error is swallowed.
		if len(n.Results) == 0 {
			break
		}
		last := n.Results[len(n.Results)-1]
		if id, ok := last.(*ast.Ident); ok && id.Name == "nil" {
			break
		}
		if t := fd.info.TypeOf(last); t != nil && types.Identical(t, types.Universe.Lookup("error").Type()) {
			fd.add("nil error", last.Pos(), int(last.End()-last.Pos()), "nil")
		}
	}
	return true
}

// removals adds a "removal" mutant for each statement of a list whose
// absence can change behaviour: calls, assignments (not declarations, whose
// removal would not compile), ++/-- and returns. A bare return that ends a
// function body is the same as none, so it is left alone, and so are the
// calls into sync: a mutex never unlocked or a WaitGroup never done hangs
// until -timeout, which spends the budget to learn nothing.
func (fd *finder) removals(list []ast.Stmt, body bool) {
	for i, s := range list {
		switch s := s.(type) {
		case *ast.ExprStmt:
			if _, ok := s.X.(*ast.CallExpr); !ok || fd.calls(s.X, "log/slog", "log", "sync") {
				continue
			}
		case *ast.AssignStmt:
			if s.Tok == token.DEFINE || allBlank(s.Lhs) {
				continue
			}
		case *ast.IncDecStmt:
		case *ast.ReturnStmt:
			if body && i == len(list)-1 && len(s.Results) == 0 {
				continue
			}
		default:
			continue
		}
		fd.add("removal", s.Pos(), int(s.End()-s.Pos()), "")
	}
}

// add records a mutant replacing n bytes at pos by repl.
func (fd *finder) add(op string, pos token.Pos, n int, repl string) {
	tf := fd.fset.File(pos)
	start := tf.Offset(pos)
	end := start + n
	m := &mutant{op: op, start: start, end: end, repl: repl, line: tf.Line(pos)}
	m.last = m.line
	if end > start {
		m.last = tf.Line(tf.Pos(end - 1))
	}
	m.orig, m.mut = describe(fd.src, start, end, repl)
	if op == "removal" {
		m.mut = "(statement removed)"
	}
	fd.out = append(fd.out, m)
}

// numeric reports whether the operands of an arithmetic mutant are numbers
// and the whole is not a constant expression (10*time.Second, 1<<20: a
// mutant there changes a setting, which rarely says anything of the tests).
func (fd *finder) numeric(whole ast.Expr, operand ast.Expr) bool {
	if whole != nil {
		if tv, ok := fd.info.Types[whole]; ok && tv.Value != nil {
			return false
		}
	}
	t := fd.info.TypeOf(operand)
	if t == nil {
		return false
	}
	b, ok := t.Underlying().(*types.Basic)
	return ok && b.Info()&types.IsNumeric != 0
}

// calls reports whether x is a call of a function or method of one of the
// packages: calls(x, "log/slog") holds for logger.Warn(…) and slog.Info(…).
func (fd *finder) calls(x ast.Expr, pkgs ...string) bool {
	call, ok := x.(*ast.CallExpr)
	if !ok {
		return false
	}
	var id *ast.Ident
	switch fn := ast.Unparen(call.Fun).(type) {
	case *ast.SelectorExpr:
		id = fn.Sel
	case *ast.Ident:
		id = fn
	default:
		return false
	}
	f, ok := fd.info.Uses[id].(*types.Func)
	return ok && f.Pkg() != nil && slices.Contains(pkgs, f.Pkg().Path())
}

func allBlank(xs []ast.Expr) bool {
	for _, x := range xs {
		if id, ok := x.(*ast.Ident); !ok || id.Name != "_" {
			return false
		}
	}
	return true
}

// describe returns the source line(s) around [start, end) before and after
// the replacement, on one line with runs of blanks squeezed, cut to about 100
// characters around the change.
func describe(src []byte, start, end int, repl string) (before, after string) {
	ls := start
	for ls > 0 && src[ls-1] != '\n' {
		ls--
	}
	le := end
	for le < len(src) && src[le] != '\n' {
		le++
	}
	const context = 45
	prefix, suffix := string(src[ls:start]), string(src[end:le])
	prefix = strings.TrimLeft(squeeze(prefix), " ")
	suffix = strings.TrimRight(squeeze(suffix), " ")
	if r := []rune(prefix); len(r) > context {
		prefix = "…" + string(r[len(r)-context:])
	}
	if r := []rune(suffix); len(r) > context {
		suffix = string(r[:context]) + "…"
	}
	return prefix + squeeze(string(src[start:end])) + suffix, prefix + repl + suffix
}

// squeeze puts text on one line: every run of blanks becomes one space.
func squeeze(s string) string {
	lead := len(s) > 0 && strings.ContainsRune(" \t\n", rune(s[0]))
	trail := len(s) > 0 && strings.ContainsRune(" \t\n", rune(s[len(s)-1]))
	out := strings.Join(strings.Fields(s), " ")
	if lead && out != "" {
		out = " " + out
	}
	if trail && out != "" {
		out += " "
	}
	return out
}
