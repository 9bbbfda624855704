package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Review tests for lean breakers (FailureThreshold only), whose closed-state
// failures that cannot open the circuit skip the wait for the breaker.
//
// Several tests build, step by step, an interleaving that the
// sequential-consistency guarantee forbids, and assert only what every
// sequential order of the operations implies. Two hooks a user can supply
// pin the interleaving down: an error's RetryAfter method, which a failing
// caller runs on its way to report the failure, and Config.Clock, whose
// Now is read at the start of every message by whichever goroutine handles
// it (the breaker's, or the asking caller's if it found the breaker idle),
// and, with ShouldTrip, ShouldTrip, asked while a failure is decided. Holding
// either one does what a preempted goroutine does anyway; the hooks only
// make it happen every time. Waits on the breaker are bounded, so an
// implementation that orders things differently is not deadlocked by the
// test, only driven down another interleaving.

// gatedErr is a failure whose RetryAfter call number at waits until gate
// is closed: the first (made by the failing caller on its way to report
// the failure; the breaker reads it only then) unless set otherwise. Other
// calls return at once.
type gatedErr struct {
	calls   atomic.Int32
	at      int32 // the call that waits
	entered chan struct{}
	gate    chan struct{}
}

func newGatedErr() *gatedErr {
	return &gatedErr{at: 1, entered: make(chan struct{}), gate: make(chan struct{})}
}

func (e *gatedErr) Error() string { return "gated failure" }

func (e *gatedErr) RetryAfter() time.Duration {
	if e.calls.Add(1) == e.at {
		close(e.entered)
		<-e.gate
	}
	return 0
}

// pastRetry is a failure whose Retry-After lies in the past, as an
// upstream's Retry-After date read a little late gives (time.Until of a
// passed instant): a hint of no wait at all.
type pastRetry struct{}

func (pastRetry) Error() string             { return "503, retry-after already passed" }
func (pastRetry) RetryAfter() time.Duration { return -time.Second }

// holdClock is real time whose Now, once armed, blocks its first caller
// until released. A lean breaker reads the clock only at the start of
// every message, on whichever goroutine handles it, so arming it stops the
// breaker just before it applies the next message.
type holdClock struct {
	clock.Clock
	armed atomic.Pointer[hold] // not taken yet
	holds []*hold              // every hold made, for disarm; the test's goroutine alone
}

type hold struct {
	held, release chan struct{}
	once          sync.Once
}

func (h *hold) free() { h.once.Do(func() { close(h.release) }) }

// disarm drops a hold nobody took and frees every one, so that a test
// that stopped half-way cannot leave the breaker held.
func (c *holdClock) disarm() {
	c.armed.Store(nil)
	for _, h := range c.holds {
		h.free()
	}
}

func (c *holdClock) arm() *hold {
	h := &hold{held: make(chan struct{}), release: make(chan struct{})}
	c.holds = append(c.holds, h)
	c.armed.Store(h)
	return h
}

func (c *holdClock) Now() time.Time {
	if h := c.armed.Swap(nil); h != nil {
		close(h.held)
		<-h.release
	}
	return c.Clock.Now()
}

// holdingBreaker returns a lean breaker on a holdClock.
func holdingBreaker(t *testing.T, cfg Config) (*Breaker, *holdClock) {
	t.Helper()
	clk := &holdClock{Clock: clock.New()}
	cfg.Clock = clk
	b := newTestBreaker(t, cfg)
	require.True(t, b.lean())
	t.Cleanup(clk.disarm) // runs before the breaker's Close, which reads the clock
	return b, clk
}

// within waits for ch up to d and reports whether it got a value.
func within[T any](ch <-chan T, d time.Duration) (T, bool) {
	select {
	case v := <-ch:
		return v, true
	case <-time.After(d):
		var zero T
		return zero, false
	}
}

// Two goroutines fail once each on a threshold-2 breaker; otherwise G only
// reads State and asks to be admitted. In any sequential order one of the
// two failures is the second, and the goroutine that made it must see the
// circuit open: its next State is Open and its next admission refused.
//
// Design of 7e870a7 (one message per failure, budget taken before the
// send): G takes the last budget share (1 -> 0, so its failure may be sent
// without waiting) and is delayed before sending. Main's failure takes -1,
// waits, overtakes G's in the mailbox and is applied first: one
// consecutive failure, closed; main sees Closed. G sends its failure and
// returns; its State and its next admission read the still closed
// snapshot (the breaker has not got to the failure yet). Only then is G's
// failure applied, and it is the one that opens the circuit, though it
// did not wait. Both goroutines saw Closed after failing.
func TestLeanReviewOvertakenFailureOpensUnseen(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 2})

	type seen struct {
		state    State
		admitErr error
	}
	ge := newGatedErr()
	gDone := make(chan seen, 1)
	go func() {
		_ = b.Call(func() error { return ge })
		var s seen
		s.state = b.State()
		var tk *Ticket
		tk, s.admitErr = b.Admit(context.Background())
		tk.ReportAs(Ignored, nil) // no-op on a nil ticket
		gDone <- s
	}()
	<-ge.entered // G is on its way to report its failure

	mainDone := make(chan State, 1)
	go func() {
		_ = b.Call(fail)
		mainDone <- b.State()
	}()
	mainSaw, mainReturned := within(mainDone, 250*time.Millisecond)

	h := clk.arm() // stop the breaker before the next message it applies
	close(ge.gate)
	_, _ = within(h.held, 250*time.Millisecond)
	g, gReturned := within(gDone, 250*time.Millisecond)
	h.free()
	if !gReturned {
		g = <-gDone
	}
	if !mainReturned {
		mainSaw = <-mainDone
	}

	c := b.Counts()
	require.Equal(t, uint64(2), c.Failures)
	require.Equal(t, uint64(1), c.Trips, "two consecutive failures open a threshold-2 circuit")
	assert.True(t, mainSaw == Open || (g.state == Open && errors.Is(g.admitErr, ErrOpen)),
		"whichever failure came second, its goroutine must see the circuit open: "+
			"main saw %v after its failure; G saw %v, then its admission returned %v",
		mainSaw, g.state, g.admitErr)
}

