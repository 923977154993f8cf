// Package rpc is the sidecar's stdio channel: JSON-RPC 2.0, one JSON object
// per line, requests on stdin, responses and notifications on stdout. Each
// request runs in its own goroutine (a sign-in may take minutes while status
// calls go on); writes are serialised, one line each.
package rpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/daemon"
	"github.com/signals-sorcery/sas/sidecar/login"
)

// JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternal       = -32603
	// CodeApplication is a failure of the method itself; data.code holds the
	// contract's error code (not_signed_in, gateway_unreachable, …).
	CodeApplication = -32000
)

// MaxLineBytes bounds one request line (a 1 MiB body, JSON-escaped, fits).
const MaxLineBytes = 8 << 20

// MaxResponseBody bounds what a `request` call reads from the gateway.
const MaxResponseBody = 32 << 20

// Request is one parsed line.
type Request struct {
	ID     json.RawMessage // nil for a notification
	Method string
	Params json.RawMessage
}

// Error is a JSON-RPC error object.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

// ParseLine parses one line. The returned id (possibly JSON null) is the
// one to answer an error with.
func ParseLine(line []byte) (Request, *Error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil || raw == nil {
		trimmed := bytes.TrimSpace(line)
		switch {
		case !json.Valid(trimmed):
			return Request{}, &Error{Code: CodeParseError, Message: "Parse error: each line must be one JSON object."}
		case len(trimmed) > 0 && trimmed[0] == '[':
			return Request{}, &Error{Code: CodeInvalidRequest, Message: "Batches are not supported: send one request per line."}
		default:
			return Request{}, &Error{Code: CodeInvalidRequest, Message: "Invalid request: each line must be one JSON object."}
		}
	}
	req := Request{ID: raw["id"], Params: raw["params"]}
	if id := bytes.TrimSpace(req.ID); len(id) > 0 && id[0] != '"' && (id[0] < '0' || id[0] > '9') && id[0] != '-' && !bytes.Equal(id, []byte("null")) {
		return Request{}, &Error{Code: CodeInvalidRequest, Message: "id must be a string, a number or null."}
	}
	var version string
	if json.Unmarshal(raw["jsonrpc"], &version) != nil || version != "2.0" {
		return req, &Error{Code: CodeInvalidRequest, Message: `"jsonrpc" must be "2.0".`}
	}
	if json.Unmarshal(raw["method"], &req.Method) != nil || req.Method == "" {
		return req, &Error{Code: CodeInvalidRequest, Message: `"method" must be a non-empty string.`}
	}
	if p := bytes.TrimSpace(req.Params); len(p) > 0 && p[0] != '{' && p[0] != '[' && !bytes.Equal(p, []byte("null")) {
		return req, &Error{Code: CodeInvalidRequest, Message: `"params" must be an object or an array.`}
	}
	return req, nil
}

// Server answers requests for a Daemon.
type Server struct {
	d   *daemon.Daemon
	log *slog.Logger

	wmu sync.Mutex
	out *bufio.Writer

	cmu      sync.Mutex
	inflight map[string]context.CancelFunc
	wg       sync.WaitGroup
}

// NewServer returns a Server writing to out.
func NewServer(d *daemon.Daemon, out io.Writer, log *slog.Logger) *Server {
	s := &Server{d: d, log: log, out: bufio.NewWriter(out), inflight: map[string]context.CancelFunc{}}
	d.OnNotify(func(n daemon.Notification) { s.Notify(n.Method, n.Params) })
	return s
}

