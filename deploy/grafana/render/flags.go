package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

var errHelp = errors.New("help requested")

// varsFlag collects repeated -vars name=value.
type varsFlag map[string]string

func (v varsFlag) String() string {
	var parts []string
	for k, val := range v {
		parts = append(parts, k+"="+val)
	}
	return strings.Join(parts, " ")
}

func (v varsFlag) Set(s string) error {
	name, val, ok := strings.Cut(s, "=")
	name = strings.TrimPrefix(strings.TrimSpace(name), "$")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, not %q", s)
	}
	v[name] = val
	return nil
}

// ParseArgs reads the command line.
func ParseArgs(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts       Options
		start, end string
		step       time.Duration
		tz         string
		vars       = varsFlag{}
	)
	fs.StringVar(&opts.Dashboard, "dashboard", "", "Grafana dashboard JSON `file`")
	fs.StringVar(&opts.Prometheus, "prometheus", "http://127.0.0.1:9090", "Prometheus base `URL`")
	fs.StringVar(&start, "start", "now-1h", "start of the range: RFC 3339, unix seconds, now or now-<duration>")
	fs.StringVar(&end, "end", "now", "end of the range, as -start")
	fs.DurationVar(&step, "step", 15*time.Second, "query resolution step (also $__interval)")
	fs.StringVar(&opts.RateInterval, "rate-interval", "1m", "what $__rate_interval becomes (Grafana: 4 × the scrape interval at least)")
	fs.Var(vars, "vars", "dashboard variable `name=value` (repeatable); $app defaults to .*")
	fs.StringVar(&opts.Out, "out", "dashboard.png", "PNG `file` to write")
	fs.IntVar(&opts.Width, "width", 2400, "PNG width in pixels (a column is width/24)")
	fs.Float64Var(&opts.UnitHeight, "unit-height", 0, "pixels per grid height unit (0: 30 at width 1920, scaled with the width)")
	fs.IntVar(&opts.MaxSeries, "max-series", 8, "series drawn per panel at most (the largest by mean)")
	fs.StringVar(&tz, "tz", "UTC", "time zone of the clock times (an IANA name, or Local)")
	fs.DurationVar(&opts.Timeout, "timeout", 30*time.Second, "timeout of each Prometheus request")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return opts, errHelp
		}
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if opts.Dashboard == "" {
		return opts, errors.New("-dashboard is required")
	}
	now := time.Now()
	var err error
	if opts.Start, err = ParseTime(start, now); err != nil {
		return opts, fmt.Errorf("-start: %w", err)
	}
	if opts.End, err = ParseTime(end, now); err != nil {
		return opts, fmt.Errorf("-end: %w", err)
	}
	if step <= 0 {
		return opts, fmt.Errorf("-step must be positive, not %s", step)
	}
	opts.Step = step
	if opts.Location, err = time.LoadLocation(tz); err != nil {
		return opts, fmt.Errorf("-tz: %w", err)
	}
	opts.Vars = vars
	return opts, nil
}
