// Package httpapi is the gateway's HTTP surface: the chi router, its
// middleware, and the handlers of the contract's routes. Every non-2xx
// answer goes through writeError, so the envelope and the code → status
// mapping have one home.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/errreport"
	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TokenVerifier checks a bearer token.
//
// Errors: *wire.Error with code invalid_token or unavailable.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (gateway.Identity, error)
}

// UserStore finds or creates the user behind an identity.
//
// Errors: *wire.Error with code unavailable.
type UserStore interface {
	UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error)
}

// Check is a readiness probe of one dependency; it must honour ctx.
type Check func(ctx context.Context) error

// AIProxy serves the OpenAI-compatible routes. Each returns an error only
// when it wrote nothing (the caller answers with the envelope).
type AIProxy interface {
	Models(w http.ResponseWriter, u gateway.User) error
	Chat(w http.ResponseWriter, r *http.Request, u gateway.User) error
	Responses(w http.ResponseWriter, r *http.Request, u gateway.User) error
	// Template runs a prompt template (the {name} of the route).
	Template(w http.ResponseWriter, r *http.Request, u gateway.User, name string) error
	Templates(w http.ResponseWriter, u gateway.User) error
}

// Billing serves the Stripe routes.
//
// Errors: *wire.Error conflict (portal without a customer), bad_request
// (webhook signature), upstream_error, unavailable.
type Billing interface {
	Checkout(ctx context.Context, u gateway.User) (string, error)
	Portal(ctx context.Context, u gateway.User) (string, error)
	Webhook(r *http.Request) error
}

// Accounts ends accounts.
//
// Errors: *wire.Error unavailable (Delete: a step failed, a retry finishes
// it); not_found, bad_request, payload_too_large (Webhook).
type Accounts interface {
	Delete(ctx context.Context, u gateway.User) error
	Webhook(r *http.Request) error
}

// QuotaReader reads a user's quota without consuming it.
//
// Errors: *wire.Error unavailable.
type QuotaReader interface {
	Peek(ctx context.Context, user string, p quota.Plan) ([]quota.Usage, error)
}

// Options are the Server's dependencies. Verifier and Users are required.
type Options struct {
	Verifier TokenVerifier
	Users    UserStore
	// Checks are the /readyz probes by name ("postgres", "redis").
	Checks  map[string]Check
	Plans   quota.Plans
	Quota   QuotaReader
	Proxy   AIProxy
	Billing Billing // nil: billing routes answer not_found
	// Accounts deletes accounts and applies Clerk's webhooks (nil: those
	// routes answer unavailable).
	Accounts Accounts
	Usage    UsageReader      // nil: /v1/usage answers unavailable
	Metrics  *metrics.Metrics // nil: none
	// Errors receives panics and 5xx causes (nil: none).
	Errors *errreport.Reporter
	Logger *slog.Logger
	Now    func() time.Time
}

// Server is the gateway's HTTP handler.
type Server struct {
	verifier TokenVerifier
	users    UserStore
	checks   map[string]Check
	plans    quota.Plans
	quota    QuotaReader
	proxy    AIProxy
	billing  Billing
	accounts Accounts
	// usageReader reads the ledger for /v1/usage.
	usageReader UsageReader
	metrics     *metrics.Metrics
	errors      *errreport.Reporter
	log         *slog.Logger
	now         func() time.Time
	router      chi.Router
}

// Timeouts of the routes.
const (
	// ReadyTimeout bounds each readiness probe.
	ReadyTimeout = time.Second
	// APITimeout bounds non-streaming /v1 requests.
	APITimeout = 10 * time.Second
	// DeleteTimeout bounds an account deletion: calls to Stripe and Clerk.
	DeleteTimeout = 30 * time.Second
)

