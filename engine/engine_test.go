package engine

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newTestEngine(t *testing.T, defaults Config, opts ...Option) *Engine {
	t.Helper()
	e, err := New(defaults, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestEngineGetOrCreate(t *testing.T) {
	e := newTestEngine(t, Config{FailureThreshold: 2})
	a := e.Breaker("a")
	require.Same(t, a, e.Breaker("a"))
	assert.Equal(t, "a", a.Name())
	got, ok := e.Lookup("a")
	require.True(t, ok)
	require.Same(t, a, got)
	_, ok = e.Lookup("b")
	assert.False(t, ok)

	require.Error(t, a.Call(fail))
	require.Error(t, a.Call(fail))
	assert.Equal(t, Open, a.State(), "the defaults apply")
	assert.Equal(t, Closed, e.Breaker("b").State(), "breakers are independent")
}

func TestEngineConcurrentGetOrCreate(t *testing.T) {
	e := newTestEngine(t, Config{})
	const n = 16
	got := make([]*Breaker, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i] = e.Breaker("shared") })
	}
	wg.Wait()
	for _, b := range got {
		require.Same(t, got[0], b)
	}
}

func TestEngineNewBreaker(t *testing.T) {
	e := newTestEngine(t, Config{})
	b, err := e.NewBreaker("custom", Config{FailureThreshold: 1})
	require.NoError(t, err)
	require.Same(t, b, e.Breaker("custom"))
	require.Error(t, b.Call(fail))
	assert.Equal(t, Open, b.State(), "its own config applies")

	_, err = e.NewBreaker("custom", Config{})
	require.ErrorIs(t, err, ErrDuplicate)
	_, err = e.NewBreaker("bad", Config{FailureThreshold: -1})
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, ok := e.Lookup("bad")
	assert.False(t, ok)
}

func TestEngineSubscribe(t *testing.T) {
	e := newTestEngine(t, Config{FailureThreshold: 1})
	sub := e.Subscribe(t.Context())
	e.Breaker("a").Trip()
	e.Breaker("b").Trip()
	e.Breaker("a").Reset()
	var got []string
	for range 3 {
		tr := <-sub
		got = append(got, fmt.Sprintf("%s:%s>%s#%d", tr.Name, tr.From, tr.To, tr.Seq))
	}
	assert.ElementsMatch(t, []string{"a:closed>open#1", "b:closed>open#1", "a:open>closed#2"}, got)
	assert.Less(t, indexOf(got, "a:closed>open#1"), indexOf(got, "a:open>closed#2"), "each breaker's in order")
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestEngineClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := New(Config{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		sub := e.Subscribe(ctx)
		bs := []*Breaker{e.Breaker("a"), e.Breaker("b")}
		require.NoError(t, e.Close())
		require.NoError(t, e.Close(), "idempotent")
		synctest.Wait() // nothing left running in the bubble but this test
		_, ok := <-sub
		assert.False(t, ok)
		for _, b := range bs {
			require.ErrorIs(t, b.Call(succeed), ErrClosed)
		}
		require.ErrorIs(t, e.Breaker("late").Call(succeed), ErrClosed)
		_, err = e.NewBreaker("late", Config{})
		require.ErrorIs(t, err, ErrClosed)
		_, ok = <-e.Subscribe(t.Context())
		assert.False(t, ok)
	})
}

func TestEngineForgetsAClosedBreaker(t *testing.T) {
	e := newTestEngine(t, Config{})
	a := e.Breaker("a")
	require.NoError(t, a.Close())
	b := e.Breaker("a")
	require.NotSame(t, a, b)
	require.NoError(t, b.Call(succeed))
}

func TestEngineSubscriberMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{SubscriberBuffer: 1})
		sub := e.Subscribe(t.Context())
		b := e.Breaker("a")
		b.Trip()
		b.Reset()
		b.Trip()
		synctest.Wait() // the engine has fanned out all three; only #1 fit
		assert.Equal(t, uint64(1), (<-sub).Seq)
		b.Reset()
		tr := <-sub
		assert.Equal(t, uint64(4), tr.Seq)
		assert.Equal(t, uint64(2), tr.Missed)
	})
}

