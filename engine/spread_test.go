package engine

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// spread spreads the current snapshot's successes tally, as the callers of
// a busy breaker would, whatever it holds: a tally may spread at any point
// of a snapshot's life, and everything must count the same.
func spread(b *Breaker) {
	s := b.snap.Load()
	if s.state == Closed && s.wide.CompareAndSwap(nil, new(stripes)) {
		s.flags.Or(spreadFlag)
	}
}

// A spread tally counts like one counter; the first failure on it goes as
// a message, and the owner starts the next snapshot with one counter.
func TestSpreadSuccessesCountLikeOne(t *testing.T) {
	for name, cfg := range map[string]Config{
		"consecutive":  {FailureThreshold: 5},
		"count window": {FailureRateThreshold: 0.5, WindowSize: 20, MinimumCalls: 20},
		"should-trip":  {ShouldTrip: func(c Counts) bool { return c.ConsecutiveFailures >= 5 }},
	} {
		t.Run(name, func(t *testing.T) {
			b := newTestBreaker(t, cfg)
			spread(b)
			s := b.snap.Load()
			require.NotNil(t, s.wide.Load())
			for range 10 {
				require.NoError(t, b.Call(succeed))
			}
			c := b.Counts()
			assert.Equal(t, uint64(10), c.Successes)
			assert.Equal(t, uint64(10), c.ConsecutiveSuccesses)
			require.ErrorIs(t, b.Call(fail), errBoom)
			assert.NotSame(t, s, b.snap.Load(), "the failure retired the spread tally")
			assert.Nil(t, b.snap.Load().wide.Load(), "the next snapshot starts with one counter")
			assert.Negative(t, s.successTally(), "a success late for the spread tally finds it retired")
			require.NoError(t, b.Call(succeed))
			c = b.Counts()
			assert.Equal(t, uint64(11), c.Successes)
			assert.Equal(t, uint64(1), c.Failures)
			assert.Equal(t, uint64(1), c.ConsecutiveSuccesses)
			assert.Equal(t, Closed, b.State())
		})
	}
}

// One goroutine's successes, however many, never spread the tally: nobody
// else is adding to the counter while it looks.
func TestSpreadNotForALoneCaller(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 5})
	for range 2 * spreadAfter {
		require.NoError(t, b.Call(succeed))
	}
	assert.Nil(t, b.snap.Load().wide.Load())
}

// With another goroutine adding to the counter while it looks, a success
// spreads the tally, once, but only spreadAfter successes after the latest
// failure tallied on the snapshot, or after its start.
func TestSpreadWithCompany(t *testing.T) {
	// Company means another core: with one P the watcher would have to be
	// preempted within its 64 loads.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(2, runtime.GOMAXPROCS(0))))
	for name, cfg := range map[string]Config{
		"lean":    {FailureThreshold: 5},
		"ordered": {FailureRateThreshold: 0.5, WindowSize: 100, MinimumCalls: 10},
	} {
		t.Run(name, func(t *testing.T) {
			b := newTestBreaker(t, cfg)
			for range 10 {
				require.NoError(t, b.Call(succeed))
			}
			require.ErrorIs(t, b.Call(fail), errBoom) // a count window takes failures on the spot only with one in it
			for range 10 {
				require.NoError(t, b.Call(succeed))
			}
			s := b.snap.Load()
			saw := s.successTally()
			require.Positive(t, saw)
			require.ErrorIs(t, b.Call(fail), errBoom)
			require.Same(t, s, b.snap.Load(), "tallied on the spot: the snapshot stays")
			require.Equal(t, saw, s.runS.Load(), "the failure's sighting")
			// Busy, but short of spreadAfter successes since the failure.
			low := saw + spreadAfter - busy
			s.successes.Store(low)
			stop := meanwhile(func() {
				if s.successes.Add(1) >= saw+spreadAfter-1 {
					s.successes.Store(low)
				}
			})
			for range 100_000 {
				s.spreadSuccesses()
			}
			stop()
			require.Nil(t, s.wide.Load(), "too few successes since the failure")

			s.successes.Store(saw + spreadAfter)
			stop = meanwhile(func() { s.successes.Add(busy) })
			for i := 0; i < 1_000_000 && s.wide.Load() == nil; i++ {
				s.spreadSuccesses()
			}
			stop()
			require.NotNil(t, s.wide.Load(), "the counter moved while the caller looked")
			assert.NotZero(t, s.flags.Load()&spreadFlag)
			w := s.wide.Load()
			s.spreadSuccesses()
			assert.Same(t, w, s.wide.Load(), "spread once")
		})
	}
}