// New builds the Server and its routes.
func New(opts Options) *Server {
	s := &Server{verifier: opts.Verifier, users: opts.Users, checks: opts.Checks, plans: opts.Plans,
		quota: opts.Quota, proxy: opts.Proxy, billing: opts.Billing, accounts: opts.Accounts, usageReader: opts.Usage, metrics: opts.Metrics, errors: opts.Errors, log: opts.Logger, now: opts.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	r := chi.NewRouter()
	r.Use(requestID, s.accessLog, s.recoverPanics, s.limitBody)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, wire.Errorf(wire.CodeNotFound, "No route for %s %s.", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", strings.Join(s.allowed(r.URL.Path), ", "))
		s.writeError(w, r, wire.Errorf(wire.CodeMethodNotAllowed, "Method %s is not allowed on %s.", r.Method, r.URL.Path))
	})
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Get("/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(gateway.OpenAPI)
	})
	r.Route("/v1", func(r chi.Router) {
		r.Use(s.authenticate)
		r.With(deadline(APITimeout)).Get("/me", s.me)
		r.With(deadline(DeleteTimeout)).Delete("/me", s.deleteMe)
		r.With(deadline(APITimeout)).Get("/limits", s.limits)
		r.With(deadline(APITimeout)).Get("/models", s.models)
		r.With(deadline(APITimeout)).Get("/usage", s.usage)
		// Not under APITimeout: a streamed completion may run for minutes;
		// the proxy bounds the upstream itself.
		r.Post("/chat/completions", s.metered(AIProxy.Chat))
		r.Post("/responses", s.metered(AIProxy.Responses))
		r.Post("/templates/{name}", s.metered(func(p AIProxy, w http.ResponseWriter, r *http.Request, u gateway.User) error {
			return p.Template(w, r, u, chi.URLParam(r, "name"))
		}))
		r.With(deadline(APITimeout)).Get("/templates", s.metered(func(p AIProxy, w http.ResponseWriter, _ *http.Request, u gateway.User) error {
			return p.Templates(w, u)
		}))
		r.With(deadline(APITimeout)).Post("/billing/checkout", s.billingURL(Billing.Checkout))
		r.With(deadline(APITimeout)).Post("/billing/portal", s.billingURL(Billing.Portal))
	})
	r.With(deadline(APITimeout)).Post("/webhooks/stripe", s.stripeWebhook)
	r.With(deadline(APITimeout)).Post("/webhooks/clerk", s.clerkWebhook)
	s.router = r
	return s
}

// allowed lists the methods that path has routes for (RFC 9110 wants them
// in the Allow header of a 405).
func (s *Server) allowed(path string) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if s.router.Match(chi.NewRouteContext(), m, path) {
			out = append(out, m)
		}
	}
	return out
}

// Router returns the router, so that `sas-gateway dev` and later features
// can mount more routes.
func (s *Server) Router() chi.Router { return s.router }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// authenticate verifies the bearer token, loads the user, refuses suspended
// accounts, and puts the user in the context.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			s.metrics.TokenRejected("missing")
			s.writeError(w, r, wire.Errorf(wire.CodeMissingToken, "A bearer token is required (Authorization: Bearer <token>)."))
			return
		}
		id, err := s.verifier.Verify(r.Context(), raw)
		if err != nil {
			if we, ok := errors.AsType[*wire.Error](err); ok && we.Code == wire.CodeInvalidToken {
				s.metrics.TokenRejected(we.Reason)
			} else {
				s.metrics.DependencyError("issuer")
			}
			s.writeError(w, r, err)
			return
		}
		u, err := s.users.UpsertUser(r.Context(), id)
		if err != nil {
			s.metrics.DependencyError("postgres")
			s.writeError(w, r, err)
			return
		}
		// Deleting one's account is allowed whatever its status; deleting it
		// again runs every step again (finishing one an outage stopped).
		deleting := r.Method == http.MethodDelete && r.URL.Path == "/v1/me"
		switch {
		case u.Deleted() && !deleting:
			s.writeError(w, r, wire.Errorf(wire.CodeAccountDeleted, "This account was deleted."))
			return
		case !u.Active() && !deleting:
			s.writeError(w, r, wire.Errorf(wire.CodeAccountSuspended, "This account is suspended."))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey, u)))
	})
}

// bearerToken extracts the token of an RFC 6750 Authorization header. The
// scheme is case-insensitive; anything else (Basic, an empty token) counts
// as no token.
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// userFrom returns the authenticated user; only valid under authenticate.
func userFrom(ctx context.Context) gateway.User {
	u, _ := ctx.Value(userKey).(gateway.User)
	return u
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, userFrom(r.Context()).Me())
}