// Transitions the engine's mailbox had no room for are counted on the
// next transition queued after them: each one's Missed tells exactly the
// gap before it.
func TestEngineMissedLandsAfterTheGap(t *testing.T) {
	// One processor: the engine's goroutine waits while this one fills its
	// mailbox, in microseconds.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	e, err := New(Config{SubscriberBuffer: 4096})
	require.NoError(t, err)
	all := e.Subscribe(t.Context())
	for i := range uint64(2000) {
		e.feed(Transition{Name: "x", Seq: i + 1})
	}
	e.Breaker("y")                           // answered once the engine has emptied its mailbox
	e.feed(Transition{Name: "x", Seq: 2001}) // and carries what the flood lost
	require.NoError(t, e.Close())
	var last, lost uint64
	for tr := range all {
		lost += tr.Missed
		require.Equal(t, last+tr.Missed+1, tr.Seq, "#%d after #%d", tr.Seq, last)
		last = tr.Seq
	}
	assert.Equal(t, uint64(2001), last)
	assert.Positive(t, lost, "the mailbox holds 1024: some of 2000 were dropped")
}

func TestEngineEvictsIdleBreakers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{FailureThreshold: 1}, WithIdleTimeout(time.Minute))
		busy, idle, open := e.Breaker("busy"), e.Breaker("idle"), e.Breaker("open")
		require.Error(t, open.Call(fail))
		open.Isolate() // stays open however long the test runs

		// Sweeps run every 30s; busy is called between every two of them,
		// never at the same instant as one.
		for range 5 {
			require.NoError(t, busy.Call(succeed))
			time.Sleep(25 * time.Second)
		}
		synctest.Wait() // every sweep so far has run

		_, ok := e.Lookup("idle")
		assert.False(t, ok, "unused for two sweeps: evicted")
		require.NoError(t, idle.Call(succeed), "a forgotten breaker still works for whoever holds it")
		got, ok := e.Lookup("busy")
		require.True(t, ok)
		assert.Same(t, busy, got)
		_, ok = e.Lookup("open")
		assert.True(t, ok, "only closed breakers are evicted")

		fresh := e.Breaker("idle")
		require.NotSame(t, idle, fresh)
		require.NoError(t, fresh.Call(succeed))
	})
}

// WithIdleTimeout(d) forgets a breaker no sooner than d after its last
// call, and no later than 1.5 d.
func TestEngineIdleTimeoutBounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{}, WithIdleTimeout(time.Minute)) // sweeps at 30s, 1m, 1m30s...
		time.Sleep(29 * time.Second)
		require.NoError(t, e.Breaker("x").Call(succeed)) // just before a sweep
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		_, ok := e.Lookup("x")
		assert.True(t, ok, "idle for less than d: kept")
		time.Sleep(31 * time.Second) // 1m30s after the call
		synctest.Wait()
		_, ok = e.Lookup("x")
		assert.False(t, ok, "idle for 1.5 d: forgotten")
	})
}

func TestEngineKeepsCustomAndCallbackBreakers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{}, WithIdleTimeout(time.Minute))
		custom, err := e.NewBreaker("custom", Config{FailureThreshold: 1})
		require.NoError(t, err)
		_, err = e.NewBreaker("watched", Config{OnStateChange: func(string, State, State) {}})
		require.NoError(t, err)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		got, ok := e.Lookup("custom")
		require.True(t, ok)
		assert.Same(t, custom, got, "its own config is not swapped for the defaults")
		_, ok = e.Lookup("watched")
		assert.True(t, ok)
	})
}