// A success that Counts has shown applied comes, in every sequential
// order, before a failure that Counts did not show.
//
// Design of 7e870a7: G's call fails and G reads the successes tally as
// its mark (0), takes a budget share and is delayed before sending. Main
// succeeds (tally 1) and calls Counts, which folds the success in and
// shows Successes 1, Failures 0. G sends its failure: mark 0 < folded 1,
// so it is applied with ReportFailureBefore and leaves
// ConsecutiveFailures at 0. G fails again: 1 consecutive failure, closed.
// Every sequential order consistent with what Counts showed is
// S, Counts, F1, F2, which opens the threshold-2 circuit.
func TestLeanReviewFailureBeforeAnObservedSuccess(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	require.True(t, b.lean())

	ge := newGatedErr()
	gDone := make(chan struct{})
	go func() {
		defer close(gDone)
		_ = b.Call(func() error { return ge })
		_ = b.Call(fail)
	}()
	<-ge.entered

	mainDone := make(chan Counts, 1)
	go func() {
		_ = b.Call(succeed)
		mainDone <- b.Counts()
	}()
	seen, returned := within(mainDone, time.Second)
	close(ge.gate)
	if !returned {
		seen = <-mainDone
	}
	<-gDone
	c := b.Counts() // after both of G's failures
	require.Equal(t, uint64(2), c.Failures)
	require.Equal(t, uint64(1), c.Successes)
	if seen.Failures != 0 {
		t.Skip("G's first failure was applied before main's Counts; nothing pins the order")
	}
	require.Equal(t, uint64(1), seen.Successes)
	assert.Equal(t, Open, b.State(),
		"Counts showed the success applied and G's first failure not: G's two failures are consecutive (counts now %+v)", c)
	assert.Equal(t, uint64(1), c.Trips)
}

// One goroutine fails three times in a row on a threshold-2 breaker while
// another succeeds once. One success can come between at most two of the
// three failures, so in every sequential order two of them are adjacent
// and the circuit opens: by the end of the three calls it is open (or the
// third was already refused).
//
// Both designs lose the trip. The breaker is held just before it applies
// the second failure (the one that waits: the budget is spent), and the
// other goroutine's success lands then. At 2467726 the fold finds the
// success's sighting of the failures tally at 2, so it takes the success
// for the latest outcome: ConsecutiveFailures becomes 0 and the run of two
// that reached the threshold before it is forgotten; the third failure
// then makes a run of one. (Design of 7e870a7: both failures carry mark 0
// < folded 1 and are applied with ReportFailureBefore, with the same
// result.)
func TestLeanReviewRunNotHiddenByOneSuccess(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 2})

	require.ErrorIs(t, b.Call(fail), errBoom)        // F1: no need to wait
	require.Equal(t, uint64(1), b.Counts().Failures) // and now applied

	h := clk.arm()
	f2 := make(chan error, 1)
	go func() { f2 <- b.Call(fail) }() // F2 waits; the breaker is held before applying it
	_, held := within(h.held, time.Second)

	sDone := make(chan error, 1)
	go func() { sDone <- b.Call(succeed) }()
	_, sReturned := within(sDone, time.Second)
	h.free()
	if !sReturned {
		<-sDone
	}
	require.ErrorIs(t, <-f2, errBoom)

	refused := false
	err := b.Call(fail) // F3
	if errors.Is(err, ErrOpen) {
		refused = true
	} else {
		require.ErrorIs(t, err, errBoom)
	}
	st := b.State()
	c := b.Counts()
	t.Logf("held before F2: %v; success returned while held: %v", held, sReturned)
	assert.True(t, refused || st == Open,
		"three failures in a row of one goroutine, one success elsewhere: the circuit must have opened (state %v, counts %+v)", st, c)
	assert.Equal(t, uint64(1), c.Trips)
}

// With FailureThreshold 1 every closed-state failure opens the circuit:
// no success of another goroutine can come between a failure and itself.
// Every such failure waits, so when it returns the circuit is open.
//
// Both designs: another goroutine's success that lands in the tally
// between the failure and the breaker's fold is taken to come after it,
// and the failure is applied without extending (7e870a7:
// ReportFailureBefore) or is overwritten by (2467726: ConsecutiveFailures =
// failures after the latest success = 0) the run, so it never reaches the
// threshold. The window is the whole trip through the mailbox, so a
// stream of successes from another goroutine hits it nearly every time.
func TestLeanReviewThresholdOneAlwaysOpens(t *testing.T) {
	rounds := 1000
	if testing.Short() {
		rounds = 200
	}
	b := newTestBreaker(t, Config{FailureThreshold: 1})
	require.True(t, b.lean())
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			_ = b.Call(succeed)
		}
	})
	missed := 0
	for range rounds {
		b.Reset()
		require.ErrorIs(t, b.Call(fail), errBoom) // admitted after the Reset: not stale
		if b.State() != Open {
			missed++
		}
	}
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, missed, "of %d single failures with FailureThreshold 1, %d left the circuit closed", rounds, missed)
}

