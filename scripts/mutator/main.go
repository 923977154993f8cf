// Command mutator is scripts/mutate's driver: mutation testing over the Go
// files a change touches. It makes small faults in the code (a `<` that
// becomes `<=`, an `&&` that becomes `||`, a dropped statement, an error
// that is returned as nil), runs the mutated package's tests against each,
// and prints every mutant the tests did not notice (a survivor) as
// file:line, then a summary.
//
// No file in the tree is written: each mutant reaches the compiler through
// `go test -overlay`, so an interrupted run leaves nothing to restore. A
// mutant that does not type-check is never run. scripts/mutate starts the
// services the tests need (PostgreSQL, Redis, ...) and runs this program;
// run on its own, it sees whatever TEST_* variables the environment holds.
//
// Every run is bounded: -timeout per mutant and -budget in all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line, parsed once.
type options struct {
	base      string // changed lines since the merge base with this revision
	useBase   bool   // restrict to changed lines (no paths given, or -base given)
	sample    int    // 0: every mutant
	seed      uint64
	budget    time.Duration
	timeout   time.Duration // per mutant: build and tests
	importers bool          // also run the tests of in-module importers
	baseline  bool          // run each package's tests once unmutated first
	list      bool          // print the mutants, run nothing
	paths     []string      // files (.go) or package patterns (./gateway/...)
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("mutate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: scripts/mutate [flags] [file.go | ./pkg | ./pkg/...]...

With no paths, mutates the lines of Go files changed since the merge base
with -base (committed since then, uncommitted, and untracked files). With
paths, mutates those files or packages whole (only their changed lines if
-base is given too).

`)
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.base, "base", "", "git revision to diff against (default origin/main if it exists, else HEAD~1)")
	fs.IntVar(&o.sample, "sample", 0, "run a random sample of this many mutants (0: all)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the sample and of the run order (0: from the clock; the seed used is printed)")
	fs.DurationVar(&o.budget, "budget", 10*time.Minute, "bound on the whole run: when it runs out, the mutant under test is abandoned and the run reports what it has")
	fs.DurationVar(&o.timeout, "timeout", 3*time.Minute, "per mutant, build and tests; a mutant that takes longer counts as timed out")
	fs.BoolVar(&o.importers, "importers", false, "also run the tests of the mutated package's direct importers in this module")
	fs.BoolVar(&o.baseline, "baseline", true, "run each package's tests once without a mutant first, and skip the package if they fail")
	fs.BoolVar(&o.list, "list", false, "list the mutants that would run, run none")
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	o.paths = fs.Args()
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "base" {
			o.useBase = true
		}
	})
	if len(o.paths) == 0 {
		o.useBase = true
	}
	if o.sample < 0 || o.budget <= 0 || o.timeout <= 0 {
		return o, errors.New("-sample must be >= 0, -budget and -timeout > 0")
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	start := time.Now()
	ctx, cancel := context.WithDeadline(ctx, start.Add(o.budget))
	defer cancel()

	root, err := moduleRoot(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 1
	}
	targets, err := selectTargets(ctx, root, o)
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 1
	}
	if len(targets) == 0 {
		fmt.Fprintln(stderr, "mutate: no Go files to mutate (test and generated files are skipped)")
		fmt.Fprintln(stdout, summary(nil))
		return 0
	}
	warn := func(format string, args ...any) { fmt.Fprintf(stderr, "mutate: "+format+"\n", args...) }
	pkgs, err := loadPackages(ctx, root, targets, warn)
	if err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 1
	}
	rng := rand.New(rand.NewPCG(o.seed, 0))
	all := 0
	for _, p := range pkgs {
		all += len(p.candidates)
	}
	chosen := choose(pkgs, rng, o.sample)
	fmt.Fprintf(stderr, "mutate: %d candidate mutants in %d files, running %d (seed %d)\n", all, len(targets), len(chosen), o.seed)
	if o.list {
		for _, m := range chosen {
			fmt.Fprintln(stdout, m)
		}
		return 0
	}

	r := &runner{root: root, timeout: o.timeout, baseline: o.baseline, stderr: stderr}
	if o.importers {
		if r.importers, err = directImporters(ctx, root); err != nil {
			fmt.Fprintln(stderr, "mutate:", err)
			return 1
		}
	}
	if r.dir, err = os.MkdirTemp("", "sas-mutate-"); err != nil {
		fmt.Fprintln(stderr, "mutate:", err)
		return 1
	}
	defer os.RemoveAll(r.dir)

	var results []result
	for i, m := range chosen {
		if ctx.Err() != nil {
			break
		}
		res := r.run(ctx, m)
		if res.status == notRun {
			break // the budget ran out during this mutant
		}
		results = append(results, res)
		fmt.Fprintf(stderr, "mutate: [%d/%d] %-9s %s (%.1f s)\n", i+1, len(chosen), res.status, m.short(), res.elapsed.Seconds())
		if res.status == survived {
			fmt.Fprintln(stdout, m)
		}
	}
	if n := len(chosen) - len(results); n > 0 {
		why := "the -budget ran out"
		if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			why = "interrupted"
		}
		fmt.Fprintf(stderr, "mutate: %s: %d mutants not run\n", why, n)
	}
	for _, p := range r.broken {
		fmt.Fprintf(stderr, "mutate: %s: tests fail without any mutant, its mutants were skipped\n", p)
	}
	fmt.Fprintln(stdout, summary(results))
	fmt.Fprintf(stderr, "mutate: took %s\n", time.Since(start).Round(time.Second))
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return 130
	}
	return 0
}

// choose picks the mutants to run, in a random order: a sample of n (all if
// n is 0) of the candidates that type-check. The order stays random so that
// a run the budget cuts short still covers every file evenly.
func choose(pkgs []*pkg, rng *rand.Rand, n int) []*mutant {
	var all []*mutant
	for _, p := range pkgs {
		all = append(all, p.candidates...)
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	var chosen []*mutant
	for _, m := range all {
		if n > 0 && len(chosen) == n {
			break
		}
		if m.pkg.typeChecks(m) {
			chosen = append(chosen, m)
		}
	}
	return chosen
}

// summary is the last line of a run: killed / all run.
func summary(results []result) string {
	n := map[status]int{}
	for _, r := range results {
		n[r.status]++
	}
	total := n[killed] + n[survived] + n[timedOut]
	ratio := "n/a"
	if total > 0 {
		ratio = fmt.Sprintf("%.1f %%", 100*float64(n[killed])/float64(total))
	}
	s := fmt.Sprintf("mutate: %d killed, %d survived, %d timed out of %d (%s)", n[killed], n[survived], n[timedOut], total, ratio)
	if n[skipped] > 0 {
		s += fmt.Sprintf("; %d skipped (build failed, or the package's tests fail unmutated)", n[skipped])
	}
	return s
}
