package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/signals-sorcery/sas/shared/buildinfo"
	"github.com/signals-sorcery/sas/shared/exitcode"
	"github.com/signals-sorcery/sas/sidecar/login"
	"github.com/signals-sorcery/sas/sidecar/profile"
	"github.com/signals-sorcery/sas/sidecar/session"
)

const usage = `sas-login — sign in to Signals & Sorcery from a terminal

Usage:
  sas-login login [--no-browser] [--timeout 5m]   sign in through the browser
  sas-login token                                 print a valid ID token (refreshing it first if needed)
  sas-login status [--json]                       who is signed in; exit 1 when nobody
  sas-login whoami                                call GET /v1/me on the gateway and print it
  sas-login logout                                sign out and delete the stored tokens
  sas-login delete-account [--yes]                delete the account (asks to confirm), then sign out
  sas-login version                               print the build version

Every command accepts:
  --profile prod|dev|local   (SAS_PROFILE)       --issuer URL      (SAS_ISSUER)
  --client-id ID             (SAS_CLIENT_ID)     --gateway URL     (SAS_GATEWAY_URL)
  --scopes "…"               (SAS_SCOPES)        --port N          (SAS_REDIRECT_PORT)
  --token-store keyring|file (SAS_TOKEN_STORE)

Example:
  curl -H "Authorization: Bearer $(sas-login token)" https://sas.fly.dev/v1/me
`

type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) < 2 {
		fmt.Fprint(stderr, usage)
		return exitcode.Usage
	}
	cmd, rest := args[1], args[2:]
	var err error
	switch cmd {
	case "login":
		err = e.login(ctx, rest)
	case "token":
		err = e.token(ctx, rest)
	case "status":
		err = e.status(ctx, rest)
	case "whoami":
		err = e.whoami(ctx, rest)
	case "logout":
		err = e.logout(ctx, rest)
	case "delete-account":
		err = e.deleteAccount(ctx, rest)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, buildinfo.String())
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "sas-login: unknown command %q\n\n%s", cmd, usage)
		return exitcode.Usage
	}
	return exitcode.Of("sas-login", err, stderr, nil)
}

// command is a parsed subcommand: its settings and session.
type command struct {
	settings profile.Settings
	session  *session.Session
}

// parse parses a subcommand's flags (its own, registered by own, plus the
// configuration flags) and builds its session.
func (e env) parse(name string, args []string, own func(*flag.FlagSet)) (command, error) {
	fs := flag.NewFlagSet("sas-login "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage) }
	var pf profile.Flags
	pf.Register(fs)
	if own != nil {
		own(fs)
	}
	if err := fs.Parse(args); err != nil {
		return command{}, exitcode.FlagError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "sas-login %s: unexpected argument %q\n\n%s", name, fs.Arg(0), usage)
		return command{}, exitcode.ErrUsage
	}
	s, err := pf.Resolve(e.getenv)
	if err != nil {
		return command{}, err
	}
	sess, err := session.Open(session.Options{Settings: s})
	if err != nil {
		return command{}, err
	}
	return command{settings: s, session: sess}, nil
}

func (e env) login(ctx context.Context, args []string) error {
	var noBrowser bool
	var timeout time.Duration
	c, err := e.parse("login", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&noBrowser, "no-browser", false, "print the URL instead of opening a browser; also accept the redirect URL pasted here")
		fs.DurationVar(&timeout, "timeout", login.DefaultTimeout, "give up after this long")
	})
	if err != nil {
		return err
	}
	res, err := c.session.SignIn(ctx, login.Options{NoBrowser: noBrowser, Paste: e.stdin, Progress: e.stderr, Timeout: timeout})
	if err != nil {
		return err
	}
	who := res.Identity.Email
	if who == "" {
		who = res.Identity.Username
	}
	fmt.Fprintf(e.stderr, "Signed in as %s\n", who)
	return nil
}

func (e env) token(ctx context.Context, args []string) error {
	c, err := e.parse("token", args, nil)
	if err != nil {
		return err
	}
	set, err := c.session.Token(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, set.IDToken)
	return nil
}

func (e env) status(ctx context.Context, args []string) error {
	var asJSON bool
	c, err := e.parse("status", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the status as JSON")
	})
	if err != nil {
		return err
	}
	st, err := c.session.Status(ctx)
	if err != nil {
		return err
	}
	st.Profile = c.settings.Profile
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else if st.SignedIn {
		fmt.Fprintf(e.stdout, "Signed in as %s (%s) on profile %s; ID token expires %s\n",
			orDash(st.User.Email), st.User.ID, st.Profile, st.ExpiresAt.Local().Format(time.RFC3339))
	} else {
		fmt.Fprintf(e.stdout, "Not signed in on profile %s: run sas-login login\n", st.Profile)
	}
	if !st.SignedIn {
		return exitcode.ErrQuiet
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (e env) whoami(ctx context.Context, args []string) error {
	c, err := e.parse("whoami", args, nil)
	if err != nil {
		return err
	}
	body, err := session.NewTransport(c.session, session.TransportOptions{}).Call(ctx, http.MethodGet, "/v1/me", http.StatusOK)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(body)
	return err
}

// deleteAccount deletes the signed-in user's account (DELETE /v1/me) after
// the user confirms, then signs out here.
func (e env) deleteAccount(ctx context.Context, args []string) error {
	var yes bool
	c, err := e.parse("delete-account", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&yes, "yes", false, "do not ask for confirmation")
	})
	if err != nil {
		return err
	}
	st, err := c.session.Status(ctx)
	if err != nil {
		return err
	}
	if !st.SignedIn {
		return session.ErrNotSignedIn
	}
	if !yes {
		fmt.Fprintf(e.stderr, "This deletes the Signals & Sorcery account %s for good: the subscription is cancelled at once,\n"+
			"the sign-in account and its email are deleted. Type \"delete\" to confirm: ", cmp.Or(st.User.Email, st.User.ID))
		line, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if strings.TrimSpace(line) != "delete" {
			fmt.Fprintln(e.stderr)
			return errors.New("not confirmed: nothing was deleted")
		}
	}
	if err := session.NewTransport(c.session, session.TransportOptions{}).DeleteAccount(ctx); err != nil {
		return err
	}
	// The provider has forgotten the user: a failed revocation is expected.
	if _, err := c.session.Logout(ctx); err != nil {
		return fmt.Errorf("the account is deleted, but the local session could not be removed: %w", err)
	}
	fmt.Fprintln(e.stderr, "The account is deleted, and this computer is signed out.")
	return nil
}

func (e env) logout(ctx context.Context, args []string) error {
	c, err := e.parse("logout", args, nil)
	if err != nil {
		return err
	}
	revokeErr, err := c.session.Logout(ctx)
	if err != nil {
		return err
	}
	if revokeErr != nil {
		fmt.Fprintf(e.stderr, "Warning: %v; the local session is deleted anyway.\n", revokeErr)
	}
	fmt.Fprintf(e.stderr, "Signed out of profile %s.\n", c.settings.Profile)
	return nil
}
