package engine

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readHoldClock is a mock clock whose Now, once armed, reads the time and
// then blocks its first caller until released: the caller was preempted
// right after it read the clock.
type readHoldClock struct {
	*clock.Mock
	armed atomic.Pointer[hold]
}

func (c *readHoldClock) arm() *hold {
	h := &hold{held: make(chan struct{}), release: make(chan struct{})}
	c.armed.Store(h)
	return h
}

func (c *readHoldClock) Now() time.Time {
	t := c.Mock.Now()
	if h := c.armed.Swap(nil); h != nil {
		close(h.held)
		<-h.release
	}
	return t
}

// A time-window breaker (4 buckets of 1 s, 50%, MinimumCalls 3).
//
//	t=0.5  4 successes        t=1.5  2 failures   (2 of 6: closed)
//	t=2.5  3 successes        t=4.5  Counts       (window {1..4}: 2 of 5)
//	t=4.5  S ends (reads the clock), is preempted
//	t=6.5  F fails; the breaker folds, adds F to bucket 6 (which reuses
//	       bucket 2's slot), and reads F's hint
//	       S resumes: the snapshot of bucket 4 is still current, S tallies
//	       there and returns; its goroutine sees Closed
//	       F's check: window {3..6} holds F alone, short of MinimumCalls
//	       publish: new snapshot for bucket 6; the retired fold puts S in
//	       bucket 4 and checks the window *at 4.5*, from which bucket 2's
//	       three successes are gone (their slot holds bucket 6): 2 of 3,
//	       67% >= 50%, and the circuit opens.
//
// In every sequential order: S at 4.5 sees {1..4} = 2 failures of 6; F at
// 6.5 sees {3..6} = S and F, 2 calls, short of MinimumCalls (and if S is
// taken to end at 6.5, the same). Nothing opens the circuit. The trip is
// made while folding S, a success that did not wait, against a window
// that never existed at any time.
//
// c7c1868: exactly that. Now a folded tally is not checked at all: it was
// taken only where a success could not trip the circuit.
func TestWindowReviewLateTallyIsNotJudgedOnAReusedBucket(t *testing.T) {
	mock := clock.NewMock()
	base := time.Unix(1_700_000_000, 0) // a multiple of 4 s: bucket k is base + k s
	mock.Set(base.Add(500 * time.Millisecond))
	clk := &readHoldClock{Mock: mock}
	b := newTestBreaker(t, Config{
		FailureRateThreshold: 0.5, WindowDuration: 4 * time.Second, WindowBuckets: 4, MinimumCalls: 3,
		Clock: clk,
	})
	require.True(t, b.timed() && b.rate && !b.lean)
	sub := b.Subscribe(t.Context())
	at := func(d time.Duration) { mock.Set(base.Add(d)) }

	for range 4 {
		require.NoError(t, b.Call(succeed))
	}
	at(1500 * time.Millisecond)
	for range 2 {
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	at(2500 * time.Millisecond)
	for range 3 {
		require.NoError(t, b.Call(succeed))
	}
	at(4500 * time.Millisecond)
	c := b.Counts()
	require.Equal(t, uint64(5), c.WindowCalls)
	require.Equal(t, uint64(2), c.WindowFailures)
	require.False(t, b.snap.Load().mayTrip.Load(), "2 of 6 with one more success: successes tally")

	// S ends at 4.5 and is preempted right after reading the clock.
	h := clk.arm()
	sDone := make(chan State, 1)
	go func() {
		require.NoError(t, b.Call(succeed))
		sDone <- b.State()
	}()
	<-h.held

	// F at 6.5: the breaker stops in F's hint, after F is in the window.
	at(6500 * time.Millisecond)
	f := newGatedErr() // a non-lean caller never reads the hint: the breaker's goroutine does, in checkTrip
	fDone := make(chan error, 1)
	go func() { fDone <- b.Call(func() error { return f }) }()
	_, entered := within(f.entered, 5*time.Second)
	require.True(t, entered)

	h.free()
	sSaw, sReturned := within(sDone, 5*time.Second)
	close(f.gate)
	require.Error(t, <-fDone)
	fSaw := b.State() // before any other message
	var tr Transition
	select {
	case tr = <-sub: // published before F's reply
	default:
	}
	fAdmitted := false
	if tk, err := b.Admit(t.Context()); err == nil {
		fAdmitted = true
		tk.ReportAs(Ignored, nil)
	}
	if !sReturned {
		sSaw = <-sDone
	}
	c = b.Counts()
	t.Logf("S returned while F was being applied: %v, then saw %v; F then saw %v", sReturned, sSaw, fSaw)
	assert.Equal(t, uint64(8), c.Successes)
	assert.Equal(t, Closed, b.State(), "no sequential order opens the circuit")
	if !assert.Zero(t, c.Trips, "no sequential order opens the circuit") {
		t.Logf("transition %v -> %v at %v: %s", tr.From, tr.To, tr.At.Sub(base), tr.Reason)
	}
	if tr.To == Open {
		// And the snapshot published with it still shows the old closed
		// generation: F's own caller, and any subscriber, finds Closed
		// and is admitted after the circuit opened.
		assert.Equal(t, Open, fSaw, "State after the transition to Open was handed out")
		assert.False(t, fAdmitted, "a call admitted after the transition to Open was handed out")
	}
}

// TestLeanReviewSuccessTalliedWhileAFailureTrips, on a time-based window
// without a rate policy, with G2's success ending in the bucket after the
// current snapshot's.
//
//	t=0.5  F1 fails (ShouldTrip: 1 consecutive, no)
//	t=1.5  F2 fails; the breaker folds, seals the bucket-0 snapshot (ShouldTrip
//	       is set, so mayOpen says yes) and is held inside ShouldTrip
//	       G2 succeeds: report re-picks the current (sealed) snapshot, finds
//	       1.5 outside its bucket, s = nil, and with no rate policy the
//	       success is quiet: sent without waiting, before the refused-tally
//	       check (which needs s != nil) can make it wait. G2 returns, reads
//	       State = Closed, and is admitted again.
//	       F2's ShouldTrip returns true: open. G2's successes are then
//	       applied after the trip, as stale.
//
// G2 saw the circuit closed after its success, yet its success counted as
// coming after the trip: the order the seal exists to rule out. That was
// so at 38c58fa; now an outcome that cannot be tallied waits unless its
// generation is over.
func TestWindowReviewSuccessOutsideTheBucketWhileAFailureTrips(t *testing.T) {
	mock := clock.NewMock()
	mock.Set(time.Unix(1000, int64(500*time.Millisecond)))
	cfg, entered, release := heldDecider(t, Config{Clock: mock, WindowDuration: 4 * time.Second, WindowBuckets: 4})
	b := newTestBreaker(t, cfg)
	require.True(t, b.timed())
	require.False(t, b.rate)

	require.ErrorIs(t, b.Call(fail), errBoom) // F1
	mock.Add(time.Second)                     // t=1.5: the next bucket; the snapshot is still bucket 0's
	f2Done := make(chan error, 1)
	go func() { f2Done <- b.Call(fail) }()
	_, held := within(entered, 5*time.Second)
	require.True(t, held, "the breaker is deciding on F2")

	g2SeesTheDecision(t, b, func() { _ = b.Call(succeed) }, release, f2Done)
}
