// Package daemon is the sidecar's core, shared by its two front doors (the
// stdio JSON-RPC channel and the Unix-socket HTTP API): who is signed in,
// signing in and out (one browser flow at a time), and calling the gateway
// with the ID token attached — refreshed before expiry, refreshed and
// retried once when the gateway answers 401. The token never leaves it.
package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/login"
	"github.com/signals-sorcery/sas/sidecar/session"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// Options configure a Daemon.
type Options struct {
	Session *session.Session
	// Browser opens the sign-in page (default: the system browser).
	Browser login.Browser
	// Upstream carries the requests to the gateway (default: the
	// session.Transport's).
	Upstream http.RoundTripper
	// WatchInterval is how often the store is re-read to notice a sign-in
	// or sign-out made by sas-login (default 3 s; negative: never).
	WatchInterval time.Duration
	Logger        *slog.Logger
}

// Daemon is safe for concurrent use. It owns its sign-in flows: they
// outlive the request that started them, and end with Close.
type Daemon struct {
	o     Options
	gw    *session.Transport
	life  context.Context // the daemon's lifetime
	stop  context.CancelFunc
	flows sync.WaitGroup

	loginMu sync.Mutex
	login   *loginCall // the sign-in in progress, if any

	listenMu  sync.Mutex
	listeners []func(Notification)
	lastMu    sync.Mutex
	last      wire.SidecarStatus
}

// Notification is an event for the app: "authChanged" with an AuthChanged,
// or "loginStarted" with a LoginStarted.
type Notification struct {
	Method string
	Params any
}

// AuthChanged is the contract's authChanged notification.
type AuthChanged struct {
	SignedIn bool              `json:"signedIn"`
	User     *wire.SidecarUser `json:"user"`
}

// LoginStarted carries the sign-in URL, so the app can offer it as a link
// when no browser opens (an extension of the contract).
type LoginStarted struct {
	URL string `json:"url"`
}

type loginCall struct {
	done chan struct{}
	st   wire.SidecarStatus
	err  error
	// handoffs carries the app's callback URLs to an app-redirect sign-in
	// (nil for a loopback one).
	handoffs chan login.Handoff
}

// LoginOptions choose how a sign-in returns to the sidecar.
type LoginOptions struct {
	// App: the provider redirects to the app's own URI (sas://callback),
	// and the app passes the URL on with CompleteLogin.
	App bool
}

