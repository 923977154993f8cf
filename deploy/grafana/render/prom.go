package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Series is one time series of a range query's matrix.
type Series struct {
	Labels map[string]string
	Points []Point
}

// Point is a sample: T in unix seconds, V possibly NaN or ±Inf.
type Point struct {
	T, V float64
}

// PromClient runs queries against Prometheus's HTTP API.
type PromClient struct {
	Base string // e.g. http://127.0.0.1:9090 (a path prefix is kept)
	HTTP *http.Client
}

// QueryError is Prometheus refusing a query (bad PromQL, too many points,
// a timeout): the API answered with status "error".
type QueryError struct {
	HTTPStatus int
	Type       string
	Msg        string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("Prometheus rejected the query (%s, HTTP %d): %s", e.Type, e.HTTPStatus, e.Msg)
}

// UnreachableError is Prometheus not answering at all.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach Prometheus at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

type apiResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
	Warnings  []string        `json:"warnings"`
}

func (c *PromClient) get(ctx context.Context, path string, params url.Values) (*apiResponse, error) {
	u := strings.TrimRight(c.Base, "/") + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("the Prometheus URL %s is not valid", redacted(c.Base))
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ne net.Error
		var ue *url.Error
		if errors.As(err, &ne) || errors.As(err, &ue) {
			return nil, &UnreachableError{URL: redacted(c.Base), Err: err}
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, &UnreachableError{URL: redacted(c.Base), Err: err}
	}
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil || r.Status == "" {
		snippet := strings.TrimSpace(string(body))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "…"
		}
		return nil, fmt.Errorf("%s is not Prometheus's API (HTTP %d): %q", redacted(u), resp.StatusCode, snippet)
	}
	if r.Status != "success" {
		return nil, &QueryError{HTTPStatus: resp.StatusCode, Type: r.ErrorType, Msg: r.Error}
	}
	return &r, nil
}

// Ping asks Prometheus for its build information: a cheap check that the
// URL is a reachable Prometheus before any panel is queried.
func (c *PromClient) Ping(ctx context.Context) error {
	_, err := c.get(ctx, "/api/v1/status/buildinfo", nil)
	return err
}

// QueryRange runs a range query; warnings Prometheus attaches are returned
// beside the result.
func (c *PromClient) QueryRange(ctx context.Context, query string, start, end time.Time, step time.Duration) ([]Series, []string, error) {
	params := url.Values{
		"query": {query},
		"start": {unixString(start)},
		"end":   {unixString(end)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	r, err := c.get(ctx, "/api/v1/query_range", params)
	if err != nil {
		return nil, nil, err
	}
	series, err := decodeMatrix(r.Data)
	return series, r.Warnings, err
}

func unixString(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64)
}

// decodeMatrix reads {"resultType":"matrix","result":[{"metric":{…},
// "values":[[<unix>,"<value>"],…]}]}.
func decodeMatrix(data json.RawMessage) ([]Series, error) {
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string    `json:"metric"`
			Values [][2]json.RawMessage `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decoding Prometheus's answer: %w", err)
	}
	if d.ResultType != "matrix" {
		return nil, fmt.Errorf("the Prometheus answer to a range query is a %q, not a matrix", d.ResultType)
	}
	out := make([]Series, 0, len(d.Result))
	for _, r := range d.Result {
		s := Series{Labels: r.Metric, Points: make([]Point, 0, len(r.Values))}
		if s.Labels == nil {
			s.Labels = map[string]string{}
		}
		for _, v := range r.Values {
			var t float64
			var vs string
			if err := json.Unmarshal(v[0], &t); err != nil {
				return nil, fmt.Errorf("decoding a sample time %s: %w", v[0], err)
			}
			if err := json.Unmarshal(v[1], &vs); err != nil {
				return nil, fmt.Errorf("decoding a sample value %s: %w", v[1], err)
			}
			f, err := strconv.ParseFloat(vs, 64)
			if err != nil {
				return nil, fmt.Errorf("decoding a sample value %q: %w", vs, err)
			}
			s.Points = append(s.Points, Point{T: t, V: f})
		}
		out = append(out, s)
	}
	return out, nil
}

// redacted is a URL for messages: a password in it (the only way to give
// this tool credentials for a protected Prometheus) shown as "xxxxx".
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the URL given with -prometheus"
	}
	return u.Redacted()
}