// Notify writes a notification.
func (s *Server) Notify(method string, params any) {
	s.write(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
}

func (s *Server) write(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode a JSON-RPC message", "err", err)
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, _ = s.out.Write(append(b, '\n'))
	_ = s.out.Flush()
}

func (s *Server) reply(id json.RawMessage, result any, e *Error) {
	if id == nil {
		return // a notification gets no answer, not even an error
	}
	msg := map[string]any{"jsonrpc": "2.0", "id": id}
	if e != nil {
		msg["error"] = e
	} else {
		msg["result"] = result
	}
	s.write(msg)
}

// Serve reads requests from in until it ends (the parent closed our stdin:
// time to go) or ctx is done. Requests still running are then cancelled
// and waited for, at most ShutdownWait. flows bounds the sign-ins started
// here (they outlive the request that started them only as long as flows
// lives).
func (s *Server) Serve(ctx context.Context, in io.Reader) error {
	ctx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		br := bufio.NewReaderSize(in, 64<<10)
		for {
			line, tooLong, err := readLine(br)
			if tooLong {
				// Answer and go on: one bad line does not end the channel.
				s.reply(json.RawMessage("null"), nil, &Error{Code: CodeParseError, Message: fmt.Sprintf("Parse error: line over %d bytes.", MaxLineBytes)})
			} else if len(line) > 0 {
				select {
				case lines <- line:
				case <-ctx.Done():
					return
				}
			}
			if err != nil {
				readErr <- err
				close(lines)
				return
			}
		}
	}()
	defer func() {
		cancelAll() // every running call, with or without an id
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(ShutdownWait):
			s.log.Warn("calls still running at shutdown")
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				if err := <-readErr; !errors.Is(err, io.EOF) {
					return err
				}
				return nil
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			req, perr := ParseLine(line)
			if perr != nil {
				id := req.ID
				if id == nil {
					id = json.RawMessage("null")
				}
				s.reply(id, nil, perr)
				continue
			}
			s.dispatch(ctx, req)
		}
	}
}

// ShutdownWait bounds the wait for running calls when the channel closes.
const ShutdownWait = time.Second

// readLine reads one line of at most MaxLineBytes; a longer one is read to
// its end and thrown away (tooLong).
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		part, err := br.ReadSlice('\n')
		if len(buf)+len(part) > MaxLineBytes {
			tooLong = true
			buf = nil
		} else if !tooLong {
			buf = append(buf, part...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), tooLong, err
	}
}