// limits answers GET /v1/limits: the caller's plan and what is left of it,
// without consuming anything.
func (s *Server) limits(w http.ResponseWriter, r *http.Request) {
	u := userFrom(r.Context())
	if s.quota == nil {
		s.writeError(w, r, errNoQuota)
		return
	}
	usage, err := s.quota.Peek(r.Context(), u.ClerkUserID, s.plans.For(u.Plan))
	if err != nil {
		s.metrics.DependencyError("redis")
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Plan   string        `json:"plan"`
		Limits []quota.Usage `json:"limits"`
	}{u.Plan, usage})
}

var errNoQuota = wire.Errorf(wire.CodeUnavailable, "The quota service is not configured.")

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	if s.proxy == nil {
		s.writeError(w, r, errNoProxy)
		return
	}
	if err := s.proxy.Models(w, userFrom(r.Context())); err != nil {
		s.writeError(w, r, err)
	}
}

// metered serves a route of the proxy: serve calls one of its methods
// (AIProxy.Chat, AIProxy.Responses, AIProxy.Template, …).
func (s *Server) metered(serve func(AIProxy, http.ResponseWriter, *http.Request, gateway.User) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.proxy == nil {
			s.writeError(w, r, errNoProxy)
			return
		}
		if err := serve(s.proxy, w, r, userFrom(r.Context())); err != nil {
			s.writeError(w, r, err)
		}
	}
}

var errNoBilling = wire.Errorf(wire.CodeNotFound, "Billing is not configured on this gateway.")

// billingURL answers {"url": …} from a Checkout or portal session: session
// is Billing.Checkout or Billing.Portal.
func (s *Server) billingURL(session func(Billing, context.Context, gateway.User) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.billing == nil {
			s.writeError(w, r, errNoBilling)
			return
		}
		url, err := session(s.billing, r.Context(), userFrom(r.Context()))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"url": url})
	}
}

func (s *Server) stripeWebhook(w http.ResponseWriter, r *http.Request) {
	if s.billing == nil {
		s.writeError(w, r, errNoBilling)
		return
	}
	if err := s.billing.Webhook(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"received": true})
}

// deleteMe answers DELETE /v1/me: the caller's account is deleted.
func (s *Server) deleteMe(w http.ResponseWriter, r *http.Request) {
	if s.accounts == nil {
		s.writeError(w, r, errNoAccounts)
		return
	}
	if err := s.accounts.Delete(r.Context(), userFrom(r.Context())); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) clerkWebhook(w http.ResponseWriter, r *http.Request) {
	if s.accounts == nil {
		s.writeError(w, r, errNoAccounts)
		return
	}
	if err := s.accounts.Webhook(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"received": true})
}

var errNoAccounts = wire.Errorf(wire.CodeUnavailable, "Account management is not configured on this gateway.")

var errNoProxy = wire.Errorf(wire.CodeUnavailable, "The AI proxy is not configured on this gateway.")

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok"})
}

// readyz runs every check in parallel, each bounded by ReadyTimeout.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
	defer cancel()
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		checks = make(map[string]string, len(s.checks))
		ok     = true
	)
	for name, check := range s.checks {
		wg.Go(func() {
			res := "ok"
			if err := check(ctx); err != nil {
				res = checkError(ctx, err)
				s.logger(r).Warn("readiness check failed", "check", name, "err", err)
			}
			mu.Lock()
			defer mu.Unlock()
			checks[name] = res
			ok = ok && res == "ok"
		})
	}
	wg.Wait()
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, wire.Health{Status: "unavailable", Checks: checks})
		return
	}
	writeJSON(w, http.StatusOK, wire.Health{Status: "ok", Checks: checks})
}

// checkError describes a failed check for /readyz, which is public: one of
// a few fixed phrases, never the driver's text (it can name hosts, users
// and databases). The full error goes to the log.
func checkError(ctx context.Context, err error) string {
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return "timeout after " + ReadyTimeout.String()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28"):
		return "authentication failed"
	case errors.As(err, &pgErr):
		return "error " + pgErr.Code
	case errors.As(err, &dnsErr):
		return "host not found"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "NOAUTH") || strings.Contains(err.Error(), "WRONGPASS"):
		return "authentication failed"
	default:
		return "unreachable"
	}
}
