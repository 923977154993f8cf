package main

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestOneShutdownDeadline: the steps of the exit share one deadline. A
// sign-in that does not end and a socket request that does not end cost
// ShutdownTimeout together, not each (the contract: exit within 2 s of
// stdin closing; two sequential timeouts were 3 s); steps that end at once
// cost nothing, and the steps after a stuck one are not waited for.
func TestOneShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		never := make(chan struct{})
		defer close(never)
		stuck := func(context.Context) { <-never }                  // ignores the deadline
		untilDeadline := func(ctx context.Context) { <-ctx.Done() } // as srv.Shutdown does
		for _, tc := range []struct {
			name  string
			steps []func(context.Context)
			want  time.Duration
		}{
			{"both end at once", []func(context.Context){func(context.Context) {}, func(context.Context) {}}, 0},
			{"a stuck sign-in, then a stream", []func(context.Context){stuck, untilDeadline}, ShutdownTimeout},
			{"a slow sign-in, then a stream", []func(context.Context){
				func(context.Context) { time.Sleep(time.Second) }, untilDeadline}, ShutdownTimeout},
		} {
			start := time.Now()
			stopWithin(ShutdownTimeout, tc.steps...)
			if got := time.Since(start); got != tc.want {
				t.Errorf("%s: the exit took %v, want %v", tc.name, got, tc.want)
			}
		}
		if ShutdownTimeout >= 2*time.Second {
			t.Errorf("ShutdownTimeout %v: the contract allows 2 s in all", ShutdownTimeout)
		}
	})
}
