// Package exitcode is the contract's exit-code convention, shared by every
// SAS binary: 0 success (and --help), 2 a bad command line (the flag package
// or the command printed why), 1 a runtime failure reported as one line on
// stderr — never a Go stack trace.
package exitcode

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes.
const (
	OK      = 0
	Failure = 1
	Usage   = 2
)

// ErrUsage marks a command-line mistake whose explanation is printed.
var ErrUsage = errors.New("usage")

// ErrQuiet is a failure (exit 1) whose message the command printed itself,
// e.g. `sas-login status` saying "Not signed in".
var ErrQuiet = errors.New("failure already reported")

// FlagError keeps flag.ErrHelp (exit 0) and turns any other parse error,
// which the flag package has printed, into ErrUsage.
func FlagError(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return ErrUsage
}

// Of returns the exit code for err, printing "<prog>: <message>" on one
// line of stderr for runtime failures. describe renders the message (nil:
// err.Error()).
func Of(prog string, err error, stderr io.Writer, describe func(error) string) int {
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return OK
	case errors.Is(err, ErrUsage):
		return Usage
	case errors.Is(err, ErrQuiet):
		return Failure
	}
	msg := err.Error()
	if describe != nil {
		msg = describe(err)
	}
	fmt.Fprintln(stderr, prog+": "+strings.ReplaceAll(msg, "\n", " "))
	return Failure
}