// k goroutines fail once each on a threshold-k breaker, then read State.
// In any sequential order the k-th failure opens the circuit and its
// goroutine's State after it is Open, so at least one goroutine sees Open.
// This is TestLeanReviewOvertakenFailureOpensUnseen left to the scheduler
// (it catches 7e870a7 in about one round per thousand).
func TestLeanReviewLastFailureSeesOpen(t *testing.T) {
	rounds := 2000
	if testing.Short() {
		rounds = 400
	}
	for _, k := range []int{2, 3, 4} {
		blind := 0
		for range rounds {
			b, err := NewBreaker("x", Config{FailureThreshold: k})
			require.NoError(t, err)
			var sawOpen atomic.Bool
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range k {
				wg.Go(func() {
					<-start
					_ = b.Call(fail)
					if b.State() == Open {
						sawOpen.Store(true)
					}
				})
			}
			close(start)
			wg.Wait()
			c := b.Counts()
			require.Equal(t, uint64(k), c.Failures)
			require.Equal(t, uint64(1), c.Trips)
			if !sawOpen.Load() {
				blind++
			}
			require.NoError(t, b.Close())
		}
		assert.Zero(t, blind, "threshold %d: in %d of %d rounds no goroutine saw the circuit its failures opened", k, blind, rounds)
	}
}

// A failure whose Retry-After hint is not positive (2467726 reported it
// as a message; it is now tallied) is still a failure: with
// FailureThreshold 2, it and the next failure of the same goroutine open
// the circuit.
//
// 2467726: the message applies it (ConsecutiveFailures 1), and the next
// failure, which finds the budget spent and waits, has the fold set
// ConsecutiveFailures to the failures in the snapshot's tally since its
// latest success: 1. The message's failure is forgotten; the circuit
// stays closed.
func TestLeanReviewPastRetryAfterKeepsTheRun(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	require.True(t, b.lean())
	require.Error(t, b.Call(func() error { return pastRetry{} }))
	require.Equal(t, Closed, b.State())
	require.ErrorIs(t, b.Call(fail), errBoom)
	assert.Equal(t, Open, b.State(), "two failures in a row open a threshold-2 circuit (counts %+v)", b.Counts())

	// The same after a success, and the other way round.
	b.Reset()
	require.NoError(t, b.Call(succeed))
	require.Error(t, b.Call(func() error { return pastRetry{} }))
	require.ErrorIs(t, b.Call(fail), errBoom)
	assert.Equal(t, Open, b.State(), "S, F, F opens a threshold-2 circuit (counts %+v)", b.Counts())

	b.Reset()
	require.ErrorIs(t, b.Call(fail), errBoom)
	require.Error(t, b.Call(func() error { return pastRetry{} }))
	assert.Equal(t, Open, b.State(), "F, F opens a threshold-2 circuit (counts %+v)", b.Counts())
}

// A failure whose Retry-After hint is not positive is a plain failure and
// is tallied like one, without a message: as a message sent while room is
// left, the breaker would fold, apply it, and only then put it back in the
// tally, on top of failures that took the room meanwhile, past the limit;
// the next fold would then open the circuit after all their callers had
// seen it closed.
func TestLeanReviewPastRetryAfterIsTallied(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 4})
	h := clk.arm() // taken only if the breaker's goroutine handles a message
	done := make(chan error, 1)
	go func() { done <- b.Call(func() error { return pastRetry{} }) }()
	_, held := within(h.held, 50*time.Millisecond)
	h.free()
	require.Error(t, <-done)
	require.False(t, held, "the failure went as a message")
	assert.Equal(t, uint64(1), b.Counts().ConsecutiveFailures)
}

// admitAsItCloses returns a ticket that the breaker's goroutine admitted
// in the closed state for a caller that had found the circuit half-open:
// the circuit closed between the caller's look at the snapshot and its
// admission. Under load after a recovery that is what many callers get.
// Its pass carries no snapshot, so its outcome is reported as a message.
func admitAsItCloses(t *testing.T, b *Breaker, clk *holdClock) *Ticket {
	t.Helper()
	for range 50 {
		b.Trip()
		require.Eventually(t, func() bool { return b.State() == HalfOpen }, 5*time.Second, 100*time.Microsecond)
		h := clk.arm()
		reset := make(chan struct{})
		go func() { defer close(reset); b.Reset() }() // held before it closes the circuit
		_, _ = within(h.held, time.Second)
		go func() { time.Sleep(5 * time.Millisecond); h.free() }()
		tk, err := b.Admit(context.Background()) // sees half-open, asks, queued behind the Reset
		h.free()
		<-reset
		if err == nil && tk.snap == nil && tk.permit.Probe == 0 {
			require.Equal(t, Closed, b.State())
			return tk
		}
		if err == nil {
			tk.ReportAs(Ignored, nil)
		}
	}
	t.Fatal("no admission raced with the close in 50 attempts")
	return nil
}

