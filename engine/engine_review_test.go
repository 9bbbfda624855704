package engine

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// heldCtx is a live context whose first Err call waits until released:
// the caller is preempted between reading the snapshot and clearing its
// idle count, as any caller can be.
type heldCtx struct {
	context.Context
	once             sync.Once
	entered, release chan struct{}
}

func (c *heldCtx) Err() error {
	c.once.Do(func() { close(c.entered); <-c.release })
	return nil
}

// A call admitted while a new snapshot replaces the one it read keeps its
// breaker from being forgotten for a whole idle timeout.
//
// 38c58fa: the idle count lived on the snapshot, and a new snapshot copied
// it. A caller that read the old snapshot cleared the old one's count
// after the copy: the admission was lost, and the breaker was forgotten as
// if it had been idle, less than d after it admitted a call.
//
//	t=0    x admits and completes a call
//	t=30s, 60s  sweeps: idle 2 on snapshot s
//	t=65s  X loads s (closed, idle 2) and is preempted before clearing it
//	       a metrics scrape (Counts, new bucket) publishes s', copying idle 2
//	       X clears s's count (not s'), is admitted, succeeds
//	t=90s  sweep: s'.idle 3 > 2: x is forgotten, 25 s after X's call
func TestEngineReviewAdmissionAsTheSnapshotIsReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second}, WithIdleTimeout(time.Minute))
		b := e.Breaker("x")
		require.NoError(t, b.Call(succeed))
		time.Sleep(65 * time.Second)
		synctest.Wait()
		require.Equal(t, uint32(2), b.idle.Load(), "two sweeps without a call")

		ctx := &heldCtx{Context: context.Background(), entered: make(chan struct{}), release: make(chan struct{})}
		done := make(chan error, 1)
		go func() { done <- b.Do(ctx, func(context.Context) error { return nil }) }()
		<-ctx.entered
		_ = b.Counts() // a scrape, in a new bucket: a new snapshot
		close(ctx.release)
		require.NoError(t, <-done) // X was admitted at 65s

		time.Sleep(26 * time.Second) // the sweep at 90s
		synctest.Wait()
		got, ok := e.Lookup("x")
		assert.True(t, ok, "x admitted a call 25 s ago (d = 1 m): it must be kept")
		if ok {
			assert.Same(t, b, got)
		}
	})
}

// A probe is an admission too: a breaker that recovers through a probe
// call must not be forgotten sooner than d after that call.
//
// f72718c: only the closed fast path (Breaker.admit) cleared the count; a
// call admitted by a message (admitSlow: every half-open probe) did not,
// and the count the sweeps left while the circuit was closed survived the
// open period (sweeps skip open breakers but do not clear the count).
//
//	t=0      x is made; no call
//	t=30,60  sweeps: idle 1, 2
//	t=61     x is tripped (Trip, or fleet ForceOpen)
//	t=66     half-open; a probe call is admitted by a message and
//	         succeeds: closed, idle still 2
//	t=90     sweep: idle 3 > 2: x is forgotten, 24 s after its call (d = 1m)
func TestEngineReviewProbeAdmissionKeepsTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{FailureThreshold: 1, RecoveryTimeout: 5 * time.Second}, WithIdleTimeout(time.Minute))
		b := e.Breaker("x")
		time.Sleep(61 * time.Second)
		synctest.Wait()
		require.Equal(t, uint32(2), b.idle.Load(), "two sweeps without a call")
		b.Trip()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		require.Equal(t, HalfOpen, b.State())
		require.NoError(t, b.Call(succeed)) // the probe, at t=66
		require.Equal(t, Closed, b.State())

		time.Sleep(25 * time.Second) // the sweep at 90
		synctest.Wait()
		got, ok := e.Lookup("x")
		assert.True(t, ok, "x admitted a call 24 s ago (d = 1m): it must be kept (idle=%d)", b.idle.Load())
		if ok {
			assert.Same(t, b, got)
		}
	})
}
