package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errBoom = errors.New("boom")

func fail() error    { return errBoom }
func succeed() error { return nil }

func newTestBreaker(t *testing.T, cfg Config) *Breaker {
	t.Helper()
	b, err := NewBreaker(t.Name(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// bubble runs f in a synctest bubble; the breaker's real clock is then
// virtual and advances only when every goroutine in the bubble is blocked.
func bubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, f)
}

func TestSequentialConsistency(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 3})
	for i := range 3 {
		require.Equal(t, Closed, b.State(), "before failure %d", i+1)
		require.ErrorIs(t, b.Call(fail), errBoom)
		assert.Equal(t, uint64(i+1), b.Counts().ConsecutiveFailures)
	}
	require.Equal(t, Open, b.State())
	ran := false
	err := b.Call(func() error { ran = true; return nil })
	require.ErrorIs(t, err, ErrOpen)
	assert.False(t, ran, "fn must not run while open")

	var oe *OpenError
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, t.Name(), oe.Name)
	assert.Equal(t, Open, oe.State)
	assert.Equal(t, 60*time.Second, oe.RetryAfter)
	assert.ErrorIs(t, oe.Cause, errBoom)

	c := b.Counts()
	assert.Equal(t, uint64(3), c.Failures)
	assert.Equal(t, uint64(3), c.Requests)
	assert.Equal(t, uint64(1), c.Rejected)
	assert.Equal(t, uint64(1), c.Trips)
}

// Rejections start on one counter and spread over stripes once the
// breaker rejects fast; none is lost on the way, nor while the owner takes
// them. In a bubble, so that the clock stands still: fast enough.
func TestRejectionsAreCountedAcrossTheSpread(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{})
		b.Trip()
		const goroutines, each = 8, 2 * busy
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					if err := b.Call(succeed); !errors.Is(err, ErrOpen) {
						t.Errorf("Call while open: %v", err)
						return
					}
				}
			})
		}
		wg.Go(func() {
			for range 50 {
				_ = b.Counts() // takes the counts while they are added
				runtime.Gosched()
			}
		})
		wg.Wait()
		assert.Equal(t, uint64(goroutines*each), b.Counts().Rejected)
		assert.NotNil(t, b.rejected.wide.Load(), "a breaker this busy spreads its rejections")
	})
}

// 1e32005 spread a breaker's rejections once it had counted busy of them
// since its goroutine last looked, however slowly they came: an isolated
// breaker, whose goroutine may never look, spread after a day of one
// rejection a minute. Now only busy rejections within spreadWithin do.
func TestAQuietOpenBreakerKeepsOneCounter(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{})
		b.Isolate()
		for range 3 * busy {
			require.ErrorIs(t, b.Call(succeed), ErrOpen)
			time.Sleep(time.Minute)
		}
		assert.Nil(t, b.rejected.wide.Load(), "one rejection a minute is no reason for 4 KiB")
		assert.Equal(t, uint64(3*busy), b.Counts().Rejected)
	})
}

// 1e32005 picked a stripe by the stack address's bits 11 and up, which
// goroutines with stacks grown to 8 KiB (aligned to their size) share
// but for two: 64 such goroutines used 16 of the 64 stripes. The address
// is hashed now.
func TestStripesSpreadGoroutinesWithGrownStacks(t *testing.T) {
	var w stripes
	const goroutines = 64
	var all, ready sync.WaitGroup
	start := make(chan struct{})
	for range goroutines {
		ready.Add(1)
		all.Go(func() {
			onGrownStack(8, func() { // about 4 KiB in use below: the stack grows to 8 KiB
				ready.Done()
				<-start
				w.add()
			})
		})
	}
	ready.Wait() // all alive at once, each on a stack of its own
	close(start)
	all.Wait()
	var pairs, total uint64
	for i := range w {
		n := w[i].n.Load()
		total += n
		pairs += n * (n - min(n, 1)) / 2
	}
	require.Equal(t, uint64(goroutines), total)
	share := float64(pairs) / float64(goroutines*(goroutines-1)/2)
	assert.Less(t, share, 2.0/64, "pairs of goroutines sharing a stripe")
}

// onGrownStack calls f with about n×512 bytes of stack in use below it.
//
//go:noinline
func onGrownStack(n int, f func()) byte {
	var pad [512]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		f()
		return pad[0]
	}
	return onGrownStack(n-1, f) + pad[n%len(pad)]
}

func TestSuccessesAreCountedBeforeTheNextCall(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	for range 100 {
		require.NoError(t, b.Call(succeed))
	}
	require.ErrorIs(t, b.Call(fail), errBoom)
	require.NoError(t, b.Call(succeed)) // breaks the run
	require.ErrorIs(t, b.Call(fail), errBoom)
	assert.Equal(t, Closed, b.State())
	c := b.Counts()
	assert.Equal(t, uint64(101), c.Successes)
	assert.Equal(t, uint64(1), c.ConsecutiveFailures)
}