// A caller admitted just as the circuit closed fails; then the same
// goroutine fails twice more. Three failures in a row open a threshold-3
// circuit.
//
// 2467726: the first failure goes as a message (its pass has no snapshot)
// and sets ConsecutiveFailures to 1; the next two are tallied, and the
// fold the third one asks for sets ConsecutiveFailures to the tally's 2.
// The circuit stays closed.
func TestLeanReviewMessageFailureKeepsTheRun(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 3, RecoveryTimeout: time.Millisecond})
	tk := admitAsItCloses(t, b, clk)
	trips := b.Counts().Trips

	tk.Report(errBoom)
	require.Equal(t, Closed, b.State())
	require.ErrorIs(t, b.Call(fail), errBoom)
	require.Equal(t, Closed, b.State())
	require.ErrorIs(t, b.Call(fail), errBoom)
	c := b.Counts()
	assert.Equal(t, Open, b.State(), "three failures in a row open a threshold-3 circuit (counts %+v)", c)
	assert.Equal(t, trips+1, c.Trips)
}

// The same goroutine fails, fails, succeeds (with the ticket admitted
// just as the circuit closed) and fails: F, F, S, F never opens a
// threshold-3 circuit.
//
// 2467726: the success goes as a message and resets ConsecutiveFailures, but
// the next fold sets it from the tally alone, which has seen no success
// since the circuit closed: 3 consecutive failures, and the circuit opens
// (at the latest when Counts folds).
func TestLeanReviewMessageSuccessBreaksTheRun(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 3, RecoveryTimeout: time.Millisecond})
	tk := admitAsItCloses(t, b, clk)
	trips := b.Counts().Trips

	require.ErrorIs(t, b.Call(fail), errBoom)
	require.ErrorIs(t, b.Call(fail), errBoom)
	tk.Report(nil)
	require.ErrorIs(t, b.Call(fail), errBoom)
	c := b.Counts()
	assert.Equal(t, Closed, b.State(), "F, F, S, F must not open a threshold-3 circuit (counts %+v)", c)
	assert.Equal(t, trips, c.Trips)
	assert.Equal(t, uint64(1), c.ConsecutiveFailures)
}

// One goroutine alternates failure and success on a threshold-2 breaker
// while others add successes, ignored outcomes, tickets, Async calls and
// reads. Nothing can put two failures next to each other: it never opens.
func TestLeanReviewAlternatingNeverOpens(t *testing.T) {
	rounds := 20000
	if testing.Short() {
		rounds = 4000
	}
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	var stop atomic.Bool
	var wg sync.WaitGroup
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for w := range 3 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				switch (i + w) % 5 {
				case 0:
					assert.NoError(t, b.Call(succeed))
				case 1:
					_ = b.Call(func() error { return canceled.Err() }) // Ignored
				case 2:
					tk, err := b.Admit(context.Background())
					if assert.NoError(t, err) {
						tk.ReportAs(Ignored, nil)
					}
				case 3:
					r := <-Async(context.Background(), b, func(context.Context) (int, error) { return 1, nil })
					assert.NoError(t, r.Err)
				case 4:
					if i%64 == 4 {
						_ = b.Counts()
					} else {
						_ = b.State()
					}
				}
			}
		})
	}
	for i := range rounds {
		var err error
		switch i % 4 {
		case 0:
			err = b.Call(fail)
		case 1:
			tk, aerr := b.Admit(context.Background())
			require.NoError(t, aerr)
			tk.Report(errBoom)
			err = errBoom
		case 2:
			err = (<-Async(context.Background(), b, func(context.Context) (int, error) { return 0, errBoom })).Err
		case 3:
			func() {
				defer func() { err = errBoom; _ = recover() }()
				_ = b.Call(func() error { panic("boom") })
			}()
		}
		require.ErrorIs(t, err, errBoom, "round %d: failure, success, failure, ... must never open", i)
		require.NoError(t, b.Call(succeed), "round %d: failure, success, failure, ... must never open", i)
	}
	stop.Store(true)
	wg.Wait()
	c := b.Counts()
	assert.Zero(t, c.Trips)
	assert.Equal(t, uint64(rounds), c.Failures)
	assert.LessOrEqual(t, c.ConsecutiveFailures, uint64(1))
}

// One goroutine's own run of FailureThreshold failures opens the circuit,
// whatever mix of entry points it uses, while other goroutines add only
// ignored outcomes and reads (which cannot break a run). Its next call is
// then rejected without running.
func TestLeanReviewOwnRunOpens(t *testing.T) {
	rounds := 1500
	if testing.Short() {
		rounds = 300
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, ft := range []int{2, 3, 5} {
		b := newTestBreaker(t, Config{FailureThreshold: ft})
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					switch i % 3 {
					case 0:
						_ = b.Call(func() error { return canceled.Err() })
					case 1:
						if tk, err := b.Admit(context.Background()); err == nil {
							tk.ReportAs(Ignored, nil)
						}
					case 2:
						if i%32 == 2 {
							_ = b.Counts()
						} else {
							_ = b.State()
						}
					}
				}
			})
		}
		rng := rand.New(rand.NewPCG(uint64(ft), 7))
		for r := range rounds {
			b.Reset()
			for i := range ft {
				require.Equal(t, Closed, b.State(), "threshold %d, round %d: closed before failure %d", ft, r, i+1)
				switch rng.IntN(4) {
				case 0:
					require.ErrorIs(t, b.Call(fail), errBoom)
				case 1:
					tk, err := b.Admit(context.Background())
					require.NoError(t, err)
					tk.Report(errBoom)
				case 2:
					res := <-Async(context.Background(), b, func(context.Context) (int, error) { return 0, errBoom })
					require.ErrorIs(t, res.Err, errBoom)
				case 3:
					func() {
						defer func() { _ = recover() }()
						_ = b.Call(func() error { panic("boom") })
					}()
				}
			}
			require.Equal(t, Open, b.State(), "threshold %d, round %d: a run of %d failures opens", ft, r, ft)
			ran := false
			require.ErrorIs(t, b.Call(func() error { ran = true; return nil }), ErrOpen)
			require.False(t, ran)
		}
		stop.Store(true)
		wg.Wait()
		c := b.Counts()
		assert.Equal(t, uint64(rounds), c.Trips, "threshold %d", ft)
		assert.Equal(t, uint64(rounds*ft), c.Failures, "threshold %d", ft)
	}
}