// New returns a Daemon.
func New(o Options) *Daemon {
	if o.Browser == nil {
		o.Browser = login.SystemBrowser{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.WatchInterval == 0 {
		o.WatchInterval = 3 * time.Second
	}
	life, stop := context.WithCancel(context.Background())
	d := &Daemon{o: o, life: life, stop: stop}
	// A session that ended at the provider is announced (authChanged).
	d.gw = session.NewTransport(o.Session, session.TransportOptions{Upstream: o.Upstream, Logger: o.Logger,
		Ended: func(ctx context.Context) { _, _ = d.Status(ctx) }})
	return d
}

// Transport is the RoundTripper through which both front doors call the
// gateway (session.Transport: the token attached, refreshed and retried
// once on a 401).
func (d *Daemon) Transport() http.RoundTripper { return d.gw }

// Close cancels the sign-in in progress, if any, and waits for it to end;
// later sign-ins are refused.
func (d *Daemon) Close() {
	d.loginMu.Lock()
	d.stop()
	d.loginMu.Unlock()
	d.flows.Wait()
}

// OnNotify registers fn for notifications. Listeners must not block.
func (d *Daemon) OnNotify(fn func(Notification)) {
	d.listenMu.Lock()
	defer d.listenMu.Unlock()
	d.listeners = append(d.listeners, fn)
}

func (d *Daemon) notify(n Notification) {
	d.listenMu.Lock()
	ls := slices.Clone(d.listeners)
	d.listenMu.Unlock()
	for _, fn := range ls {
		fn(n)
	}
}

// Status reports who is signed in, re-reading the store (so a sign-in made
// by sas-login shows at once), and emits authChanged if it changed.
func (d *Daemon) Status(ctx context.Context) (wire.SidecarStatus, error) {
	st, err := d.o.Session.Status(ctx)
	if err != nil {
		return st, err
	}
	d.observe(st)
	return st, nil
}

// observe records st and notifies authChanged when who is signed in
// changed, their email or name included (a refresh may bring a new one:
// the app must not keep showing the old).
func (d *Daemon) observe(st wire.SidecarStatus) {
	d.lastMu.Lock()
	changed := st.SignedIn != d.last.SignedIn || userOf(st) != userOf(d.last)
	d.last = st
	d.lastMu.Unlock()
	if changed {
		d.notify(Notification{Method: "authChanged", Params: AuthChanged{SignedIn: st.SignedIn, User: st.User}})
	}
}

func userOf(st wire.SidecarStatus) wire.SidecarUser {
	if st.User == nil {
		return wire.SidecarUser{}
	}
	return *st.User
}

// Watch re-reads the store every WatchInterval until ctx ends, so changes
// made by another process (sas-login login/logout) are announced.
func (d *Daemon) Watch(ctx context.Context) {
	if st, err := d.o.Session.Status(ctx); err == nil {
		d.lastMu.Lock()
		d.last = st
		d.lastMu.Unlock()
	}
	if d.o.WatchInterval < 0 {
		return
	}
	t := time.NewTicker(d.o.WatchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := d.Status(ctx); err != nil && ctx.Err() == nil {
				d.o.Logger.Debug("store re-read failed", "err", err)
			}
		}
	}
}

// Login runs the browser sign-in. A Login while one runs joins it instead
// of opening a second tab (whatever its options). ctx bounds this caller's
// wait, not the flow, which runs until it completes, times out
// (login.DefaultTimeout) or the daemon closes.
func (d *Daemon) Login(ctx context.Context, o LoginOptions) (wire.SidecarStatus, error) {
	d.loginMu.Lock()
	if d.life.Err() != nil {
		d.loginMu.Unlock()
		return wire.SidecarStatus{}, &wire.Error{Code: wire.CodeCancelled, Message: "The sidecar is shutting down."}
	}
	call := d.login
	if call == nil {
		call = &loginCall{done: make(chan struct{})}
		if o.App {
			call.handoffs = make(chan login.Handoff)
		}
		d.login = call
		d.flows.Add(1)
		go d.runLogin(call)
	}
	d.loginMu.Unlock()
	select {
	case <-call.done:
		return call.st, call.err
	case <-ctx.Done():
		return wire.SidecarStatus{}, cancelled(ctx)
	}
}

// CompleteLogin hands the app's callback URL (sas://callback?…) to the
// sign-in that waits for it, and returns when that sign-in ends.
//
// Errors: bad_request (no sign-in waits for the app's callback, or the URL
// is not this attempt's: that attempt goes on waiting), or the sign-in's.
func (d *Daemon) CompleteLogin(ctx context.Context, callbackURL string) (wire.SidecarStatus, error) {
	d.loginMu.Lock()
	call := d.login
	d.loginMu.Unlock()
	if call == nil || call.handoffs == nil {
		return wire.SidecarStatus{}, wire.Errorf(wire.CodeBadRequest, "No sign-in is waiting for the app's callback: start one with login {\"redirect\":\"app\"}.")
	}
	verdict := make(chan error, 1)
	select {
	case call.handoffs <- login.Handoff{URL: callbackURL, Done: verdict}:
	case <-call.done:
		return wire.SidecarStatus{}, wire.Errorf(wire.CodeBadRequest, "The sign-in this URL was for has already ended.")
	case <-ctx.Done():
		return wire.SidecarStatus{}, cancelled(ctx)
	}
	if err := <-verdict; err != nil {
		return wire.SidecarStatus{}, wire.Wrap(wire.CodeBadRequest, "This callback URL was refused: "+login.Printable(err.Error(), 200)+".", err)
	}
	select {
	case <-call.done:
		return call.st, call.err
	case <-ctx.Done():
		return wire.SidecarStatus{}, cancelled(ctx)
	}
}

// cancelled is the error of a caller that stopped waiting.
func cancelled(ctx context.Context) error {
	return &wire.Error{Code: wire.CodeCancelled, Message: "The request was cancelled.", Err: ctx.Err()}
}

func (d *Daemon) runLogin(call *loginCall) {
	defer d.flows.Done()
	defer func() {
		d.loginMu.Lock()
		d.login = nil
		d.loginMu.Unlock()
		close(call.done)
	}()
	ctx := d.life
	_, err := d.o.Session.SignIn(ctx, login.Options{
		// The URL goes to the app (loginStarted), not to the log: it
		// carries the attempt's state.
		Browser:  announcingBrowser{d: d, next: d.o.Browser},
		Handoffs: call.handoffs, // nil: the loopback listener
	})
	if err != nil && d.life.Err() != nil {
		// Closed mid-flow: whatever step it was in failed for that reason.
		call.err = &wire.Error{Code: wire.CodeCancelled, Message: "The sign-in was cancelled: the sidecar is shutting down.", Err: err}
		return
	}
	if err != nil {
		call.err = signInError(err)
		d.o.Logger.Warn("sign-in failed", "err", err)
		return
	}
	call.st, call.err = d.Status(ctx)
}

// signInError is the error a failed sign-in answers: login's own errors
// are sentences written for the user (no token ever in them).
func signInError(err error) error {
	switch {
	case errors.Is(err, tokens.ErrUnavailable):
		return &wire.Error{Code: wire.CodeUnavailable, Message: "The OS keyring is not available: no sign-in can be kept.", Err: err}
	case errors.Is(err, login.ErrCancelled):
		return &wire.Error{Code: wire.CodeCancelled, Message: "The sign-in was cancelled.", Err: err}
	}
	return &wire.Error{Code: wire.CodeSignInFailed, Message: "Sign-in failed: " + strings.TrimSuffix(login.Printable(err.Error(), 300), ".") + ".", Err: err}
}

// announcingBrowser tells the app the sign-in URL (loginStarted) before
// opening it, so the app can offer a link when no browser opens.
type announcingBrowser struct {
	d    *Daemon
	next login.Browser
}

func (b announcingBrowser) Open(url string) error {
	b.d.o.Logger.Info("sign-in started: opening the browser")
	b.d.notify(Notification{Method: "loginStarted", Params: LoginStarted{URL: url}})
	if err := b.next.Open(url); err != nil {
		b.d.o.Logger.Warn("could not open a browser; the app has the URL (loginStarted)", "err", err)
	}
	return nil
}

// Logout revokes and deletes the session and announces it.
func (d *Daemon) Logout(ctx context.Context) (wire.SidecarStatus, error) {
	revokeErr, err := d.o.Session.Logout(ctx)
	if err != nil {
		return wire.SidecarStatus{}, err
	}
	if revokeErr != nil {
		d.o.Logger.Warn("revocation at the provider failed; the local session is deleted", "err", revokeErr)
	}
	return d.Status(ctx)
}

// DeleteAccount deletes the signed-in user's account at the gateway
// (session.Transport.DeleteAccount) and then signs out here.
func (d *Daemon) DeleteAccount(ctx context.Context) (wire.SidecarStatus, error) {
	if err := d.gw.DeleteAccount(ctx); err != nil {
		return wire.SidecarStatus{}, err
	}
	d.o.Logger.Info("account deleted at the gateway: signing out")
	return d.Logout(ctx)
}