func TestHalfOpenOnItsOwnTimer(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: 10 * time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		sub := b.Subscribe(ctx)
		start := time.Now()
		require.ErrorIs(t, b.Call(fail), errBoom)
		tr := <-sub
		assert.Equal(t, Open, tr.To)
		assert.Equal(t, "1 consecutive failure", tr.Reason)
		assert.Equal(t, start.Add(10*time.Second), tr.OpenUntil)

		// No traffic at all: the breaker's timer moves it on.
		tr = <-sub
		assert.Equal(t, HalfOpen, tr.To)
		assert.Equal(t, "recovery timeout elapsed", tr.Reason)
		assert.Equal(t, 10*time.Second, time.Since(start))
		assert.Equal(t, HalfOpen, b.State())
	})
}

func TestMockClockAdvancePastRecovery(t *testing.T) {
	mock := clock.NewMock()
	b := newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: time.Minute, Clock: mock})
	require.ErrorIs(t, b.Call(fail), errBoom)
	require.Equal(t, Open, b.State())
	mock.Add(59 * time.Second)
	require.Equal(t, Open, b.State())
	require.ErrorIs(t, b.Call(succeed), ErrOpen)
	mock.Add(time.Second)
	require.Equal(t, HalfOpen, b.State(), "visible as soon as Add returns")
	require.NoError(t, b.Call(succeed))
	require.Equal(t, Closed, b.State())
}

func TestHalfOpenProbeLimit(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: time.Second, HalfOpenProbes: 2, SuccessThreshold: 2})
		require.ErrorIs(t, b.Call(fail), errBoom)
		time.Sleep(time.Second)
		synctest.Wait()

		release := make(chan struct{})
		var running atomic.Int32
		results := make([]<-chan Result[int], 2)
		for i := range results {
			results[i] = Async(t.Context(), b, func(context.Context) (int, error) {
				running.Add(1)
				<-release
				return i, nil
			})
		}
		synctest.Wait()
		require.Equal(t, int32(2), running.Load())

		err := b.Call(succeed)
		var oe *OpenError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, HalfOpen, oe.State)
		assert.Equal(t, 2, b.Counts().ProbesInFlight)

		close(release)
		for i, ch := range results {
			r := <-ch
			require.NoError(t, r.Err)
			assert.Equal(t, i, r.Value)
		}
		assert.Equal(t, Closed, b.State())
	})
}

func TestProbeFailureReopensWithBackoff(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: time.Second, BackoffMultiplier: 2})
		require.ErrorIs(t, b.Call(fail), errBoom)
		for _, want := range []time.Duration{2 * time.Second, 4 * time.Second} {
			time.Sleep(time.Until(b.snap.Load().err.Until))
			synctest.Wait()
			require.Equal(t, HalfOpen, b.State())
			require.ErrorIs(t, b.Call(fail), errBoom)
			var oe *OpenError
			require.ErrorAs(t, b.Call(succeed), &oe)
			assert.Equal(t, want, oe.RetryAfter)
		}
	})
}

func TestCanceledIsIgnoredAndFreesTheProbe(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: time.Second})
		require.ErrorIs(t, b.Call(fail), errBoom)
		time.Sleep(time.Second)
		synctest.Wait()

		ctx, cancel := context.WithCancel(t.Context())
		started := make(chan struct{})
		done := make(chan error)
		go func() {
			done <- b.Do(ctx, func(ctx context.Context) error {
				close(started)
				<-ctx.Done()
				return fmt.Errorf("upstream call: %w", ctx.Err())
			})
		}()
		<-started
		require.ErrorIs(t, b.Call(succeed), ErrOpen, "the only probe slot is taken")
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		assert.Equal(t, HalfOpen, b.State(), "a cancelled probe gives no verdict")
		c := b.Counts()
		assert.Equal(t, uint64(1), c.Ignored)
		assert.Equal(t, 0, c.ProbesInFlight)
		require.NoError(t, b.Call(succeed), "the slot is free again")
		assert.Equal(t, Closed, b.State())
	})
}

func TestDoneContextDoesNotRun(t *testing.T) {
	b := newTestBreaker(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	err := b.Do(ctx, func(context.Context) error { ran = true; return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.False(t, ran)
	_, err = Execute(ctx, b, func(context.Context) (int, error) { ran = true; return 1, nil })
	require.ErrorIs(t, err, context.Canceled)
	_, err = b.Admit(ctx)
	require.ErrorIs(t, err, context.Canceled)
	r := <-Async(ctx, b, func(context.Context) (int, error) { ran = true; return 1, nil })
	require.ErrorIs(t, r.Err, context.Canceled)
	assert.False(t, ran)
	assert.Equal(t, uint64(0), b.Counts().Requests)
}

func TestPanicIsAFailureAndFreesTheSlot(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureThreshold: 2, RecoveryTimeout: time.Second})
		require.PanicsWithValue(t, "kaboom", func() { _ = b.Call(func() error { panic("kaboom") }) })
		assert.Equal(t, uint64(1), b.Counts().Failures)
		require.PanicsWithValue(t, "kaboom", func() {
			_, _ = Execute(t.Context(), b, func(context.Context) (int, error) { panic("kaboom") })
		})
		require.Equal(t, Open, b.State())

		time.Sleep(time.Second)
		synctest.Wait()
		require.Panics(t, func() { _ = b.Call(func() error { panic("again") }) })
		require.Equal(t, Open, b.State(), "a panicking probe reopens the circuit")
		assert.Equal(t, 0, b.Counts().ProbesInFlight)
	})
}

