package engine

import (
	"context"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A time-window breaker (4 buckets of 1 s, 50%, MinimumCalls 3).
//
//	t=0.5  4 successes        t=1.5  2 failures   (2 of 6: closed)
//	t=2.5  3 successes        t=4.5  Counts       (window {1..4}: 2 of 5)
//	t=4.5  S ends (reads the clock), is preempted
//	t=6.5  F fails; the breaker folds and adds F to bucket 6 (which reuses
//	       bucket 2's slot); before it publishes,
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
// taken only where a success could not trip the circuit. And since
// failures tally under a time-based window too, a message in a later
// bucket seals the old bucket's snapshot before it is decided, so S's
// tally is refused and S waits behind F.
func TestWindowReviewLateTallyIsNotJudgedOnAReusedBucket(t *testing.T) {
	mock := clock.NewMock()
	base := time.Unix(1_700_000_000, 0) // a multiple of 4 s: bucket k is base + k s
	mock.Set(base.Add(500 * time.Millisecond))
	b := newTestBreaker(t, Config{
		FailureRateThreshold: 0.5, WindowDuration: 4 * time.Second, WindowBuckets: 4, MinimumCalls: 3,
		Clock: mock,
	})
	require.True(t, b.timed() && b.rate)
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
	s4 := b.snap.Load()
	require.False(t, s4.mayTrip(), "2 of 6 with one more success: successes tally")

	// The breaker has no hook between applying F and publishing, so this
	// goroutine takes its steps for it, with nothing else running it.
	require.True(t, b.act.Idle())
	at(6500 * time.Millisecond)
	now := mock.Now()
	b.settle(now)                                                // what starts F's message
	b.m.report(now, Permit{Gen: s4.gen}, Failure, errBoom, 0, 0) // F, in bucket 6 (bucket 2's slot)
	tallied := s4.tally(Success)                                 // S, ended at 4.5, meanwhile
	b.publish(now)                                               // bucket 6's snapshot
	if !tallied {
		// S finds its snapshot retired and reports as a message.
		m := b.newMsg(mReport)
		m.permit, m.outcome = Permit{Gen: s4.gen}, Success
		_, err := b.ask(context.Background(), m)
		require.NoError(t, err)
	}

	c = b.Counts()
	assert.Equal(t, uint64(8), c.Successes)
	assert.Zero(t, c.Trips, "no sequential order opens the circuit")
	assert.Equal(t, Closed, b.State())
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

// A wall clock stepped back by a multiple of the window (an NTP step; the
// scenario of TestMachineTimeWindowAfterTheClockStepsBack), then a metrics
// scrape, then failures. One goroutine, a clock.Mock, no concurrency.
//
//	t0+0..9 s  10 successes, one per 1 s bucket (every slot now holds a
//	           bucket of [t0, t0+10))
//	t0-60 s    the clock steps back. Counts (a scrape) is a message in a new
//	           bucket: settle seals the old snapshot and publish makes one
//	           for bucket t0-60, whose slot still holds bucket t0. The window
//	           at t0-60 sees nothing (every slot holds a newer bucket), so
//	           failureRoom is 2 (3 of MinimumCalls 5 would reach 50%).
//	           F1, F2 are tallied. F3 finds no room: the owner folds F1 and
//	           F2 with window.addTallied, which drops them because the slot
//	           holds a newer bucket; F3 is then applied live (Machine.report
//	           takes the slot) and the window holds F3 alone. F4 is tallied
//	           and F5 is a message: 3 failures of 3 calls, short of
//	           MinimumCalls: closed.
//
// A Machine fed the same five failures at the same time opens at F5 (5 of
// 5): every live report takes the slot. So tallied failures, which the room
// promised would count, count in no bucket: the single-goroutine
// consistency guarantee (1) breaks, and the circuit stays closed where
// every linearization opens it (2). Before failures tallied under a
// time-based window the breaker was not lean, and every failure was
// applied live. Found in review of that change: now a snapshot whose
// bucket's slot holds a newer bucket takes no tallies, and outcomes go
// live until one takes the slot. (Successes were dropped the same way
// before: the last step checks them too.)
func TestWindowReviewClockStepBackKeepsTalliedOutcomes(t *testing.T) {
	rate := Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 5}
	t0 := time.Unix(1_700_000_000, 0) // a multiple of 10 s
	m, b, now := clockStepBack(t, rate, t0, t0.Add(-time.Minute), fail, 5)
	require.True(t, b.lean() && b.timed())
	require.Equal(t, Open, m.State(), "the machine: 5 failures in 5 calls after the clock stepped back")
	c := b.Counts()
	assert.Equal(t, uint64(5), c.Failures)
	assert.Equal(t, m.Counts(now).WindowFailures, c.WindowFailures, "every failure counts in the window")
	assert.Equal(t, Open, b.State(), "the breaker must agree with the machine fed the same outcomes")

	// Successes, on a breaker whose window has no rate policy, so that
	// they tally (under one, an empty window keeps them waiting).
	noRate := Config{FailureThreshold: 100, WindowDuration: 10 * time.Second, WindowBuckets: 10}
	m, b, now = clockStepBack(t, noRate, t0, t0.Add(-time.Minute), succeed, 3)
	assert.Equal(t, m.Counts(now).WindowCalls, b.Counts().WindowCalls, "every success counts in the window")
}

// clockStepBack feeds a breaker with cfg and a Machine the same calls: 10
// successes from t0 on, one per second; then, with the clock set back to
// back (whose slot then holds a newer bucket), a Counts (a metrics
// scrape) and n calls of work. It returns both,
// and the time the last calls were made at.
func clockStepBack(t *testing.T, cfg Config, t0, back time.Time, work func() error, n int) (*Machine, *Breaker, time.Time) {
	t.Helper()
	m, err := NewMachine("m", cfg)
	require.NoError(t, err)
	mock := clock.NewMock()
	cfg.Clock = mock
	b := newTestBreaker(t, cfg)
	call := func(work func() error) {
		now := mock.Now()
		p, err := m.Admit(now)
		if err == nil {
			m.Report(now, p, m.cfg.Classify(work()), nil, 0)
		}
		_ = b.Call(work)
	}
	for i := range 10 {
		mock.Set(t0.Add(time.Duration(i) * time.Second))
		call(succeed)
	}
	mock.Set(back)
	_ = b.Counts()
	require.False(t, b.snap.Load().within(back.UnixNano()), "a snapshot whose slot holds a newer bucket takes no tallies")
	for range n {
		call(work)
	}
	return m, b, back
}

// TestWindowReviewClockStepBackKeepsTalliedOutcomes, with the clock
// stepped back into the first bucket after the Unix epoch, where a
// clock.NewMock starts. At 6017e54 newSnapshot marked a snapshot that must
// take no tallies with bucketEnd = bucketStart, which is 0 there: and
// within reads bucketEnd == 0 as "no time-based window", so the snapshot
// took every tally, folded them into a slot that holds a newer bucket
// (they counted in no bucket), and was never replaced by a later bucket
// either. Now the snapshot says so with a flag of its own.
func TestWindowReviewClockStepBackToTheEpochBucket(t *testing.T) {
	cfg := Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 5}
	back := time.Unix(0, int64(500*time.Millisecond)) // bucket 0, whose slot holds bucket 10
	m, b, now := clockStepBack(t, cfg, time.Unix(10, 0), back, fail, 5)
	require.Equal(t, Open, m.State(), "the machine: 5 failures in 5 calls after the clock stepped back")
	c := b.Counts()
	assert.Equal(t, uint64(5), c.Failures)
	assert.Equal(t, m.Counts(now).WindowFailures, c.WindowFailures, "every failure counts in the window")
	assert.Equal(t, Open, b.State(), "the breaker must agree with the machine fed the same outcomes")
}