// A breaker with a subscription open is watched: it is kept, and the
// engine's Close ends the subscription. Once the subscription ends, it is
// forgotten like any other.
func TestEngineKeepsSubscribedBreakers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, err := New(Config{}, WithIdleTimeout(time.Minute))
		require.NoError(t, err)
		b := e.Breaker("x")
		ctx, cancel := context.WithCancel(t.Context())
		sub := b.Subscribe(ctx)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		got, ok := e.Lookup("x")
		require.True(t, ok, "subscribed: kept")
		assert.Same(t, b, got)

		cancel()
		_, open := <-sub
		require.False(t, open)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		_, ok = e.Lookup("x")
		assert.False(t, ok, "no longer watched: forgotten")

		kept := e.Breaker("y")
		sub = kept.Subscribe(t.Context())
		require.NoError(t, e.Close())
		_, open = <-sub
		assert.False(t, open, "the engine's Close closes the subscriptions of its breakers")
	})
}

// gateClock is real time until armed; then the next Now blocks until
// proceed is closed, telling entered that it was called.
type gateClock struct {
	clock.Clock
	armed   atomic.Bool
	entered chan struct{}
	proceed chan struct{}
}

func (c *gateClock) Now() time.Time {
	if c.armed.CompareAndSwap(true, false) {
		close(c.entered)
		<-c.proceed
	}
	return c.Clock.Now()
}

// The sweep never runs a breaker's handler on the engine's goroutine: it
// would run whatever else is queued on the breaker there too, a ShouldTrip
// that waits on the engine for one, and decide on what it saw before.
func TestEngineSweepRunsNoBreakerHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &gateClock{Clock: clock.New(), entered: make(chan struct{}), proceed: make(chan struct{})}
		e := newTestEngine(t, Config{Clock: c}, WithIdleTimeout(time.Minute))
		e.Breaker("x")
		time.Sleep(85 * time.Second)
		c.armed.Store(true) // sweeps at 30s, 60s, 90s: the third forgets x
		time.Sleep(10 * time.Second)
		synctest.Wait()
		select {
		case <-c.entered:
			close(c.proceed)
			assert.Fail(t, "the sweep ran a handler of the breaker")
		default:
			c.armed.Store(false)
		}
		_, ok := e.Lookup("x")
		assert.False(t, ok)
	})
}

// A forgotten breaker is no longer the engine's: its transitions leave the
// engine's stream, where its name is a new breaker's now.
func TestEngineForgottenBreakerLeavesTheStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{FailureThreshold: 1}, WithIdleTimeout(time.Minute))
		all := e.Subscribe(t.Context())
		old := e.Breaker("x")
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		_, ok := e.Lookup("x")
		require.False(t, ok)

		require.Error(t, old.Call(fail))
		require.Equal(t, Open, old.State(), "it still works for whoever holds it")
		synctest.Wait()
		select {
		case tr := <-all:
			assert.Fail(t, "the stream has a transition of a breaker the engine forgot", "%+v", tr)
		default:
		}
		fresh := e.Breaker("x")
		require.Error(t, fresh.Call(fail))
		tr := <-all
		assert.Equal(t, Open, tr.To, "the new breaker's transitions are on the stream")
		require.NoError(t, old.Close())
	})
}

// A callback that uses the engine while the engine closes must not
// deadlock the shutdown.
func TestEngineCloseWithACallbackUsingTheEngine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var e *Engine
		e = newTestEngine(t, Config{FailureThreshold: 1, OnStateChange: func(name string, _, _ State) {
			time.Sleep(50 * time.Millisecond)
			_ = e.Breaker("fallback-for-" + name)
		}})
		require.Error(t, e.Breaker("a").Call(fail))
		require.NoError(t, e.Close())
	})
}

func TestEngineBadIdleTimeout(t *testing.T) {
	_, err := New(Config{}, WithIdleTimeout(-time.Second))
	require.EqualError(t, err, "engine: IdleTimeout must be >= 0, got -1s")
}