func TestAsyncPanicIsDelivered(t *testing.T) {
	b := newTestBreaker(t, Config{})
	r := <-Async(t.Context(), b, func(context.Context) (int, error) { panic(errBoom) })
	var pe *PanicError
	require.ErrorAs(t, r.Err, &pe)
	assert.ErrorIs(t, r.Err, errBoom)
	assert.NotEmpty(t, pe.Stack)
	assert.Equal(t, uint64(1), b.Counts().Failures)
}

func TestAsyncNobodyReads(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{})
		for range 10 {
			_ = Async(t.Context(), b, func(context.Context) (string, error) { return "unread", nil })
		}
		synctest.Wait() // every goroutine Async started has finished
		assert.Equal(t, uint64(10), b.Counts().Successes)
	})
}

func TestAsyncRejectedAtOnce(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 1})
	b.Trip()
	r := <-Async(t.Context(), b, func(context.Context) (int, error) { return 1, nil })
	require.ErrorIs(t, r.Err, ErrOpen)
}

func TestGoGathersOnOneChannel(t *testing.T) {
	b := newTestBreaker(t, Config{})
	results := make(chan Result[int], 3)
	for i := range 3 {
		require.NoError(t, Go(t.Context(), b, results, func(context.Context) (int, error) { return i, nil }))
	}
	var got []int
	for range 3 {
		r := <-results
		require.NoError(t, r.Err)
		got = append(got, r.Value)
	}
	assert.ElementsMatch(t, []int{0, 1, 2}, got)
	assert.Equal(t, uint64(3), b.Counts().Successes)
}

func TestGoRejectedStartsNothing(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 1})
	b.Trip()
	results := make(chan Result[int], 1)
	err := Go(t.Context(), b, results, func(context.Context) (int, error) { panic("ran") })
	require.ErrorIs(t, err, ErrOpen)
	assert.Empty(t, results)
	assert.Equal(t, uint64(1), b.Counts().Rejected)
}

func TestGoNeedsAResultsChannel(t *testing.T) {
	b := newTestBreaker(t, Config{})
	err := Go(t.Context(), b, nil, func(context.Context) (int, error) { panic("ran") })
	require.EqualError(t, err, "engine: Go needs a results channel, got nil")
	assert.Zero(t, b.Counts().Requests)
}

func TestGoPanicAndGoexitAreFailures(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 10})
	results := make(chan Result[int], 2)
	require.NoError(t, Go(t.Context(), b, results, func(context.Context) (int, error) { panic(errBoom) }))
	require.NoError(t, Go(t.Context(), b, results, func(context.Context) (int, error) {
		runtime.Goexit()
		return 1, nil
	}))
	var values []any
	for range 2 {
		var pe *PanicError
		require.ErrorAs(t, (<-results).Err, &pe)
		values = append(values, pe.Value)
	}
	assert.ElementsMatch(t, []any{errBoom, "runtime.Goexit called"}, values)
	assert.Equal(t, uint64(2), b.Counts().Failures)
}

func TestGoSendsWhenThereIsRoomEvenIfCtxIsDone(t *testing.T) {
	b := newTestBreaker(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	results := make(chan Result[int], 1)
	require.NoError(t, Go(ctx, b, results, func(ctx context.Context) (int, error) {
		cancel()
		return 0, ctx.Err()
	}))
	assert.ErrorIs(t, (<-results).Err, context.Canceled)
}

// Go's goroutines take their calls from pooled launches: a launch one
// call used, for another type or in another bubble, must hand the next call
// only what is its own.
func TestGoLaunchesCarryOnlyTheirOwnCall(t *testing.T) {
	type pair struct{ a, b int }
	round := func(t *testing.T, b *Breaker, n int) {
		ints := make(chan Result[int], n)
		strs := make(chan Result[string], n)
		pairs := make(chan Result[pair], n)
		for i := range n {
			require.NoError(t, Go(t.Context(), b, ints, func(context.Context) (int, error) { return i, nil }))
			require.NoError(t, Go(t.Context(), b, strs, func(context.Context) (string, error) { return strconv.Itoa(i), errBoom }))
			require.NoError(t, Go(t.Context(), b, pairs, func(context.Context) (pair, error) { return pair{i, -i}, nil }))
		}
		var gotInts, gotStrs []int
		for range n {
			r := <-ints
			require.NoError(t, r.Err)
			gotInts = append(gotInts, r.Value)
			s := <-strs
			require.ErrorIs(t, s.Err, errBoom)
			v, err := strconv.Atoi(s.Value)
			require.NoError(t, err)
			gotStrs = append(gotStrs, v)
			p := <-pairs
			require.NoError(t, p.Err)
			require.Equal(t, -p.Value.a, p.Value.b)
		}
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		assert.ElementsMatch(t, want, gotInts)
		assert.ElementsMatch(t, want, gotStrs)
	}
	for i := range 3 { // each bubble takes launches the one before put back
		t.Run(fmt.Sprint("bubble ", i), func(t *testing.T) {
			bubble(t, func(t *testing.T) {
				b := newTestBreaker(t, Config{FailureThreshold: 1000})
				round(t, b, 50)
				synctest.Wait()
				assert.Equal(t, uint64(150), b.Counts().Requests)
			})
		})
	}
	t.Run("concurrent", func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureThreshold: 1_000_000})
		for i := range 4 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				round(t, b, 200)
			})
		}
	})
}