// spreadConfigs are breakers that never trip under the workloads below
// (failures are rare), one per way of tallying failures.
var spreadConfigs = map[string]Config{
	"lean":        {FailureThreshold: 1 << 20},
	"ordered":     {FailureRateThreshold: 0.99, WindowSize: 64, MinimumCalls: 64},
	"should-trip": {ShouldTrip: func(Counts) bool { return false }},
	"slow":        {FailureThreshold: 1 << 20, SlowCallThreshold: time.Hour, SlowCallRateThreshold: 1, MinimumCalls: 1},
	"lean-rate":   {FailureRateThreshold: 0.99, WindowDuration: 1 << 40, WindowBuckets: 4, MinimumCalls: 10},
}

// meanwhile runs step over and over on a goroutine of its own until stop
// is called.
func meanwhile(step func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
				step()
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// Every success, failure and ignored call counts exactly once, nothing is
// stale, and no Counts misses an outcome returned before it, while tallies
// spread at any moment and failures seal spread snapshots.
func TestSpreadCountsEveryOutcomeOnce(t *testing.T) {
	for name, cfg := range spreadConfigs {
		t.Run(name, func(t *testing.T) { conservation(t, cfg, false) })
	}
}

// conservation runs 8 goroutines of calls, and of tickets held across
// other calls, through a breaker whose tallies another goroutine keeps
// spreading, and with seal, sealing with a ForceOpen that changes nothing.
// No call may trip it.
func conservation(t *testing.T, cfg Config, seal bool) {
	b := newTestBreaker(t, cfg)
	var succ, fails, ign atomic.Uint64
	stop := meanwhile(func() {
		spread(b)
		if seal {
			b.ForceOpen(time.Now().Add(-time.Second), "noop seal")
		}
		runtime.Gosched()
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
	stop()
	c := b.Counts()
	assert.Equal(t, succ.Load(), c.Successes)
	assert.Equal(t, fails.Load(), c.Failures)
	assert.Equal(t, ign.Load(), c.Ignored)
	assert.Zero(t, c.Stale)
	assert.Equal(t, Closed, b.State())
}

// One goroutine's runs are exact whatever the spreading: a model of
// consecutive counts against Counts after every op.
func TestSpreadRunsOfOneGoroutine(t *testing.T) {
	for name, cfg := range spreadConfigs {
		t.Run(name, func(t *testing.T) {
			b := newTestBreaker(t, cfg)
			rng := rand.New(rand.NewPCG(3, 4))
			var cs, cf, s, f uint64
			for i := range 3000 {
				switch rng.IntN(6) {
				case 0:
					require.ErrorIs(t, b.Call(fail), errBoom)
					f++
					cf++
					cs = 0
				case 1:
					spread(b)
				default:
					require.NoError(t, b.Call(succeed))
					s++
					cs++
					cf = 0
				}
				if rng.IntN(4) == 0 {
					c := b.Counts()
					require.Equal(t, s, c.Successes, "op %d", i)
					require.Equal(t, f, c.Failures, "op %d", i)
					require.Equal(t, cs, c.ConsecutiveSuccesses, "op %d", i)
					require.Equal(t, cf, c.ConsecutiveFailures, "op %d", i)
				}
			}
		})
	}
}

// 40cf6e9 (review): a failure on a spread tally seals the snapshot, and
// every call in flight under it found its tally retired and sent its
// success as a message it waited for, though the generation went on: a
// failure cost as many round trips to the owner as there were calls in
// flight. Once the owner has published, they tally on the current
// snapshot instead: the owner folds none of them.
func TestASealLeavesCallsInFlightTallying(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 1 << 20})
	const inFlight = 100
	tickets := make([]*Ticket, inFlight)
	for i := range tickets {
		var err error
		tickets[i], err = b.Admit(context.Background())
		require.NoError(t, err)
	}
	spread(b)
	require.ErrorIs(t, b.Call(fail), errBoom) // far from the threshold: the generation goes on
	cur := b.snap.Load()
	require.NotSame(t, tickets[0].snap, cur, "the failure sealed the spread snapshot")
	for _, tk := range tickets {
		tk.Report(nil)
	}
	// The owner last ran for the failure, whose answer this goroutine
	// received: had it handled the successes, it would have put them back
	// and counted them in folded.
	assert.Equal(t, int64(inFlight), cur.successTally())
	assert.Zero(t, cur.folded, "no success went to the owner")
	c := b.Counts()
	assert.Equal(t, uint64(inFlight), c.Successes)
	assert.Equal(t, uint64(1), c.Failures)
	assert.Zero(t, c.Stale)
}