// Many goroutines mix every entry point and outcome while another resets,
// trips, isolates and force-opens the breaker, on real time with a short
// recovery. Afterwards every admitted call is counted once, rejections
// add up, transitions come in order along legal edges, each goroutine's
// failures were in Counts as soon as they returned, and once everything
// is applied one goroutine's failures open the circuit exactly at the
// threshold.
func TestLeanReviewChaos(t *testing.T) {
	workers, calls := 8, 2000
	if testing.Short() {
		calls = 400
	}
	const ft = 3
	b, err := NewBreaker("chaos", Config{
		FailureThreshold: ft,
		RecoveryTimeout:  100 * time.Microsecond,
		HalfOpenProbes:   2,
		ProbeLease:       time.Hour, // no reclaims: every probe is reported
		SubscriberBuffer: 1 << 20,
	})
	require.NoError(t, err)
	require.True(t, b.lean())
	sub := b.Subscribe(t.Context())

	var admitted, rejected atomic.Uint64
	var stop atomic.Bool
	var ctl sync.WaitGroup
	ctl.Go(func() {
		rng := rand.New(rand.NewPCG(99, 1))
		for !stop.Load() {
			switch rng.IntN(5) {
			case 0:
				b.Reset()
			case 1:
				b.Trip()
			case 2:
				b.Isolate()
				time.Sleep(50 * time.Microsecond)
				b.Reset()
			case 3:
				b.ForceOpen(time.Now().Add(200*time.Microsecond), "remote trip")
			case 4:
				_ = b.Counts()
			}
			time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
		}
	})

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			var mine uint64 // failures this goroutine reported (any state)
			for done := 0; done < calls; {
				roll := rng.IntN(100)
				var outcome error
				switch {
				case roll < 30:
					outcome = errBoom
				case roll < 35:
					outcome = context.Canceled
				}
				admittedNow := true
				switch rng.IntN(4) {
				case 0:
					err := b.Call(func() error { return outcome })
					admittedNow = !errors.Is(err, ErrOpen)
				case 1:
					tk, err := b.Admit(context.Background())
					if err != nil {
						admittedNow = false
						break
					}
					tk.Report(outcome)
				case 2:
					r := <-Async(context.Background(), b, func(context.Context) (int, error) { return 0, outcome })
					admittedNow = !errors.Is(r.Err, ErrOpen)
				case 3:
					if outcome == errBoom {
						func() {
							defer func() { _ = recover() }()
							err := b.Call(func() error { panic("boom") })
							admittedNow = !errors.Is(err, ErrOpen) // only reached if rejected
						}()
					} else {
						err := b.Call(func() error { return outcome })
						admittedNow = !errors.Is(err, ErrOpen)
					}
				}
				if !admittedNow {
					rejected.Add(1)
					time.Sleep(20 * time.Microsecond) // let the recovery come
					continue
				}
				done++
				admitted.Add(1)
				if outcome == errBoom {
					mine++
					if done%16 == 0 {
						c := b.Counts()
						assert.GreaterOrEqual(t, c.Failures+c.Stale, mine, "a returned failure is in Counts")
					}
				}
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	ctl.Wait()

	c := b.Counts()
	assert.Equal(t, admitted.Load(), c.Successes+c.Failures+c.Ignored+c.Stale-c.Reclaimed, "every admitted call is counted once")
	assert.Zero(t, c.Reclaimed)
	assert.Equal(t, rejected.Load(), c.Rejected)
	assert.Positive(t, c.Trips)
	t.Logf("admitted %d, rejected %d, counts %+v", admitted.Load(), rejected.Load(), c)

	// Quiet now: bring it back closed and let several goroutines mix
	// failures into their successes (which seldom trips it), then check at
	// rest that one goroutine's run opens it exactly at the threshold.
	b.Reset()
	var fw sync.WaitGroup
	for w := range 4 {
		fw.Go(func() {
			for j := range 50 {
				if (j+w)%3 != 0 {
					_ = b.Call(succeed)
				} else {
					_ = b.Call(fail)
				}
			}
		})
	}
	fw.Wait()
	q := b.Counts() // everything queued is applied
	if b.State() == Closed {
		// Whatever the concurrent failures left of the budget, one
		// goroutine's failures up to the threshold open the circuit, the
		// last one before it returns, and none before.
		for i := q.ConsecutiveFailures; i < ft; i++ {
			require.Equal(t, Closed, b.State(), "at rest with counts %+v, before failure %d", q, i+1)
			require.ErrorIs(t, b.Call(fail), errBoom)
		}
		assert.Equal(t, Open, b.State(), "at rest with counts %+v, the run reaches the threshold", q)
	}

	require.NoError(t, b.Close())
	legal := map[[2]State]bool{
		{Closed, Open}: true, {Open, HalfOpen}: true, {HalfOpen, Open}: true, {HalfOpen, Closed}: true, {Open, Closed}: true,
	}
	var last uint64
	prev := Closed
	for tr := range sub {
		require.Zero(t, tr.Missed)
		require.Equal(t, last+1, tr.Seq, "no gaps, no reordering")
		require.True(t, legal[[2]State{tr.From, tr.To}], "illegal edge %v -> %v", tr.From, tr.To)
		require.Equal(t, prev, tr.From)
		last, prev = tr.Seq, tr.To
	}
	assert.Positive(t, last)
}

// Failures sent without waiting by many goroutines, through every entry
// point, are all applied by Close, and by Engine.Close for every breaker.
func TestLeanReviewCloseAppliesEveryReturnedFailure(t *testing.T) {
	rounds := 200
	if testing.Short() {
		rounds = 60
	}
	const workers, each = 4, 6
	fails := func(b *Breaker, w int) {
		for j := range each {
			switch (j + w) % 3 {
			case 0:
				_ = b.Call(fail)
			case 1:
				if tk, err := b.Admit(context.Background()); err == nil {
					tk.Report(errBoom)
				}
			case 2:
				<-Async(context.Background(), b, func(context.Context) (int, error) { return 0, errBoom })
			}
		}
	}
	for range rounds {
		b, err := NewBreaker("x", Config{FailureThreshold: 1000})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { fails(b, w) })
		}
		wg.Wait()
		require.NoError(t, b.Close())
		assert.Equal(t, uint64(workers*each), b.Counts().Failures)
	}
	for range rounds {
		e, err := New(Config{FailureThreshold: 1000})
		require.NoError(t, err)
		names := []string{"a", "b", "c"}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for _, n := range names {
					fails(e.Breaker(n), w)
				}
			})
		}
		wg.Wait()
		bs := make([]*Breaker, len(names))
		for i, n := range names {
			bs[i] = e.Breaker(n)
		}
		require.NoError(t, e.Close())
		for i, b := range bs {
			assert.Equal(t, uint64(workers*each), b.Counts().Failures, "breaker %s", names[i])
		}
	}
}