// A launch back in the pool holds nothing of its call: no context, function
// or channel made in one bubble may reach the next.
func TestGoLaunchesGoBackEmpty(t *testing.T) {
	for range 3 {
		bubble(t, func(t *testing.T) {
			b := newTestBreaker(t, Config{FailureThreshold: 1000})
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			buffered := make(chan Result[string], 30)
			unread := make(chan Result[string]) // nobody reads: each send ends with ctx
			for i := range 10 {
				require.NoError(t, Go(ctx, b, buffered, func(context.Context) (string, error) { return strconv.Itoa(i), nil }))
				require.NoError(t, Go(ctx, b, buffered, func(context.Context) (string, error) { panic(errBoom) }))
				require.NoError(t, Go(ctx, b, buffered, func(context.Context) (string, error) {
					runtime.Goexit()
					return "", nil
				}))
				require.NoError(t, Go(ctx, b, unread, func(context.Context) (string, error) { return "dropped", nil }))
			}
			time.Sleep(2 * time.Second) // in the bubble: ctx expires and the waiting sends give up
			synctest.Wait()
			assert.Len(t, buffered, 30)
		})
		for range 200 {
			l := *launches.Get().(*launch)
			require.NotNil(t, l.start)
			l.start = nil // funcs do not compare
			require.Zero(t, l, "a pooled launch holds only its start")
		}
	}
}

func TestGoWaitsForRoomUntilCtxIsDone(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{})
		ctx, cancel := context.WithCancel(t.Context())
		results := make(chan Result[int]) // no room at all: every send waits for a reader
		require.NoError(t, Go(ctx, b, results, func(context.Context) (int, error) { return 1, nil }))
		synctest.Wait() // fn has returned; its goroutine waits to send
		assert.Equal(t, 1, (<-results).Value)

		require.NoError(t, Go(ctx, b, results, func(context.Context) (int, error) { return 2, nil }))
		synctest.Wait()
		cancel()
		synctest.Wait() // the goroutine gave up and ended: the bubble would not end otherwise
		select {
		case r := <-results:
			t.Fatalf("a dropped result arrived: %+v", r)
		default:
		}
		assert.Equal(t, uint64(2), b.Counts().Successes, "a dropped result still counts")
	})
}

// timeWindow returns a breaker with a 10 s window of 1 s buckets, inside a
// bubble, after 10 successes at 0.5 s (tallied: no success can trip an
// empty window) and then failures at at; it leaves the bubble's clock
// there.
func timeWindow(t *testing.T, failures int, at time.Duration) *Breaker {
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 2})
	time.Sleep(500 * time.Millisecond)
	for range 10 {
		require.NoError(t, b.Call(succeed))
	}
	time.Sleep(at - 500*time.Millisecond)
	for range failures {
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	require.Equal(t, Closed, b.State(), "%d failures in %d calls", failures, 10+failures)
	return b
}

// Successes tallied on a time-window breaker's snapshot count in the
// bucket they happened in, even when folded later: they leave the window
// with it.
func TestTimeWindowTalliesCountInTheirBucket(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := timeWindow(t, 2, 9500*time.Millisecond) // the tallies are folded in bucket 9
		time.Sleep(time.Second)                      // bucket 0 has left the window
		require.ErrorIs(t, b.Call(fail), errBoom)
		assert.Equal(t, Open, b.State(), "3 failures in 3 calls: the successes left with their bucket")
	})
}

// A success still trips a time-based window when old buckets leave it: the
// first outcome of a new bucket waits for the breaker, which moves the
// window on.
func TestTimeWindowSuccessTripsWhenOldBucketsLeave(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := timeWindow(t, 6, 5500*time.Millisecond)
		time.Sleep(5 * time.Second) // the successes' bucket has left
		require.NoError(t, b.Call(succeed))
		assert.Equal(t, Open, b.State(), "6 failures in 7 calls, seen as soon as the success returns")
	})
}

// Tallies count in their snapshot's bucket even when the clock has stepped
// back before they are folded: not in the bucket the clock reads then.
func TestTimeWindowTalliesKeepTheirBucketWhenTheClockStepsBack(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(time.Unix(1_700_000_100, 500_000_000))
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 1, Clock: mock})
	for range 5 {
		require.NoError(t, b.Call(succeed)) // tallied in the bucket of 100 s
	}
	mock.Set(time.Unix(1_700_000_045, 500_000_000)) // 55 s back
	c := b.Counts()
	assert.Equal(t, uint64(5), c.Successes)
	assert.Zero(t, c.WindowCalls, "the successes did not happen in the window that ends at 45.5 s")
}

