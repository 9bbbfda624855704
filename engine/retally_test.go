package engine

// A quiet outcome whose tally a seal retired goes on the current snapshot
// once the owner has published one of the same generation (see
// Breaker.report); these pin what must not change with that.

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A ticket's success refused by a spread snapshot sealed by a failure that
// left the generation as it was goes on the current snapshot; its
// goroutine's order F1, S, F2 holds: no run of two failures.
func TestRetallyKeepsOneGoroutinesRun(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	tk, err := b.Admit(context.Background())
	require.NoError(t, err)
	s0 := b.snap.Load()
	spread(b)
	require.ErrorIs(t, b.Call(fail), errBoom) // F1: a message on the spread tally, seals s0
	cur := b.snap.Load()
	require.NotSame(t, s0, cur)
	require.Equal(t, s0.gen, cur.gen)
	tk.Report(nil) // S: retried on cur
	assert.Equal(t, int64(1), cur.successTally())
	assert.Zero(t, cur.folded, "S went on cur, not to the owner")
	require.ErrorIs(t, b.Call(fail), errBoom) // F2
	c := b.Counts()
	assert.Equal(t, Closed, b.State(), "F1, S, F2 is no run of two")
	assert.Equal(t, uint64(1), c.ConsecutiveFailures)
	assert.Equal(t, uint64(1), c.Successes)
	assert.Zero(t, c.Stale)
}

// Reset of a closed circuit changes the generation: a ticket admitted
// before is stale, not tallied on the new snapshot.
func TestRetallyAfterResetIsStale(t *testing.T) {
	for name, o := range map[string]Outcome{"success": Success, "ignored": Ignored} {
		t.Run(name, func(t *testing.T) {
			b := newTestBreaker(t, Config{FailureThreshold: 2})
			tk, err := b.Admit(context.Background())
			require.NoError(t, err)
			b.Reset()
			tk.ReportAs(o, nil)
			c := b.Counts()
			assert.Equal(t, uint64(1), c.Stale)
			assert.Zero(t, c.Successes+c.Ignored)
		})
	}
}

// ForceOpen with a past time seals and changes nothing: the outcome counts,
// once, on the next snapshot; Isolate and Trip make it stale.
func TestRetallyAroundControls(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	tk, err := b.Admit(context.Background())
	require.NoError(t, err)
	s0 := b.snap.Load()
	b.ForceOpen(time.Now().Add(-time.Second), "past")
	require.NotSame(t, s0, b.snap.Load())
	tk.ReportAs(Ignored, nil)
	c := b.Counts()
	assert.Equal(t, uint64(1), c.Ignored)
	assert.Zero(t, c.Stale)

	tk, err = b.Admit(context.Background())
	require.NoError(t, err)
	b.Isolate()
	tk.Report(nil)
	c = b.Counts()
	assert.Equal(t, uint64(1), c.Stale)
	assert.Zero(t, c.Successes)
}

// After Close the stop snapshot takes nothing.
func TestRetallyAfterClose(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	tk, err := b.Admit(context.Background())
	require.NoError(t, err)
	require.NoError(t, b.Close())
	tk.Report(nil)
	assert.Zero(t, b.snap.Load().successTally())
	assert.Zero(t, b.Counts().Successes)
}

// Many goroutines, each with its own lean-consecutive model run through a
// shared breaker whose snapshots are spread and sealed (by failures that
// do not trip) all the time; tickets cross snapshots. Counts must add up,
// nothing stale.
func TestRetallyStress(t *testing.T) {
	for name, cfg := range map[string]Config{
		"lean":        {FailureThreshold: 1 << 20},
		"ordered":     {FailureRateThreshold: 0.99, WindowSize: 64, MinimumCalls: 64},
		"should-trip": {ShouldTrip: func(Counts) bool { return false }},
		"slow":        {FailureThreshold: 1 << 20, SlowCallThreshold: time.Hour, SlowCallRateThreshold: 1, MinimumCalls: 1},
		"lean-rate":   {FailureRateThreshold: 0.99, WindowDuration: 1 << 40, WindowBuckets: 4, MinimumCalls: 10},
	} {
		t.Run(name, func(t *testing.T) {
			b := newTestBreaker(t, cfg)
			var succ, fails, ign atomic.Uint64
			done := make(chan struct{})
			var aux sync.WaitGroup
			aux.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
						spread(b)
						b.ForceOpen(time.Now().Add(-time.Second), "noop seal")
					}
				}
			})
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 9))
					var held []*Ticket
					for range 5000 {
						switch r := rng.IntN(100); {
						case r < 3:
							_ = b.Call(fail)
							fails.Add(1)
						case r < 30:
							tk, err := b.Admit(context.Background())
							if assert.NoError(t, err) {
								held = append(held, tk)
							}
						case r < 50 && len(held) > 0:
							i := rng.IntN(len(held))
							tk := held[i]
							held = append(held[:i], held[i+1:]...)
							if rng.IntN(4) == 0 {
								tk.ReportAs(Ignored, nil)
								ign.Add(1)
							} else {
								tk.Report(nil)
								succ.Add(1)
							}
							s, ig := succ.Load(), ign.Load()
							if c := b.Counts(); c.Successes < s || c.Ignored < ig {
								t.Errorf("Counts %d/%d behind outcomes returned before it %d/%d", c.Successes, c.Ignored, s, ig)
								return
							}
						default:
							_ = b.Call(succeed)
							succ.Add(1)
						}
					}
					for _, tk := range held {
						tk.Report(nil)
						succ.Add(1)
					}
				})
			}
			wg.Wait()
			close(done)
			aux.Wait()
			c := b.Counts()
			assert.Equal(t, succ.Load(), c.Successes)
			assert.Equal(t, fails.Load(), c.Failures)
			assert.Equal(t, ign.Load(), c.Ignored)
			assert.Zero(t, c.Stale)
			assert.Equal(t, Closed, b.State())
		})
	}
}