// Stale failures (admitted before a Reset or trip) must never count in the
// new closed period, neither to open it nor to take from what the new
// period's own failures may run up to.
func TestLeanReviewStaleFailuresAcrossResets(t *testing.T) {
	rounds := 3000
	if testing.Short() {
		rounds = 600
	}
	const ft = 3
	b := newTestBreaker(t, Config{FailureThreshold: ft})
	for r := range rounds {
		var tks []*Ticket
		for range 2 * ft {
			tk, err := b.Admit(context.Background())
			require.NoError(t, err)
			tks = append(tks, tk)
		}
		if r%2 == 0 {
			b.Trip()
		}
		b.Reset()
		var wg sync.WaitGroup
		for _, tk := range tks {
			wg.Go(func() { tk.Report(errBoom) })
		}
		// Meanwhile this goroutine's own run on the new period.
		for i := range ft - 1 {
			require.ErrorIs(t, b.Call(fail), errBoom)
			require.Equal(t, Closed, b.State(), "round %d: stale failures must not add to the run (after %d)", r, i+1)
		}
		wg.Wait()
		c := b.Counts()
		require.Equal(t, Closed, b.State(), "round %d", r)
		require.Equal(t, uint64(ft-1), c.ConsecutiveFailures, "round %d", r)
		require.ErrorIs(t, b.Call(fail), errBoom)
		require.Equal(t, Open, b.State(), "round %d: the run reaches the threshold", r)
		b.Reset()
	}
}

// A caller admitted just as the circuit closed succeeds (its success goes
// as a message, without waiting), then the same goroutine fails twice:
// S, F, F opens a threshold-2 circuit, and the second failure returns with
// the circuit open.
//
// Current code: the success's message is sent without waiting, so the
// caller goes on before the breaker has applied it. Its first failure
// takes a place in the tally; the breaker, on reaching the success's
// message, folds that failure in first (ConsecutiveFailures 1), then
// applies the success as the latest outcome (ConsecutiveFailures 0):
// the failure that came after the success is counted before it. The
// second failure finds no room, waits and makes a run of one. The circuit
// stays closed, and the goroutine's next call runs. The clock is held at
// the start of the breaker's next message only to make the usual
// interleaving (the breaker's goroutine waking up after the caller went
// on) happen every time.
func TestLeanReviewMessageSuccessDoesNotWait(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 2, RecoveryTimeout: time.Millisecond})
	tk := admitAsItCloses(t, b, clk)
	trips := b.Counts().Trips

	h := clk.arm() // the breaker stops before it applies the next message
	sDone := make(chan struct{})
	go func() { defer close(sDone); tk.Report(nil) }() // S
	_, held := within(h.held, time.Second)
	_, sReturned := within(sDone, 250*time.Millisecond)
	var f1 error
	if sReturned {
		f1 = b.Call(fail) // F1, while the success is not applied yet
		h.free()
	} else {
		h.free() // S waits until applied: F1 comes after it
		<-sDone
		f1 = b.Call(fail)
	}
	require.ErrorIs(t, f1, errBoom)
	require.ErrorIs(t, b.Call(fail), errBoom) // F2
	st := b.State()
	ran := false
	err := b.Call(func() error { ran = true; return nil })
	c := b.Counts()
	t.Logf("breaker held before it applied the success: %v; success returned while held: %v", held, sReturned)
	assert.Equal(t, Open, st, "S, F, F of one goroutine opens a threshold-2 circuit (counts %+v)", c)
	assert.ErrorIs(t, err, ErrOpen, "the call after S, F, F is rejected")
	assert.False(t, ran, "the call after S, F, F must not run")
	assert.Equal(t, trips+1, c.Trips)
}