// A message that moves a time-based window on (here a Counts, as a metrics
// scrape sends) can leave it failing enough to trip at the next outcome,
// even a success: then successes in that bucket wait too.
func TestTimeWindowSuccessTripsAWindowMovedOnByAnotherMessage(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := timeWindow(t, 6, 5500*time.Millisecond)
		time.Sleep(5 * time.Second)
		c := b.Counts() // the successes' bucket has left: 6 failures in 6 calls, not yet checked
		require.Equal(t, uint64(6), c.WindowFailures)
		require.Equal(t, Closed, b.State())
		time.Sleep(100 * time.Millisecond) // the same bucket
		require.NoError(t, b.Call(succeed))
		assert.Equal(t, Open, b.State(), "6 failures in 7 calls, seen as soon as the success returns")
	})
}

// A caller checks mayTrip and then tallies, and other outcomes can land in
// between; so the flag may only fall within a snapshot. Short of
// MinimumCalls it is up, even when the rate is low, since the failure that
// lands in between can raise it.
func TestMayTripOnlyFallsWithinASnapshot(t *testing.T) {
	// A time-based window, in a bubble so that it stays in one bucket: the
	// failure finds no room, is applied as a message, and keeps the
	// snapshot (an ordered breaker's would seal it).
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureRateThreshold: 0.5, WindowDuration: time.Hour, MinimumCalls: 10})
		for range 4 {
			require.ErrorIs(t, b.Call(fail), errBoom)
		}
		for range 4 {
			require.NoError(t, b.Call(succeed))
		}
		s := b.snap.Load()
		require.True(t, s.mayTrip(), "4 of 8 failed, short of MinimumCalls: a success may fill the window")
		require.ErrorIs(t, b.Call(fail), errBoom) // lands between a check and its tally: 5 of 9
		require.Same(t, s, b.snap.Load())
		require.NoError(t, b.Call(succeed)) // 5 of 10: waits, and trips
		assert.Equal(t, Open, b.State())
	})
}

// A new bucket's snapshot is complete before anyone can load it: its
// mayTrip is never seen at the zero value the owner is about to replace.
func TestNewBucketSnapshotIsCompleteWhenSeen(t *testing.T) {
	for i := range 50 {
		bubble(t, func(t *testing.T) {
			b := timeWindow(t, 6, 5500*time.Millisecond)
			time.Sleep(5 * time.Second)                                         // the successes' bucket has left: 6 of 6 failed
			end := time.Now().Truncate(time.Second).Add(time.Second).UnixNano() // of the 1 s bucket
			var stop, seen atomic.Bool
			done := make(chan struct{})
			go func() {
				defer close(done)
				for !stop.Load() {
					if s := b.snap.Load(); s.bucketEnd == end && !s.mayTrip() {
						seen.Store(true)
					}
				}
			}()
			_ = b.Counts() // publishes the new bucket's snapshot
			stop.Store(true)
			<-done
			require.False(t, seen.Load(), "iteration %d: a success that trips could have been tallied", i)
		})
	}
}

// A Classify that panics leaves no call unreported: the call counts as a
// failure, as if fn had panicked, and the panic carries on.
func TestClassifyThatPanicsIsAFailure(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2, Classify: func(error) Outcome { panic("classifier bug") }})
	assert.PanicsWithValue(t, "classifier bug", func() { _ = b.Call(succeed) })
	assert.PanicsWithValue(t, "classifier bug", func() {
		_, _ = Execute(t.Context(), b, func(context.Context) (int, error) { return 1, nil })
	})
	assert.Equal(t, uint64(2), b.Counts().Failures)
	assert.Equal(t, Open, b.State())
}

func TestStaleResultsAreDropped(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 1})
	old, err := b.Admit(t.Context())
	require.NoError(t, err)
	b.Trip()
	b.Reset()
	require.Equal(t, Closed, b.State())
	old.Report(errBoom) // admitted before the trip: must not trip the new closed period
	assert.Equal(t, Closed, b.State())
	c := b.Counts()
	assert.Equal(t, uint64(1), c.Stale)
	assert.Equal(t, uint64(0), c.Failures)
}

func TestTicketReportOnce(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	tk, err := b.Admit(t.Context())
	require.NoError(t, err)
	tk.Report(errBoom)
	tk.Report(errBoom)
	tk.Report(nil)
	c := b.Counts()
	assert.Equal(t, uint64(1), c.Failures)
	assert.Equal(t, uint64(1), c.Requests)
	assert.Equal(t, Closed, b.State())
	var nilTicket *Ticket
	nilTicket.Report(errBoom) // no-op, no panic
}

func TestProbeLeaseReclaimsALostProbe(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: time.Second, ProbeLease: 5 * time.Second})
		b.Trip()
		time.Sleep(time.Second)
		synctest.Wait()
		lost, err := b.Admit(t.Context()) // the probe, never reported in time
		require.NoError(t, err)
		require.ErrorIs(t, b.Call(succeed), ErrOpen)

		time.Sleep(5 * time.Second)
		synctest.Wait()
		assert.Equal(t, Open, b.State())
		c := b.Counts()
		assert.Equal(t, uint64(1), c.Reclaimed)
		assert.Equal(t, uint64(1), c.Failures)

		lost.Report(nil)
		assert.Equal(t, Open, b.State(), "the late report is stale")
		assert.Equal(t, uint64(1), b.Counts().Stale)

		time.Sleep(time.Second)
		synctest.Wait()
		require.NoError(t, b.Call(succeed))
		assert.Equal(t, Closed, b.State(), "half-open is never stuck")
	})
}

