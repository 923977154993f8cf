package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// UsageReader reads a user's metered usage from the ledger.
//
// Errors: *wire.Error unavailable.
type UsageReader interface {
	Usage(ctx context.Context, clerkUserID string, from, to time.Time) ([]gateway.DayUsage, error)
}

// Usage ranges of GET /v1/usage.
const (
	DefaultUsageDays = 30
	MaxUsageDays     = 366
)

// usageFigures is the JSON of a day, a model or the total.
type usageFigures struct {
	Requests          int64        `json:"requests"`
	InputTokens       int64        `json:"input_tokens"`
	CachedInputTokens int64        `json:"cached_input_tokens"`
	OutputTokens      int64        `json:"output_tokens"`
	USD               quota.Micros `json:"usd"`
}

func figures(f gateway.UsageFigures) usageFigures {
	return usageFigures{f.Requests, f.InputTokens, f.CachedInputTokens, f.OutputTokens, quota.Micros(f.CostMicros)}
}

type usageModel struct {
	Model string `json:"model"`
	usageFigures
}

type usageDay struct {
	Date string `json:"date"`
	usageFigures
	Models []usageModel `json:"models"`
}

type usageReport struct {
	From  string       `json:"from"`
	To    string       `json:"to"`
	Days  []usageDay   `json:"days"`
	Total usageFigures `json:"total"`
}

// usage answers GET /v1/usage: the caller's usage per UTC day and model
// between from and to (inclusive dates; default the last 30 days).
func (s *Server) usage(w http.ResponseWriter, r *http.Request) {
	if s.usageReader == nil {
		s.writeError(w, r, wire.Errorf(wire.CodeUnavailable, "The usage ledger is not configured on this gateway."))
		return
	}
	from, to, err := usageRange(r.URL.Query().Get("from"), r.URL.Query().Get("to"), s.now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	days, err := s.usageReader.Usage(r.Context(), userFrom(r.Context()).ClerkUserID, from, to)
	if err != nil {
		s.metrics.DependencyError("postgres")
		s.writeError(w, r, err)
		return
	}
	rep := usageReport{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Days: []usageDay{}}
	var total gateway.UsageFigures
	for _, d := range days {
		var sum gateway.UsageFigures
		day := usageDay{Date: d.Date.Format(time.DateOnly), Models: []usageModel{}}
		for _, m := range d.Models {
			sum.Add(m.UsageFigures)
			day.Models = append(day.Models, usageModel{m.Model, figures(m.UsageFigures)})
		}
		total.Add(sum)
		day.usageFigures = figures(sum)
		rep.Days = append(rep.Days, day)
	}
	rep.Total = figures(total)
	writeJSON(w, http.StatusOK, rep)
}

// usageRange reads from and to (YYYY-MM-DD, UTC, inclusive). A missing to
// is today, a missing from 30 days before to; a range backwards or over 366
// days, or a malformed date, is a bad request.
func usageRange(fromS, toS string, now time.Time) (time.Time, time.Time, error) {
	parse := func(name, v string, def time.Time) (time.Time, error) {
		if v == "" {
			return def, nil
		}
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			return time.Time{}, wire.Errorf(wire.CodeBadRequest, "%q must be a date as YYYY-MM-DD (UTC).", name)
		}
		return t, nil
	}
	now = now.UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	to, err := parse("to", toS, today)
	if err != nil {
		return to, to, err
	}
	from, err := parse("from", fromS, to.AddDate(0, 0, -(DefaultUsageDays-1)))
	if err != nil {
		return from, to, err
	}
	switch days := int(to.Sub(from).Hours()/24) + 1; {
	case days < 1:
		return from, to, wire.Errorf(wire.CodeBadRequest, "\"from\" must not be after \"to\".")
	case days > MaxUsageDays:
		return from, to, wire.Errorf(wire.CodeBadRequest, "The range is %d days; at most %d at a time.", days, MaxUsageDays)
	}
	return from, to, nil
}