// Four failures take all the room a threshold-5 circuit has; a success
// ends their run. Y and X fail while no room is left, so both go as
// messages, and X waits in the mailbox while Y is applied. Y leaves room
// for three more failures, and the breaker publishes it. Then, while the
// breaker gets to X, main fails three times. Y, X and main's three are
// five failures in a row after the success: in every sequential order the
// fifth opens the circuit, so once they have all returned it is open.
//
// 073ee39: X was applied as if no failure had been tallied since the fold
// before it, and then put in the tally, on top of main's three, which had
// taken the room X was using. Main's three returned without waiting; the
// next fold (Counts) found five in a row and opened the circuit, after
// every caller saw it closed. (The breaker then read X's Retry-After hint
// while applying it, which let the test hold it there; it reads the hint
// once now, as the caller reports, so main's three may land before X or
// after it, and the outcome must be the same.)
func TestLeanReviewMessageFailureOvertakenByTallies(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 5})
	for range 4 {
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	require.NoError(t, b.Call(succeed))

	h := clk.arm()
	yDone, xDone := make(chan error, 1), make(chan error, 1)
	go func() { yDone <- b.Call(fail) }()
	_, held := within(h.held, 5*time.Second)
	require.True(t, held, "Y found no room and went as a message")
	go func() { xDone <- b.Call(fail) }()
	h2 := clk.arm() // taken when the breaker gets to X, if X goes as a message
	h.free()
	_, _ = within(h2.held, 250*time.Millisecond)
	var mainErrs [3]error
	mainDone := make(chan struct{})
	go func() { // main's three; bounded below, since one may queue behind a held X
		defer close(mainDone)
		for i := range mainErrs {
			mainErrs[i] = b.Call(fail)
		}
	}()
	_, _ = within(mainDone, 250*time.Millisecond)
	h2.free()
	<-mainDone
	for _, err := range mainErrs {
		require.ErrorIs(t, err, errBoom)
	}
	require.ErrorIs(t, <-yDone, errBoom)
	require.ErrorIs(t, <-xDone, errBoom)

	assert.Equal(t, Open, b.State(), "five failures in a row have returned: the circuit is open (counts %+v)", b.Counts())
}

// An Outcome other than the three constants (ReportAs takes any value, and
// a Classify can return one) counts as a failure, so on a threshold-1
// breaker it opens the circuit, and its caller must see that.
//
// dd0a286: the machine applied it as a failure, but Breaker.report took it
// for a quiet outcome and sent it without waiting: the circuit opened after
// its caller returned and saw it closed. The breaker is held at the start
// of its next message only to make that interleaving happen every time.
func TestLeanReviewUnknownOutcomeWaitsAsAFailure(t *testing.T) {
	b, clk := holdingBreaker(t, Config{FailureThreshold: 1})
	tk, err := b.Admit(t.Context())
	require.NoError(t, err)

	h := clk.arm()
	done := make(chan State, 1)
	go func() {
		tk.ReportAs(Outcome(3), errBoom)
		done <- b.State()
	}()
	_, held := within(h.held, 5*time.Second)
	seen, returned := within(done, 250*time.Millisecond)
	h.free()
	if !returned {
		seen = <-done
	}
	c := b.Counts()
	t.Logf("held: %v, returned while held: %v", held, returned)
	require.Equal(t, uint64(1), c.Trips, "the machine applied it as a failure")
	assert.Equal(t, Open, seen, "the outcome that opened the circuit must have waited for it")
}

// G2 succeeds, reads State and calls again while the breaker decides
// whether a failure F2 opens the circuit (here ShouldTrip decides: two
// failures in a row; it is held while G2 goes). Either G2's success counts
// before F2 (then F1, S, F2 is no run of two: no trip, nothing stale), or
// it comes after the trip, and then G2 saw the circuit open and its next
// call was refused.
//
// 34c8852: G2's success was tallied, G2 saw Closed and its next call ran,
// and then F2 opened the circuit and both of G2's outcomes were counted
// stale. Now the breaker, before it applies a message that may open the
// circuit, folds the tallies and retires them: G2's success, refused,
// waits for the decision.
func TestLeanReviewSuccessTalliedWhileAFailureTrips(t *testing.T) {
	cfg, entered, release := heldDecider(t, Config{})
	b := newTestBreaker(t, cfg)

	require.ErrorIs(t, b.Call(fail), errBoom) // F1
	f2Done := make(chan error, 1)
	go func() { f2Done <- b.Call(fail) }()
	_, held := within(entered, 5*time.Second)
	require.True(t, held, "the breaker is deciding on F2")

	g2SeesTheDecision(t, b, func() { _ = b.Call(succeed) }, release, f2Done)
}