func TestManualControl(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{RecoveryTimeout: time.Second})
		b.Trip()
		require.Equal(t, Open, b.State())
		b.Reset()
		require.Equal(t, Closed, b.State())

		b.Isolate()
		require.Equal(t, Open, b.State())
		var oe *OpenError
		require.ErrorAs(t, b.Call(succeed), &oe)
		assert.True(t, oe.Isolated)
		assert.True(t, oe.Until.IsZero())
		time.Sleep(time.Hour)
		synctest.Wait()
		require.Equal(t, Open, b.State(), "isolated stays open")
		b.Reset()
		require.Equal(t, Closed, b.State())
		require.NoError(t, b.Call(succeed))
	})
}

func TestResetForgetsFailures(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 3})
	require.Error(t, b.Call(fail))
	require.Error(t, b.Call(fail))
	b.Reset()
	assert.Equal(t, uint64(0), b.Counts().ConsecutiveFailures)
	require.Error(t, b.Call(fail))
	assert.Equal(t, Closed, b.State())
}

type retryErr struct{ d time.Duration }

func (e retryErr) Error() string             { return "429 too many requests" }
func (e retryErr) RetryAfter() time.Duration { return e.d }

func TestRetryAfterOpensAtOnce(t *testing.T) {
	mock := clock.NewMock()
	b := newTestBreaker(t, Config{RecoveryTimeout: time.Second, Clock: mock})
	err := b.Call(func() error { return fmt.Errorf("call: %w", retryErr{30 * time.Second}) })
	var re retryErr
	require.ErrorAs(t, err, &re, "the caller's error comes back unchanged")
	require.Equal(t, Open, b.State())
	mock.Add(29 * time.Second)
	require.Equal(t, Open, b.State())
	mock.Add(time.Second)
	require.Equal(t, HalfOpen, b.State())
}

func TestSlowCallsTrip(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{
			SlowCallThreshold:     time.Second,
			SlowCallRateThreshold: 0.5,
			WindowSize:            4,
			MinimumCalls:          4,
		})
		slow := func(context.Context) error { time.Sleep(2 * time.Second); return nil }
		fast := func(context.Context) error { return nil }
		require.NoError(t, b.Do(t.Context(), fast))
		require.NoError(t, b.Do(t.Context(), slow))
		require.NoError(t, b.Do(t.Context(), fast))
		require.Equal(t, Closed, b.State())
		require.NoError(t, b.Do(t.Context(), slow))
		require.Equal(t, Open, b.State())
		c := b.Counts()
		assert.Equal(t, uint64(2), c.SlowCalls)
		assert.Equal(t, uint64(4), c.Successes)
	})
}

func TestFailureRateTrips(t *testing.T) {
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 10})
	for i := range 10 {
		if i%2 == 0 {
			require.NoError(t, b.Call(succeed))
		} else {
			require.Error(t, b.Call(fail))
		}
	}
	require.Equal(t, Open, b.State())
	c := b.Counts()
	assert.Equal(t, uint64(5), c.Successes)
	assert.Equal(t, uint64(5), c.Failures)
}

func TestCustomClassify(t *testing.T) {
	notFound := errors.New("not found")
	b := newTestBreaker(t, Config{FailureThreshold: 1, Classify: func(err error) Outcome {
		if errors.Is(err, notFound) {
			return Success
		}
		return DefaultClassify(err)
	}})
	require.ErrorIs(t, b.Call(func() error { return notFound }), notFound)
	assert.Equal(t, Closed, b.State())
	assert.Equal(t, uint64(1), b.Counts().Successes)
}

func TestOnStateChange(t *testing.T) {
	bubble(t, func(t *testing.T) {
		type change struct{ from, to State }
		got := make(chan change, 16)
		gate := make(chan struct{})
		var b *Breaker
		b = newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: time.Second,
			OnStateChange: func(name string, from, to State) {
				<-gate // a slow callback must hold up nobody
				assert.Equal(t, t.Name(), name)
				_ = b.State()  // no deadlock
				_ = b.Counts() // no deadlock
				got <- change{from, to}
			}})
		require.Error(t, b.Call(fail))
		time.Sleep(time.Second)
		synctest.Wait()
		require.NoError(t, b.Call(succeed))
		b.Trip()
		b.Reset()
		require.Equal(t, Closed, b.State(), "callers went on while the callback was stuck")
		close(gate)
		want := []change{{Closed, Open}, {Open, HalfOpen}, {HalfOpen, Closed}, {Closed, Open}, {Open, Closed}}
		for _, w := range want {
			assert.Equal(t, w, <-got)
		}
		synctest.Wait()
		assert.Empty(t, got, "exactly once each")
	})
}