func (s *Server) dispatch(ctx context.Context, req Request) {
	if req.Method == "$/cancelRequest" {
		var p struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(req.Params, &p) == nil {
			s.cmu.Lock()
			if cancel, ok := s.inflight[string(p.ID)]; ok {
				cancel()
			}
			s.cmu.Unlock()
		}
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	key := string(req.ID)
	if req.ID != nil {
		s.cmu.Lock()
		_, dup := s.inflight[key]
		if !dup {
			s.inflight[key] = cancel
		}
		s.cmu.Unlock()
		if dup {
			cancel()
			s.reply(req.ID, nil, &Error{Code: CodeInvalidRequest, Message: "A request with this id is still running."})
			return
		}
	}
	s.wg.Go(func() {
		defer func() {
			cancel()
			if req.ID != nil {
				s.cmu.Lock()
				delete(s.inflight, key)
				s.cmu.Unlock()
			}
		}()
		result, e := s.call(rctx, req)
		s.reply(req.ID, result, e)
	})
}

func (s *Server) call(ctx context.Context, req Request) (any, *Error) {
	switch req.Method {
	case "status":
		return s.result(s.d.Status(ctx))
	case "login":
		var p struct {
			Redirect string `json:"redirect"`
		}
		if err := decodeParams(req.Params, &p); err != nil || (p.Redirect != "" && p.Redirect != "app" && p.Redirect != "loopback") {
			return nil, &Error{Code: CodeInvalidParams, Message: `params must be {} or {"redirect":"app"|"loopback"}.`}
		}
		return s.result(s.d.Login(ctx, daemon.LoginOptions{App: p.Redirect == "app"}))
	case "completeLogin":
		var p struct {
			URL string `json:"url"`
		}
		if err := decodeParams(req.Params, &p); err != nil || p.URL == "" {
			return nil, &Error{Code: CodeInvalidParams, Message: `params must be {"url": the callback URL the app received}.`}
		}
		return s.result(s.d.CompleteLogin(ctx, p.URL))
	case "logout":
		return s.result(s.d.Logout(ctx))
	case "deleteAccount":
		return s.result(s.d.DeleteAccount(ctx))
	case "request":
		return s.request(ctx, req.Params)
	default:
		return nil, &Error{Code: CodeMethodNotFound, Message: fmt.Sprintf("Method %q not found (methods: status, login, completeLogin, logout, deleteAccount, request).", req.Method)}
	}
}

func (s *Server) result(v any, err error) (any, *Error) {
	if err == nil {
		return v, nil
	}
	return nil, s.appError(err)
}

func (s *Server) appError(err error) *Error {
	code, msg := wire.ErrorCode(err), "Internal error."
	switch we, ok := errors.AsType[*wire.Error](err); {
	case ok:
		msg = we.Message
	case errors.Is(err, context.Canceled):
		code, msg = wire.CodeCancelled, "The request was cancelled."
	default:
		// Its text stays in the log, never in the answer.
		s.log.Error("internal error", "err", err)
	}
	return &Error{Code: CodeApplication, Message: msg, Data: map[string]string{"code": code}}
}

// decodeParams reads params (absent or null: none) into v, refusing
// unknown fields.
func decodeParams(raw json.RawMessage, v any) error {
	if b := bytes.TrimSpace(raw); len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// requestParams are the params of `request`.
type requestParams struct {
	Method  string            `json:"method"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

// requestResult is the result of `request`: headers by lower-case name,
// body parsed when the gateway answered JSON, else text.
type requestResult struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    any               `json:"body"`
}

func (s *Server) request(ctx context.Context, raw json.RawMessage) (any, *Error) {
	var p requestParams
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, &Error{Code: CodeInvalidParams, Message: "params must be {method, path, headers?, body?} (headers an object of strings)."}
	}
	if p.Method == "" {
		p.Method = http.MethodGet
	}
	var body []byte
	h := http.Header{}
	for k, v := range p.Headers {
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return nil, &Error{Code: CodeInvalidParams, Message: fmt.Sprintf("headers: %q is not a valid header name, or its value has a line break or control character.", login.Printable(k, 64))}
		}
		h.Set(k, v)
	}
	if b := bytes.TrimSpace(p.Body); len(b) > 0 && !bytes.Equal(b, []byte("null")) {
		var text string
		if json.Unmarshal(b, &text) == nil {
			body = []byte(text) // a string is sent as it is
		} else {
			body = b // any other JSON value is sent as JSON
			if h.Get("Content-Type") == "" {
				h.Set("Content-Type", "application/json")
			}
		}
	}
	// The path as the socket's server would receive it: the Transport
	// checks it and resolves it against the gateway.
	req, err := http.NewRequestWithContext(ctx, p.Method, p.Path, bytes.NewReader(body))
	if err != nil {
		return nil, &Error{Code: CodeInvalidParams, Message: "method and path must make an HTTP request (a method token, a path under /v1/)."}
	}
	req.Header = h
	resp, err := s.d.Transport().RoundTrip(req)
	if err != nil {
		we, ok := errors.AsType[*wire.Error](err)
		switch {
		case ok && we.Code == wire.CodeBadRequest:
			return nil, &Error{Code: CodeInvalidParams, Message: "path: " + we.Message}
		case ok:
			// The gateway's own shape, as the socket answers it.
			return requestResult{Status: wire.HTTPStatus(we.Code), Headers: map[string]string{"content-type": "application/json"},
				Body: wire.ErrorBody{Error: wire.ErrorDetail{Code: we.Code, Message: we.Message}}}, nil
		}
		return nil, s.appError(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBody+1))
	if err != nil {
		return nil, s.appError(err)
	}
	if len(b) > MaxResponseBody {
		return nil, &Error{Code: CodeApplication, Message: fmt.Sprintf("The gateway's answer is over %d bytes: use the socket (fetch) for large or streamed answers.", MaxResponseBody),
			Data: map[string]string{"code": wire.CodeResponseTooLarge}}
	}
	out := requestResult{Status: resp.StatusCode, Headers: map[string]string{}}
	for k := range resp.Header {
		out.Headers[strings.ToLower(k)] = resp.Header.Get(k)
	}
	out.Body = string(b)
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" || strings.HasSuffix(mt, "+json") {
		var v any
		if json.Unmarshal(b, &v) == nil {
			out.Body = v
		}
	}
	return out, nil
}