// flipRetry is a failure whose Retry-After hint changes between reads:
// none on the first, a minute on later ones. Any hint computed from
// changing state (a shared rate limiter's reset time, a header re-read
// from a mutable response) can behave so.
type flipRetry struct{ calls atomic.Int32 }

func (e *flipRetry) Error() string { return "429" }

func (e *flipRetry) RetryAfter() time.Duration {
	if e.calls.Add(1) == 1 {
		return 0
	}
	return time.Minute
}

// The breaker reads a failure's hint once, as the caller reports it, and
// decides on that value throughout: a hint that changes between reads
// must not let the failure trip the circuit past the seal, which is taken
// only before a failure that may open it
// (TestLeanReviewSuccessTalliedWhileAFailureTrips).
//
// 34c8852: Machine.mayOpen read no hint and said the failure could not open
// the circuit, so nothing was sealed; checkTrip read a minute and tripped.
func TestLeanReviewRetryAfterIsReadOnce(t *testing.T) {
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.9, WindowSize: 100, MinimumCalls: 1})
	for range 10 {
		require.NoError(t, b.Call(succeed))
	}
	f := &flipRetry{}
	require.Error(t, b.Call(func() error { return f }))
	assert.Equal(t, int32(1), f.calls.Load(), "the hint is read once")
	assert.Zero(t, b.Counts().Trips, "with no hint, one failure in eleven opens nothing")
}

// 38c58fa: a tally refused by a snapshot that had been replaced was sent
// without waiting, on the ground that "the caller sees what replaced it".
// But what replaced it may be sealed already, by a message the breaker is
// deciding on: the outcome is then queued behind that message.
//
//	G2 is admitted (a Ticket) under snapshot s1
//	F1 fails: ShouldTrip is set, so the breaker seals s1, asks (1
//	   consecutive failure: no), and replaces s1 with s2, same generation
//	F2 fails: the breaker seals s2 and is held inside ShouldTrip
//	G2 reports a success: s1's tally refuses it; the current snapshot (s2)
//	   is not s1, so the success is sent without waiting, behind F2.
//	   G2 reads State = Closed (s2 is sealed, not replaced) and is admitted
//	F2's ShouldTrip returns true: open; G2's success is applied after it,
//	   as stale.
//
// As in TestLeanReviewSuccessTalliedWhileAFailureTrips, G2 saw the circuit
// closed after its success, which counted as coming after the trip (and
// would have broken the run that tripped it).
func TestLeanReviewRefusedTallyBehindTheNextSeal(t *testing.T) {
	cfg, entered, release := heldDecider(t, Config{})
	b := newTestBreaker(t, cfg)

	tk, err := b.Admit(context.Background()) // G2's call, under s1
	require.NoError(t, err)
	s1 := b.snap.Load()
	require.ErrorIs(t, b.Call(fail), errBoom) // F1: seals s1, no trip
	require.NotSame(t, s1, b.snap.Load(), "F1 replaced the sealed snapshot")

	f2Done := make(chan error, 1)
	go func() { f2Done <- b.Call(fail) }()
	_, held := within(entered, 5*time.Second)
	require.True(t, held, "the breaker is deciding on F2")

	g2SeesTheDecision(t, b, func() { tk.Report(nil) }, release, f2Done)
}

// heldDecider returns cfg with a ShouldTrip that opens the circuit on two
// failures in a row, and that holds the breaker, while it decides on the
// second failure it is asked about (F2), until release is called (at the
// latest when the test ends). entered is closed once it holds.
func heldDecider(t *testing.T, cfg Config) (_ Config, entered <-chan struct{}, release func()) {
	in, gate := make(chan struct{}), make(chan struct{})
	var asked atomic.Int32
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	cfg.ShouldTrip = func(c Counts) bool {
		if asked.Add(1) == 2 {
			close(in)
			<-gate
		}
		return c.ConsecutiveFailures >= 2
	}
	return cfg, in, release
}

// g2SeesTheDecision runs G2 (success, then State, then another call) while
// the breaker is held deciding F2, releases it, and checks that what G2
// saw agrees with a sequential order: either G2's outcomes came before F2
// (then F1, S, F2 is no run of two: no trip, nothing stale), or G2's
// success came after the trip, and then G2 saw it and its next call was
// refused.
func g2SeesTheDecision(t *testing.T, b *Breaker, success func(), release func(), f2Done <-chan error) {
	t.Helper()
	type seen struct {
		state State
		err   error
	}
	g2 := make(chan seen, 1)
	go func() {
		success()
		s := seen{state: b.State()}
		s.err = b.Call(succeed)
		g2 <- s
	}()
	saw, returned := within(g2, 100*time.Millisecond)
	release()
	require.ErrorIs(t, <-f2Done, errBoom)
	if !returned {
		saw = <-g2
	}
	c := b.Counts()
	if c.Trips == 0 {
		assert.Zero(t, c.Stale, "no trip: G2's outcomes count")
		assert.Equal(t, uint64(2), c.Successes)
		return
	}
	assert.Equal(t, Open, saw.state, "G2's success came after the trip, so G2 must see it (counts %+v)", c)
	assert.ErrorIs(t, saw.err, ErrOpen, "and G2's next call must be refused")
}