func TestSubscriberOverflowIsCounted(t *testing.T) {
	b := newTestBreaker(t, Config{SubscriberBuffer: 2})
	sub := b.Subscribe(t.Context())
	for range 3 {
		b.Trip()
		b.Reset()
	} // 6 transitions; the buffer keeps the first 2
	first, second := <-sub, <-sub
	assert.Equal(t, []uint64{1, 2}, []uint64{first.Seq, second.Seq})
	b.Trip()
	next := <-sub
	assert.Equal(t, uint64(7), next.Seq)
	assert.Equal(t, uint64(4), next.Missed)
}

func TestSubscriptionEndsWithContext(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b := newTestBreaker(t, Config{})
		ctx, cancel := context.WithCancel(t.Context())
		sub := b.Subscribe(ctx)
		cancel()
		_, ok := <-sub
		assert.False(t, ok, "cancelling the context closes the channel")

		done, stop := context.WithCancel(t.Context())
		stop()
		_, ok = <-b.Subscribe(done)
		assert.False(t, ok)
	})
}

func TestClose(t *testing.T) {
	b, err := NewBreaker("c", Config{})
	require.NoError(t, err)
	sub := b.Subscribe(t.Context())
	require.NoError(t, b.Call(succeed))
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "idempotent")
	_, ok := <-sub
	assert.False(t, ok)
	require.ErrorIs(t, b.Call(succeed), ErrClosed)
	_, err = b.Admit(t.Context())
	require.ErrorIs(t, err, ErrClosed)
	r := <-Async(t.Context(), b, func(context.Context) (int, error) { return 0, nil })
	require.ErrorIs(t, r.Err, ErrClosed)
	assert.Equal(t, uint64(1), b.Counts().Successes, "counts survive Close")
	b.Trip() // no-op, no block
	_, ok = <-b.Subscribe(t.Context())
	assert.False(t, ok)
}

func TestCloseWhileCallInFlight(t *testing.T) {
	bubble(t, func(t *testing.T) {
		b, err := NewBreaker("c", Config{})
		require.NoError(t, err)
		release := make(chan struct{})
		done := make(chan error)
		go func() { done <- b.Call(func() error { <-release; return errBoom }) }()
		synctest.Wait()
		require.NoError(t, b.Close())
		close(release)
		require.ErrorIs(t, <-done, errBoom, "the report after Close neither blocks nor panics")
	})
}

func TestBadConfig(t *testing.T) {
	_, err := NewBreaker("x", Config{FailureThreshold: -1})
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.EqualError(t, err, "engine: FailureThreshold must be >= 0, got -1")
	_, err = NewBreaker("x", Config{FailureRateThreshold: 1.5})
	require.EqualError(t, err, "engine: FailureRateThreshold must be in [0, 1], got 1.5")
	_, err = New(Config{HalfOpenProbes: -2})
	require.EqualError(t, err, "engine: HalfOpenProbes must be >= 0, got -2")
}

func TestStaleSuccessAfterRetirement(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	before, err := b.Admit(t.Context())
	require.NoError(t, err)
	require.Error(t, b.Call(fail))
	b.Reset() // a new generation: the run of failures is forgotten
	require.Error(t, b.Call(fail))
	before.Report(nil) // admitted before the reset: must not break the new run
	require.Error(t, b.Call(fail))
	assert.Equal(t, Open, b.State())
	c := b.Counts()
	assert.Equal(t, uint64(1), c.Stale)
	assert.Equal(t, uint64(0), c.Successes)
}

func TestTicketReportAs(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 1})
	tk, err := b.Admit(t.Context())
	require.NoError(t, err)
	tk.ReportAs(Ignored, errBoom) // the caller knows better than the classifier
	tk.Report(errBoom)            // a repeat: no-op
	assert.Equal(t, Closed, b.State())
	assert.Equal(t, uint64(1), b.Counts().Ignored)

	tk, err = b.Admit(t.Context())
	require.NoError(t, err)
	tk.ReportAs(Failure, nil)
	assert.Equal(t, Open, b.State())
}

func TestForceOpen(t *testing.T) {
	mock := clock.NewMock()
	b := newTestBreaker(t, Config{RecoveryTimeout: time.Second, Clock: mock})
	sub := b.Subscribe(t.Context())
	b.ForceOpen(mock.Now().Add(time.Minute), "fleet: replica-2 tripped")
	tr := <-sub
	assert.Equal(t, "fleet: replica-2 tripped", tr.Reason)
	assert.Equal(t, mock.Now().Add(time.Minute), tr.OpenUntil)

	b.ForceOpen(mock.Now().Add(time.Second), "shorter: ignored")
	mock.Add(59 * time.Second)
	require.Equal(t, Open, b.State(), "a shorter deadline never cuts an open period")
	b.ForceOpen(mock.Now().Add(time.Minute), "extended")
	mock.Add(30 * time.Second)
	require.Equal(t, Open, b.State())
	var oe *OpenError
	require.ErrorAs(t, b.Call(succeed), &oe)
	assert.Equal(t, mock.Now().Add(30*time.Second), oe.Until)
	mock.Add(30 * time.Second)
	require.Equal(t, HalfOpen, b.State())
}

