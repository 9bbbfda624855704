package engine

import (
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A breaker whose only policy is consecutive failures sends the failures
// that cannot open it without waiting. These tests pin what that must not
// change.

// The same goroutine's success overtaking its own earlier failure must not
// make the failures look consecutive.
func TestLeanFailureOvertakenBySuccess(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	require.True(t, b.lean())
	for i := range 3000 {
		require.ErrorIs(t, b.Call(fail), errBoom, "round %d", i)
		require.NoError(t, b.Call(succeed), "round %d: failure, success, failure, ... must never open", i)
	}
	c := b.Counts()
	assert.Equal(t, uint64(3000), c.Failures)
	assert.Equal(t, uint64(3000), c.Successes)
	assert.Equal(t, uint64(0), c.ConsecutiveFailures)
	assert.Equal(t, uint64(1), c.ConsecutiveSuccesses)
}

// Counts answers after every failure sent before it.
func TestLeanFailuresAreInCounts(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 10})
	for i := range 9 {
		require.ErrorIs(t, b.Call(fail), errBoom)
		c := b.Counts()
		require.Equal(t, uint64(i+1), c.ConsecutiveFailures)
		require.Equal(t, Closed, b.State())
	}
	require.ErrorIs(t, b.Call(fail), errBoom)
	require.Equal(t, Open, b.State(), "the tenth failure waits, and opens the circuit")
}

// The failure that reaches the threshold always waits, however the
// breaker's goroutine interleaves with the caller.
func TestLeanThresholdFailureWaits(t *testing.T) {
	for i := range 3000 {
		b, err := NewBreaker("x", Config{FailureThreshold: 3})
		require.NoError(t, err)
		for range 3 {
			require.ErrorIs(t, b.Call(fail), errBoom)
		}
		require.Equal(t, Open, b.State(), "round %d", i)
		require.NoError(t, b.Close())
	}
}

// Close applies the failures of calls that returned before it.
func TestLeanFailuresSurviveClose(t *testing.T) {
	for range 200 {
		b, err := NewBreaker("x", Config{FailureThreshold: 100})
		require.NoError(t, err)
		for range 5 {
			require.ErrorIs(t, b.Call(fail), errBoom)
		}
		require.NoError(t, b.Close())
		assert.Equal(t, uint64(5), b.Counts().Failures)
	}
}

// So does Engine.Close.
func TestLeanFailuresSurviveEngineClose(t *testing.T) {
	for range 200 {
		e, err := New(Config{FailureThreshold: 100})
		require.NoError(t, err)
		b := e.Breaker("x")
		for range 5 {
			require.ErrorIs(t, b.Call(fail), errBoom)
		}
		require.NoError(t, e.Close())
		assert.Equal(t, uint64(5), b.Counts().Failures)
	}
}

// Many goroutines failing at once open the circuit exactly once, each
// goroutine sees it open as soon as the failure that opened it returns,
// and every admitted call is counted, as a failure or as stale.
func TestLeanConcurrentFailures(t *testing.T) {
	const threshold, workers = 50, 8
	b := newTestBreaker(t, Config{FailureThreshold: threshold})
	sub := b.Subscribe(t.Context())
	var admitted [workers]uint64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				err := b.Call(fail)
				if errors.Is(err, ErrOpen) {
					return
				}
				admitted[w]++
				if b.State() == Open {
					// Our failure may be the one that opened it; then the
					// next call must be rejected.
					assert.ErrorIs(t, b.Call(fail), ErrOpen)
					return
				}
			}
		})
	}
	wg.Wait()
	var total uint64
	for _, n := range admitted {
		total += n
	}
	c := b.Counts()
	assert.Equal(t, total, c.Failures+c.Stale, "every admitted call counted once")
	assert.GreaterOrEqual(t, c.Failures, uint64(threshold))
	tr := <-sub
	assert.Equal(t, Open, tr.To)
	select {
	case extra := <-sub:
		t.Fatalf("one trip expected, then %v", extra)
	default:
	}
}

// A Retry-After failure opens at once even with budget to spare.
func TestLeanRetryAfterWaits(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 100})
	require.Error(t, b.Call(func() error { return retryErr{5 * time.Second} }))
	assert.Equal(t, Open, b.State())
}

// Within one snapshot the failures limit never drops: a caller that read
// it may still take a place under it. Outcomes that come as messages (a
// Retry-After that has passed, here) are the ones that could lower it.
func TestLeanLimitNeverDrops(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 4})
	s := b.snap.Load()
	last := s.limit.Load()
	check := func(step string) {
		t.Helper()
		require.Same(t, s, b.snap.Load(), "%s: still the same snapshot", step)
		now := s.limit.Load()
		require.GreaterOrEqual(t, now, last, "%s: the limit dropped", step)
		last = now
	}
	passed := retryErr{-time.Second} // a hint already in the past: sent as a message, does not open
	for range 3 {
		require.Error(t, b.Call(fail))
		b.Counts()
		check("tallied failure")
		require.Error(t, b.Call(func() error { return passed }))
		b.Counts()
		check("failure as a message")
		require.NoError(t, b.Call(succeed))
		b.Counts()
		check("success")
	}
	assert.Equal(t, Closed, b.State())
}

// The snapshot keeps what every call touches on one cache line and what a
// lean breaker's failures touch on the next (see the snapshot type).
func TestSnapshotLayout(t *testing.T) {
	var s snapshot
	assert.Equal(t, uintptr(128), unsafe.Sizeof(s))
	assert.LessOrEqual(t, unsafe.Offsetof(s.stop), uintptr(63))
	assert.LessOrEqual(t, unsafe.Offsetof(s.refuse), uintptr(63))
	assert.Equal(t, uintptr(64), unsafe.Offsetof(s.failures))
}