// A metrics scrape is no call: a time-window breaker that only gets Counts
// (each in a new bucket, so each makes a new snapshot) is still idle.
func TestCountsDoNotKeepAnIdleBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newTestEngine(t, Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second}, WithIdleTimeout(time.Minute))
		require.NoError(t, e.Breaker("x").Call(succeed))
		time.Sleep(5 * time.Second)
		for range 18 { // a scrape every 10 s for 3 minutes, no call
			time.Sleep(10 * time.Second)
			e.Range(func(b *Breaker) bool { _ = b.Counts(); return true })
		}
		synctest.Wait()
		_, ok := e.Lookup("x")
		assert.False(t, ok, "no call for 3 minutes: forgotten")
	})
}

// A breaker that is only asked from outside (a metrics scrape, fleet
// mode's sweep) keeps no message pool: it would hold a pooled message and
// the pool's per-processor slots, over half an idle breaker again, on
// every breaker of the engine. A breaker that queues a message keeps one.
func TestQueriesKeepNoMessagePool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := &holdClock{Clock: clock.New()}
		e := newTestEngine(t, Config{Clock: clk})
		t.Cleanup(clk.disarm)
		b := e.Breaker("x")
		for range 3 {
			_ = b.Counts()
			b.Reset()
		}
		assert.Nil(t, b.msgs.Load(), "asked while idle: no pool")

		h := clk.arm()
		first := make(chan Counts)
		go func() { first <- b.Counts() }()
		<-h.held // the breaker busy with that Counts: the next is queued
		second := make(chan Counts)
		go func() { second <- b.Counts() }()
		synctest.Wait()
		h.free()
		<-first
		<-second
		assert.NotNil(t, b.msgs.Load(), "a queued message goes back to a pool of the breaker's own")
	})
}

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

// Breakers in parallel synctest bubbles, and one outside any, are driven
// through every path a message takes: Counts and Subscribe on idle
// breakers (handled by the sender, then put in spares), queued asks (given
// a reply channel), an ordered storm (renew, by TryHandle, TrySend or
// recycle), Reset, a subscription ended by its context, and Close racing
// Counts. A bubble's channel reaching another bubble would be a fatal
// error, and whatever is in spares afterwards must be a zero message.
func TestSparesHoldNothingBubbleBound(t *testing.T) {
	drive := func(t *testing.T, b *Breaker) {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 300 {
					if (i+g)%3 == 0 {
						_ = b.Call(fail)
					} else {
						_ = b.Call(succeed)
					}
					if i%50 == 0 {
						runtime.Gosched()
					}
				}
			}()
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 200 {
				_ = b.Counts()
			}
		}()
		go func() {
			defer wg.Done()
			for range 20 {
				ctx, cancel := context.WithCancel(context.Background())
				ch := b.Subscribe(ctx)
				cancel()
				for range ch {
				}
				b.Reset()
			}
		}()
		wg.Wait()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 50 {
				_ = b.Counts()
			}
		}()
		_ = b.Close()
		<-done
	}
	cfg := Config{FailureRateThreshold: 0.99, WindowSize: 10_000, MinimumCalls: 100}
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			for i := range 6 {
				t.Run(fmt.Sprint("bubble", i), func(t *testing.T) {
					t.Parallel()
					synctest.Test(t, func(t *testing.T) {
						// Idle breakers asked only from outside: no pool, spares only.
						for range 20 {
							b, err := NewBreaker("idle", cfg)
							require.NoError(t, err)
							_ = b.Counts()
							ctx, cancel := context.WithCancel(context.Background())
							_ = b.Subscribe(ctx)
							_ = b.Counts()
							require.Nil(t, b.msgs.Load())
							cancel()
							_ = b.Close()
						}
						b, err := NewBreaker("busy", cfg)
						require.NoError(t, err)
						drive(t, b)
					})
				})
			}
			t.Run("outside", func(t *testing.T) {
				t.Parallel()
				for range 20 {
					b, err := NewBreaker("outside", cfg)
					require.NoError(t, err)
					drive(t, b)
				}
			})
		})
	}
	for range 10_000 {
		m, _ := spares.Get().(*msg)
		if m == nil {
			break
		}
		require.Equal(t, msg{}, *m, "a message in spares")
	}
}