// TestSubscribeGivesUpWithCtx: a Subscribe queued behind a slow ShouldTrip
// returns when its ctx is done, with a closed channel.
func TestSubscribeGivesUpWithCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release, entered := make(chan struct{}), make(chan struct{})
		var once sync.Once
		b := newTestBreaker(t, Config{ShouldTrip: func(Counts) bool {
			once.Do(func() { close(entered) })
			<-release
			return false
		}})
		go func() { _ = b.Call(fail) }() // runs ShouldTrip, which stalls
		<-entered

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		returned := make(chan struct{})
		var sub <-chan Transition
		go func() { sub = b.Subscribe(ctx); close(returned) }()
		time.Sleep(time.Minute) // ctx expired 59s ago
		synctest.Wait()
		select {
		case <-returned:
			_, open := <-sub
			assert.False(t, open, "the channel of a Subscribe that gave up is closed")
		default:
			assert.Fail(t, "Subscribe still waiting a minute after its ctx expired")
		}
		close(release)
		<-returned
		synctest.Wait() // the breaker drops the subscription it made for the done ctx
	})
}

// TestForceOpenFarFuture: "until further notice" written as a far date
// opens the circuit; its nanoseconds would overflow into the past.
func TestForceOpenFarFuture(t *testing.T) {
	mock := clock.NewMock()
	b := newTestBreaker(t, Config{Clock: mock})
	b.ForceOpen(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), "maintenance")
	require.Equal(t, Open, b.State())
	var oe *OpenError
	require.ErrorAs(t, b.Call(succeed), &oe)
	assert.Equal(t, time.Unix(0, math.MaxInt64), oe.Until)
	mock.Add(100 * 365 * 24 * time.Hour)
	assert.Equal(t, Open, b.State())

	b.Reset()
	b.ForceOpen(time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), "long past") // would overflow into the future
	assert.Equal(t, Closed, b.State())
}

// TestSnapshotBeforeSubscribers: a subscriber that sees a transition and
// calls the breaker at once must find the state it was told about.
func TestSnapshotBeforeSubscribers(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 1, RecoveryTimeout: time.Hour})
	sub := b.Subscribe(t.Context())
	for range 300 {
		go func() { _ = b.Call(fail) }()
		require.Equal(t, Open, (<-sub).To)
		require.Equal(t, Open, b.State())
		require.ErrorIs(t, b.Call(succeed), ErrOpen)
		b.Reset()
		require.Equal(t, Closed, (<-sub).To)
	}
}

// A caller whose context ends while its half-open admission is queued must
// not keep the probe slot.
func TestCancelledAdmissionFreesTheProbe(t *testing.T) {
	for range 50 {
		mock := clock.NewMock()
		b := newTestBreaker(t, Config{FailureThreshold: 1, Clock: mock})
		require.Error(t, b.Call(fail))
		mock.Add(time.Minute)
		ctx, cancel := context.WithCancel(t.Context())
		go cancel()
		_ = b.Do(ctx, func(context.Context) error { return nil })
		require.Zero(t, b.Counts().ProbesInFlight, "the slot is free whatever the race")
		require.NoError(t, b.Call(succeed))
		require.Equal(t, Closed, b.State())
	}
}

// The success that fills a count window up to MinimumCalls can trip it,
// and must be applied before Call returns.
func TestSuccessThatTripsIsApplied(t *testing.T) {
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 10})
	for range 9 {
		require.Error(t, b.Call(fail))
	}
	require.NoError(t, b.Call(succeed))
	assert.Equal(t, Open, b.State(), "9 of 10 failed")
}

func TestSuccessesAfterTheWindowFillsStillTally(t *testing.T) {
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.5, WindowSize: 4, MinimumCalls: 4})
	for range 4 {
		require.NoError(t, b.Call(succeed))
	}
	assert.False(t, b.snap.Load().mayTrip(), "a full window of successes: no success can trip it")
	for range 100 {
		require.NoError(t, b.Call(succeed))
	}
	assert.Equal(t, uint64(104), b.Counts().Successes)
}

// A transition to open carries the failure that caused it; a manual trip
// has none.
func TestTransitionCause(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 1})
	sub := b.Subscribe(t.Context())
	require.ErrorIs(t, b.Call(fail), errBoom)
	tr := <-sub
	assert.Equal(t, Open, tr.To)
	assert.ErrorIs(t, tr.Cause, errBoom)
	b.Reset()
	assert.Nil(t, (<-sub).Cause, "closing carries no cause")
	b.Trip()
	assert.Nil(t, (<-sub).Cause, "a manual trip has no cause")
}

// Outcomes sent without waiting (successes under a time-based window with
// no rate policy go as messages) still count when Close comes right after
// the calls.
func TestCloseAppliesQueuedReports(t *testing.T) {
	for range 200 {
		b, err := NewBreaker("x", Config{WindowDuration: time.Minute, ShouldTrip: func(Counts) bool { return false }})
		require.NoError(t, err)
		for range 5 {
			require.NoError(t, b.Call(succeed))
		}
		require.NoError(t, b.Close())
		require.Equal(t, uint64(5), b.Counts().Successes)
	}
}
