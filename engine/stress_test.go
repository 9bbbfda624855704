package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStress hammers one breaker from many goroutines with random outcomes,
// cancellations and panics, on real time, and checks the invariants that
// must hold whatever the interleaving.
func TestStress(t *testing.T) {
	for _, spreading := range []bool{false, true} {
		name := func(s string) string {
			if spreading {
				return s + ", spreading" // every snapshot's successes tally spread as soon as it is seen
			}
			return s
		}
		t.Run(name("consecutive"), func(t *testing.T) { stress(t, Config{FailureThreshold: 4}, spreading) })
		// Successes and failures tallied per bucket, buckets ending while
		// calls run.
		t.Run(name("time window"), func(t *testing.T) {
			stress(t, Config{FailureRateThreshold: 0.3, WindowDuration: 2 * time.Millisecond, WindowBuckets: 4, MinimumCalls: 10}, spreading)
		})
		// Failures tallied with their place among the successes.
		t.Run(name("count window"), func(t *testing.T) {
			stress(t, Config{FailureRateThreshold: 0.45, WindowSize: 40, MinimumCalls: 10}, spreading)
		})
	}
}

func stress(t *testing.T, cfg Config, spreading bool) {
	const (
		workers = 48
		calls   = 400
		probes  = 3
	)
	type change struct{ from, to State }
	var callbacks []change // only the runner goroutine appends; read after Close
	cfg.RecoveryTimeout = 200 * time.Microsecond
	cfg.HalfOpenProbes = probes
	cfg.SuccessThreshold = 2
	cfg.SubscriberBuffer = 1 << 16
	cfg.OnStateChange = func(_ string, from, to State) { callbacks = append(callbacks, change{from, to}) }
	b, err := NewBreaker("stress", cfg)
	require.NoError(t, err)
	sub := b.Subscribe(t.Context())

	var (
		admitted, rejected, canceledBefore atomic.Uint64
		probesNow, probesMax               atomic.Int64
	)
	legal := map[change]bool{
		{Closed, Open}: true, {Open, HalfOpen}: true, {HalfOpen, Open}: true, {HalfOpen, Closed}: true,
		{Open, Closed}: true, // Reset
	}

	stop := func() {}
	if spreading {
		stop = meanwhile(func() { spread(b); runtime.Gosched() })
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range calls {
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(20) == 0 {
					cancel()
				}
				if w == 0 && rng.IntN(50) == 0 {
					b.Trip()
				}
				if w == 1 && rng.IntN(50) == 0 {
					b.Reset()
				}
				if ctx.Err() != nil {
					// A rejection is decided before ctx is looked at.
					err := b.Do(ctx, func(context.Context) error { panic("ran") })
					if errors.Is(err, ErrOpen) {
						rejected.Add(1)
					} else {
						assert.ErrorIs(t, err, context.Canceled)
						canceledBefore.Add(1)
					}
					cancel()
					continue
				}
				tk, err := b.Admit(ctx)
				if err != nil {
					assert.ErrorIs(t, err, ErrOpen)
					rejected.Add(1)
					cancel()
					continue
				}
				admitted.Add(1)
				if tk.permit.Probe != 0 {
					n := probesNow.Add(1)
					for m := probesMax.Load(); n > m && !probesMax.CompareAndSwap(m, n); m = probesMax.Load() {
					}
				}
				roll := rng.IntN(100)
				outcome := func() (err error) {
					if tk.permit.Probe != 0 {
						defer probesNow.Add(-1) // before the report frees the slot
					}
					defer func() {
						if recover() != nil {
							err = errPanicked
						}
					}()
					switch {
					case roll < 3:
						panic("boom")
					case roll < 8:
						cancel()
						return ctx.Err()
					case roll < 40:
						return errBoom
					}
					return nil
				}()
				tk.Report(outcome)
				cancel()
			}
		})
	}
	wg.Wait()
	stop()
	c := b.Counts()
	require.NoError(t, b.Close())

	assert.LessOrEqual(t, probesMax.Load(), int64(probes), "never more probes at once than allowed")
	assert.Equal(t, admitted.Load(), c.Successes+c.Failures+c.Ignored+c.Stale-c.Reclaimed, "every admitted call is accounted once")
	assert.Equal(t, rejected.Load(), c.Rejected)
	assert.Equal(t, uint64(workers*calls), admitted.Load()+rejected.Load()+canceledBefore.Load())
	assert.Positive(t, c.Trips, "the run must exercise the open state")

	var seen []change
	var last uint64
	for tr := range sub {
		require.Zero(t, tr.Missed)
		require.Equal(t, last+1, tr.Seq, "no gaps, no reordering")
		last = tr.Seq
		ch := change{tr.From, tr.To}
		require.True(t, legal[ch], "illegal edge %v", ch)
		if len(seen) > 0 {
			require.Equal(t, seen[len(seen)-1].to, tr.From)
		}
		seen = append(seen, ch)
	}
	assert.Equal(t, seen, callbacks, "OnStateChange saw the same transitions, in the same order")
	assert.Greater(t, len(seen), 3)
	t.Logf("%d transitions, counts %+v", len(seen), c)
}
