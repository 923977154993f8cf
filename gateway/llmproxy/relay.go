package llmproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/shared/wire"
)

// relayJSON relays a non-streamed answer once it is complete, settling
// first. A body cut short, silent for IdleTimeout or over 32 MiB becomes a
// 502 (nothing was written yet); without usage, the reservation is charged.
func relayJSON(w http.ResponseWriter, r *http.Request, resp *http.Response, t *tab) outcome {
	const maxBody = 32 << 20
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil || len(b) > maxBody {
		out := cutOutcome(r, resp.Body)
		out.err = errClientGone
		if out.name != "client_gone" {
			if err == nil {
				err = errors.New("answer over 32 MiB")
			}
			out.err = wire.Wrap(wire.CodeUpstreamError, "The AI provider's answer broke off.", err)
		}
		return out
	}
	out := outcome{name: "complete", usage: t.c.api.usage(b)}
	t.settle(out)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(b)
	return out
}

// cutOutcome says why an upstream body ended early — the client left, the
// upstream went silent, or it broke off — and what that costs: the
// reservation, unless the upstream sent nothing of its body at all, which
// is an upstream failure like a timeout before any byte (all given back).
func cutOutcome(r *http.Request, body io.Reader) outcome {
	ir, _ := body.(*idleReader)
	out := outcome{name: "upstream_cut"}
	switch {
	case r.Context().Err() != nil:
		return outcome{name: "client_gone"}
	case ir != nil && ir.fired.Load():
		out.name = "idle_timeout"
	}
	if ir != nil && ir.read.Load() == 0 {
		out.charge = chargeNothing
	}
	return out
}

// idleReader cancels the upstream request when a Read has waited longer
// than d for data: a body that stalls after its headers is bounded too.
// Close stops the timer; until then it holds the request's context. The
// time its Reads wait is the request's upstream wait (ov).
type idleReader struct {
	io.ReadCloser
	ov    *metrics.Overhead
	d     time.Duration
	timer *time.Timer
	fired atomic.Bool
	read  atomic.Int64 // bytes read
	buf   []byte       // peeked, not yet read
}

func newIdleReader(rc io.ReadCloser, d time.Duration, cancel context.CancelFunc, ov *metrics.Overhead) *idleReader {
	r := &idleReader{ReadCloser: rc, d: d, ov: ov}
	r.timer = time.AfterFunc(d, func() {
		r.fired.Store(true)
		cancel()
	})
	return r
}

// peek reads the body's first bytes (bounded by the idle timeout like any
// read) and keeps them for the next Read: whether the upstream sends
// anything at all is known before the client is sent anything.
func (r *idleReader) peek() ([]byte, error) {
	if len(r.buf) > 0 {
		return r.buf, nil
	}
	b := make([]byte, 4096)
	n, err := r.Read(b)
	r.buf = b[:n]
	if n > 0 {
		return r.buf, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return nil, err
}

func (r *idleReader) Read(p []byte) (int, error) {
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	r.timer.Reset(r.d)
	start := time.Now()
	n, err := r.ReadCloser.Read(p)
	r.ov.Waited(time.Since(start))
	r.timer.Reset(r.d)
	r.read.Add(int64(n))
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	return r.ReadCloser.Close()
}

// relayStream copies the upstream's server-sent events to the client one
// event at a time, flushing after each, and reads usage from the events as
// they pass (the call's api says where). It stops after the api's last
// event, or when the upstream ends, goes silent for IdleTimeout (the idle
// reader cancels it), or the client leaves (whose request context then
// cancels the upstream). Events the api hides (chat's usage-only chunk the
// client did not ask for) are dropped.
//
// The stream is settled just before its last event is written (chat's
// [DONE], the Responses API's response.completed): usage has arrived by
// then.
func (p *Proxy) relayStream(w http.ResponseWriter, r *http.Request, resp *http.Response, t *tab) outcome {
	log := t.log
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()

	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			line, err := br.ReadBytes('\n')
			if len(line) > 0 {
				select {
				case lines <- line:
				case <-r.Context().Done():
					readErr <- r.Context().Err()
					return
				}
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	defer func() {
		resp.Body.Close() // unblocks the reader if we stop first
		for range lines {
		}
	}()

	out := outcome{}
	ended, skipEvent := "", false // ended: the outcome of the last event, once seen
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				err := <-readErr
				if ended != "" {
					out.name = ended
					return out
				}
				cut := cutOutcome(r, resp.Body)
				out.name, out.charge = cut.name, cut.charge
				if out.name == "upstream_cut" && !errors.Is(err, io.EOF) {
					log.Warn("upstream stream failed", "err", err)
				}
				return out
			}
			if data, ok := bytes.CutPrefix(bytes.TrimRight(line, "\r\n"), []byte("data:")); ok {
				u, end, hide, err := t.c.api.event(bytes.TrimSpace(data))
				if err != nil {
					log.Warn("upstream sent a malformed stream event", "bytes", len(data))
				}
				if u != nil {
					out.usage = u
				}
				skipEvent = hide
				if end.name != "" {
					ended = end.name
					if end.charge == chargeUsage {
						end.usage = out.usage
					}
					t.settle(end)
				}
			}
			blank := len(bytes.TrimSpace(line)) == 0
			_ = rc.SetWriteDeadline(time.Now().Add(p.o.IdleTimeout)) // a client that stops reading is let go
			if skipEvent {
				skipEvent = !blank // drop through the event's closing blank line
				continue
			}
			if _, err := w.Write(line); err != nil {
				out.name = "client_gone"
				return out
			}
			// An event ends with a blank line: flush whole events.
			if blank {
				if err := rc.Flush(); err != nil {
					out.name = "client_gone"
					return out
				}
				if ended != "" {
					// The last event ends the stream, whether or not the
					// upstream closes its side.
					out.name = ended
					return out
				}
			}
		case <-r.Context().Done():
			out.name = "client_gone"
			return out
		}
	}
}
