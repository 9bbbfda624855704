package engine

import (
	"sync"
	"testing"

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
// else is adding to the counter while it looks. Nor does a tally that has
// taken a failure, even with company.
func TestSpreadOnlyWithCompanyAndNoFailure(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 5})
	for range 2 * spreadAfter {
		require.NoError(t, b.Call(succeed))
	}
	assert.Nil(t, b.snap.Load().wide.Load(), "a lone caller")

	require.ErrorIs(t, b.Call(fail), errBoom)
	s := b.snap.Load()
	require.Positive(t, s.failures.Load())
	s.successes.Store(spreadAfter)
	s.spreadSuccesses() // nobody adds meanwhile either; the failure alone must stop it
	assert.Nil(t, s.wide.Load())
}

// With another goroutine adding to the counter while it looks, a success
// spreads the tally, once, but not before spreadAfter successes.
func TestSpreadWithCompany(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 5})
	s := b.snap.Load()
	company := func(step func()) (stop func()) {
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

	s.successes.Store(spreadAfter - busy)
	stop := company(func() { s.successes.Add(1); s.successes.Add(-1) }) // moving, below spreadAfter
	for range 100_000 {
		s.spreadSuccesses()
	}
	stop()
	require.Nil(t, s.wide.Load(), "too few successes yet")

	s.successes.Store(spreadAfter)
	stop = company(func() { s.successes.Add(busy) })
	for i := 0; i < 1_000_000 && s.wide.Load() == nil; i++ {
		s.spreadSuccesses()
	}
	stop()
	require.NotNil(t, s.wide.Load(), "the counter moved while the caller looked")
	assert.NotZero(t, s.flags.Load()&spreadFlag)
	w := s.wide.Load()
	s.spreadSuccesses()
	assert.Same(t, w, s.wide.Load(), "spread once")
}
