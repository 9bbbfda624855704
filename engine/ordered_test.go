package engine

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A breaker with a count-based window tallies the failures that cannot
// open it, each with its place among the successes (see
// Breaker.orderedFailure). These tests pin what that must keep.

// A failure with room is tallied: it takes a record, and the snapshot
// stays. The first failure of a clean window has no records to take, and
// waits.
func TestOrderedFailureTallies(t *testing.T) {
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.5, WindowSize: 100, MinimumCalls: 10})
	require.True(t, b.ordered())
	for range 20 {
		require.NoError(t, b.Call(succeed))
	}
	require.Nil(t, b.snap.Load().recs, "no failure yet: no records")
	require.ErrorIs(t, b.Call(fail), errBoom)
	s := b.snap.Load()
	require.NotNil(t, s.recs, "a failure in the window: records")
	require.ErrorIs(t, b.Call(fail), errBoom)
	require.NoError(t, b.Call(succeed))
	require.ErrorIs(t, b.Call(fail), errBoom)
	assert.Same(t, s, b.snap.Load(), "tallied: no message replaced the snapshot")
	// Each record holds the successes of this snapshot's tally its failure
	// saw, plus one.
	assert.Equal(t, uint64(0+1), (*s.recs)[0].Load())
	assert.Equal(t, uint64(1+1), (*s.recs)[1].Load())
	assert.Zero(t, (*s.recs)[2].Load())
	c := b.Counts()
	assert.Equal(t, uint64(3), c.Failures)
	assert.Equal(t, uint64(24), c.WindowCalls)
	assert.Equal(t, uint64(1), c.ConsecutiveFailures)
}

// Two goroutines call one breaker at once, each with an outcome pattern of
// its own, through many folds. The window's last calls must be what some
// interleaving of the two patterns ends with: each goroutine's outcomes in
// its own order, whatever the other did meanwhile.
func TestOrderedFailuresKeepEachGoroutinesOrder(t *testing.T) {
	const n, calls = 64, 300
	for round := range 30 {
		b, err := NewBreaker("ordered", Config{FailureRateThreshold: 0.99, WindowSize: n, MinimumCalls: n})
		require.NoError(t, err)
		var seqs [2][]bool // true: a failure
		for g := range seqs {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
			for range calls {
				seqs[g] = append(seqs[g], rng.IntN(4) == 0)
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for g := range seqs {
			wg.Go(func() {
				<-start
				for _, f := range seqs[g] {
					work := succeed
					if f {
						work = fail
					}
					_ = b.Call(work)
				}
			})
		}
		close(start)
		wg.Wait()
		require.NoError(t, b.Close()) // applies every tally; the window is the test's from here
		require.Zero(t, b.Counts().Trips)

		w := b.m.win
		last := make([]bool, n) // oldest first
		for i := range n {
			f := w.ring[(w.pos+i)%n]
			require.NotZero(t, f&flagCall)
			last[i] = f&flagFail != 0
		}
		assert.True(t, endsAnInterleaving(last, seqs[0], seqs[1]), "round %d: the window's last %d calls %v are no interleaving of the two goroutines' own", round, n, last)
	}
}

// endsAnInterleaving reports whether w is what some interleaving of a and
// b ends with: an interleaving of a suffix of a and a suffix of b.
func endsAnInterleaving(w, a, b []bool) bool {
	for k := max(0, len(w)-len(b)); k <= min(len(w), len(a)); k++ {
		sa, sb := a[len(a)-k:], b[len(b)-(len(w)-k):]
		// ok[j]: w[:i+j] interleaves sa[:i] and sb[:j], row by row in i.
		ok := make([]bool, len(sb)+1)
		for i := 0; i <= len(sa); i++ {
			for j := 0; j <= len(sb); j++ {
				switch {
				case i == 0 && j == 0:
					ok[j] = true
				default:
					fromA := i > 0 && ok[j] && sa[i-1] == w[i+j-1]
					fromB := j > 0 && ok[j-1] && sb[j-1] == w[i+j-1]
					ok[j] = fromA || fromB
				}
			}
		}
		if ok[len(sb)] {
			return true
		}
	}
	return false
}

// A failure whose record says it saw more successes than the fold read
// (a success and then the failure came between the fold's two reads)
// waits for a later fold: placed now, it would go before that success,
// which its own goroutine had before it.
func TestOrderedFailureThatSawMoreThanTheFoldWaits(t *testing.T) {
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.9, WindowSize: 10, MinimumCalls: 10})
	for range 10 {
		require.NoError(t, b.Call(succeed))
	}
	require.ErrorIs(t, b.Call(fail), errBoom) // the window's first failure: waits, and brings records
	s := b.snap.Load()
	require.NotNil(t, s.recs)
	require.True(t, b.act.Idle()) // this goroutine takes the breaker's steps

	read := s.successes.Load()                // the fold reads the successes tally...
	require.NoError(t, b.Call(succeed))       // ...a success is tallied...
	require.ErrorIs(t, b.Call(fail), errBoom) // ...and then a failure, which saw it...
	require.Same(t, s, b.snap.Load(), "both tallied")
	now := time.Now()
	b.foldRecords(now, s, Permit{Gen: s.gen}, read, 0) // ...before the fold reads the records
	require.Equal(t, []uint64{uint64(read) + 1}, b.x.pending, "the failure waits for the success it saw")

	c := b.Counts() // the next fold has both
	assert.Empty(t, b.x.pending)
	assert.Equal(t, uint64(2), c.Failures)
	assert.Equal(t, uint64(11), c.Successes, "each success once")
	w := b.m.win
	last := func(i int) bool { return w.ring[(w.pos+len(w.ring)-1-i)%len(w.ring)]&flagFail != 0 }
	assert.True(t, last(0), "the failure last")
	assert.False(t, last(1), "after the success it saw")
	assert.True(t, last(2), "the first failure")
}

// Under a slow-call policy, a failure that was not slow is tallied like
// any other, once the window holds MinimumCalls calls: before, it may be
// the call that brings the window to MinimumCalls with a slow-call rate
// over the threshold, so it waits, as a success does then. A slow failure
// always waits.
func TestOrderedQuickFailureTalliesUnderASlowCallPolicy(t *testing.T) {
	mock := clock.NewMock()
	b := newTestBreaker(t, Config{SlowCallThreshold: time.Second, SlowCallRateThreshold: 0.5, MinimumCalls: 10, Clock: mock})
	require.True(t, b.ordered())
	slowFail := func() error { mock.Add(2 * time.Second); return errBoom }

	require.ErrorIs(t, b.Call(fail), errBoom) // no records yet: it waits, and makes them
	s := b.snap.Load()
	require.NotNil(t, s.recs)
	require.ErrorIs(t, b.Call(fail), errBoom)
	assert.NotSame(t, s, b.snap.Load(), "short of MinimumCalls: the failure waited")
	assert.Equal(t, uint64(closedRecord), (*s.recs)[0].Load(), "it took no record: the tally was sealed before it was judged")

	for range 8 {
		require.NoError(t, b.Call(succeed))
	}
	s = b.snap.Load()
	require.NotNil(t, s.recs)
	require.ErrorIs(t, b.Call(fail), errBoom)
	assert.Same(t, s, b.snap.Load(), "tallied: no message replaced the snapshot")
	assert.NotZero(t, (*s.recs)[0].Load())

	require.ErrorIs(t, b.Call(slowFail), errBoom)
	assert.NotSame(t, s, b.snap.Load(), "a slow failure waits")
	c := b.Counts()
	assert.Equal(t, uint64(4), c.Failures)
	assert.Equal(t, uint64(1), c.SlowCalls)
	assert.Equal(t, uint64(12), c.WindowCalls)
	assert.Equal(t, Closed, b.State())
}

// stormBreaker returns an ordered breaker whose window has room for many
// failures, on a holdClock over a mock, with its first records made; with
// a slow-call policy if slow is not zero.
func stormBreaker(t *testing.T, slow time.Duration) (*Breaker, *holdClock, *clock.Mock) {
	t.Helper()
	mock := clock.NewMock()
	clk := &holdClock{Clock: mock}
	b := newTestBreaker(t, Config{FailureRateThreshold: 0.99, WindowSize: 10_000, MinimumCalls: 100, SlowCallThreshold: slow, Clock: clk})
	t.Cleanup(clk.disarm) // before the breaker's Close, which reads the clock
	require.True(t, b.ordered())
	for range 100 {
		require.NoError(t, b.Call(succeed))
	}
	require.ErrorIs(t, b.Call(fail), errBoom) // the window's first failure waits, and brings records
	require.NotNil(t, b.snap.Load().recs)
	return b, clk, mock
}

// The failure that takes the middle record asks the owner for fresh ones
// without waiting, and on an idle breaker renews them itself: the next
// failure finds room, where it used to find every record taken and wait.
func TestOrderedRecordsRenewAtHalf(t *testing.T) {
	b, _, _ := stormBreaker(t, 0)
	s := b.snap.Load()
	require.Len(t, *s.recs, minRecords)
	for i := range minRecords / 2 {
		require.ErrorIs(t, b.Call(fail), errBoom)
		require.Same(t, s, b.snap.Load(), "failure %d tallied", i)
	}
	require.ErrorIs(t, b.Call(fail), errBoom) // takes the middle record
	next := b.snap.Load()
	require.NotSame(t, s, next, "renewed")
	assert.NotZero(t, (*s.recs)[minRecords/2].Load(), "the failure that asked was tallied")
	assert.Equal(t, uint64(closedRecord), (*s.recs)[minRecords/2+1].Load(), "and the tally sealed after it")
	require.Len(t, *next.recs, minRecords, "records that lasted: as many again")
	require.ErrorIs(t, b.Call(fail), errBoom)
	assert.Same(t, next, b.snap.Load(), "tallied on the fresh records")
	c := b.Counts()
	assert.Equal(t, uint64(1+minRecords/2+2), c.Failures)
	assert.Equal(t, uint64(100), c.Successes)
	assert.Zero(t, c.Stale)
}

// Records that run out before the owner comes round make every failure
// wait until it does, so the next snapshot gets twice as many; once
// records last longer than stormSpan, the next get minRecords again.
func TestOrderedRecordsGrowWhenTheyRunOutAndShrinkWhenTheyLast(t *testing.T) {
	b, clk, mock := stormBreaker(t, 0)
	s := b.snap.Load()
	h := clk.arm()
	counted := make(chan Counts, 1)
	go func() { counted <- b.Counts() }()
	<-h.held // the owner is busy with that Counts
	for range minRecords {
		require.ErrorIs(t, b.Call(fail), errBoom) // the one at half asks for fresh records, which must wait
	}
	require.Same(t, s, b.snap.Load(), "every record taken, none renewed yet")
	h.free()
	<-counted
	c := b.Counts() // after the renewal asked for, whichever goroutine handled it
	grown := b.snap.Load()
	require.Len(t, *grown.recs, 2*minRecords)
	assert.Equal(t, uint64(1+minRecords), c.Failures)

	mock.Add(2 * time.Duration(stormSpan))
	for range minRecords + 1 { // the last takes the middle record
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	shrunk := b.snap.Load()
	require.NotSame(t, grown, shrunk)
	require.Len(t, *shrunk.recs, minRecords)
	c = b.Counts()
	assert.Equal(t, uint64(1+2*minRecords+1), c.Failures)
	assert.Zero(t, c.Stale)
	assert.Equal(t, Closed, b.State())
}

// However often they run out, records stop growing at maxRecords.
func TestOrderedRecordsGrowNoFurtherThanMax(t *testing.T) {
	b, _, mock := stormBreaker(t, 0)
	cur := b.snap.Load()
	r := make(records, maxRecords)
	r[maxRecords-1].Store(1) // every record taken
	b.snap.Store(&snapshot{recs: &r})
	b.x.recSize, b.x.recsAt = maxRecords, mock.Now().UnixNano()
	assert.Equal(t, maxRecords, b.sizeRecords(mock.Now()))
	b.snap.Store(cur)
}

// A failure admitted under records that have been renewed since goes on
// the fresh ones without waiting, as a success does: a renewal seals the
// tally under every call in flight, and a storm has many.
func TestOrderedFailureInFlightAcrossARenewalTallies(t *testing.T) {
	b, clk, _ := stormBreaker(t, 0)
	s := b.snap.Load()
	tickets := make([]*Ticket, 8)
	for i := range tickets {
		var err error
		tickets[i], err = b.Admit(context.Background())
		require.NoError(t, err)
	}
	for range minRecords/2 + 1 {
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	next := b.snap.Load()
	require.NotSame(t, s, next, "renewed")
	// A message would read the clock first: held there, it would show.
	h := clk.arm()
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		for _, tk := range tickets {
			tk.Report(errBoom)
		}
	}()
	select {
	case <-reported:
	case <-h.held:
		h.free()
		<-reported
		t.Fatal("a failure went as a message")
	}
	clk.disarm()
	assert.Same(t, next, b.snap.Load())
	for i := range tickets {
		assert.NotZero(t, (*next.recs)[i].Load(), "record %d", i)
	}
	c := b.Counts()
	assert.Equal(t, uint64(1+minRecords/2+1+len(tickets)), c.Failures)
	assert.Zero(t, c.Stale)
}

// stormedBreaker is a stormBreaker whose records a storm has grown to
// maxRecords.
func stormedBreaker(t *testing.T, slow time.Duration) (*Breaker, *clock.Mock) {
	t.Helper()
	b, clk, mock := stormBreaker(t, slow)
	for range 4 { // 64 -> 128 -> 256 -> 512 -> 1024
		growRecords(t, b, clk)
	}
	require.Len(t, *b.snap.Load().recs, maxRecords)
	return b, mock
}

// growRecords makes b's current records run out before the owner comes
// round (the owner is held reading the clock in a Counts), so that the
// next snapshot gets twice as many.
func growRecords(t *testing.T, b *Breaker, clk *holdClock) {
	t.Helper()
	s := b.snap.Load()
	require.NotNil(t, s.recs)
	n := len(*s.recs)
	h := clk.arm()
	counted := make(chan Counts, 1)
	go func() { counted <- b.Counts() }()
	<-h.held
	for range n {
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	require.Same(t, s, b.snap.Load(), "every record taken, none renewed yet")
	h.free()
	<-counted
	b.Counts()
	require.Len(t, *b.snap.Load().recs, min(2*n, maxRecords))
}

// After a storm, records go back to minRecords whatever replaces them: a
// snapshot sealed before its records are half taken (here by a slow
// failure, which always seals an ordered breaker's tally: see
// Breaker.tallyLast) must not hand its storm size on for good, 8 KiB
// allocated afresh for every snapshot.
func TestOrderedRecordsShrinkWhateverEndsThem(t *testing.T) {
	b, mock := stormedBreaker(t, time.Second)

	// The storm is over. Hours of ordinary traffic follow: a call in
	// twenty fails, and one in sixty is slow.
	slowFail := func() error { mock.Add(2 * time.Second); return errBoom }
	snaps := map[*snapshot]bool{}
	for range 200 {
		mock.Add(time.Minute)
		for range 57 {
			require.NoError(t, b.Call(succeed))
		}
		require.ErrorIs(t, b.Call(fail), errBoom)
		require.ErrorIs(t, b.Call(fail), errBoom)
		require.ErrorIs(t, b.Call(slowFail), errBoom)
		if s := b.snap.Load(); s.recs != nil {
			snaps[s] = true
		}
	}
	require.Equal(t, Closed, b.State())
	big := 0
	for s := range snaps {
		if len(*s.recs) == maxRecords {
			big++
		}
	}
	assert.Zero(t, big, "of %d snapshots after the storm, %d have its records", len(snaps), big)
	assert.Len(t, *b.snap.Load().recs, minRecords)
}

// The pending failures' array grows with the records it is read from, and
// is deleted from in place: once empty after a storm, it goes, rather than
// stay in the breaker's extras for good.
func TestOrderedPendingLetsItsStormArrayGo(t *testing.T) {
	b, mock := stormedBreaker(t, 0)
	s := b.snap.Load()
	for range maxRecords/2 + 1 { // the last takes the middle record, and renews
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	require.NotSame(t, s, b.snap.Load())

	b.Reset()
	mock.Add(24 * time.Hour)
	for range 100 {
		require.NoError(t, b.Call(succeed))
	}
	require.ErrorIs(t, b.Call(fail), errBoom)
	require.ErrorIs(t, b.Call(fail), errBoom)
	b.Counts()
	assert.LessOrEqual(t, cap(b.x.pending), 2*minRecords, "a day after the storm")
	assert.Len(t, *b.snap.Load().recs, minRecords)
}

// Records replaced before half of them were taken, as a slow failure
// replaces them, were more than needed: after a storm, a breaker whose
// snapshots turn over faster than stormSpan (250 slow failures a second
// here) must not make its storm size of records for each.
func TestOrderedRecordsShrinkWhenReplacedBeforeHalfTaken(t *testing.T) {
	b, mock := stormedBreaker(t, time.Millisecond)

	// The storm is over. Then 0.8 s of ordinary traffic: a call in
	// twenty fails, and a slow failure comes every 4 ms (250 a second).
	slowFail := func() error { mock.Add(2 * time.Millisecond); return errBoom }
	big, total, used := 0, 0, 0
	for range 200 {
		mock.Add(2 * time.Millisecond)
		for range 18 {
			require.NoError(t, b.Call(succeed))
		}
		require.ErrorIs(t, b.Call(fail), errBoom)
		s := b.snap.Load()
		require.ErrorIs(t, b.Call(slowFail), errBoom) // seals s
		require.NotSame(t, s, b.snap.Load())
		if s.recs != nil {
			total++
			if len(*s.recs) == maxRecords {
				big++
			}
			for i := range *s.recs {
				if v := (*s.recs)[i].Load(); v != 0 && v != closedRecord {
					used++
				}
			}
		}
	}
	require.Equal(t, Closed, b.State())
	assert.Equal(t, 1, big, "of %d snapshots after the storm, only the storm's last has its records (%d used in all)", total, used)
	assert.Equal(t, minRecords, len(*b.snap.Load().recs), "records at the end")
}

// Records that ran out grow however late the owner came round: a late
// owner is what makes them run out.
func TestOrderedRecordsThatRanOutGrowWhenReplacedLate(t *testing.T) {
	b, clk, mock := stormBreaker(t, 0)
	s := b.snap.Load()
	require.Len(t, *s.recs, minRecords)
	h := clk.arm()
	counted := make(chan Counts, 1)
	go func() { counted <- b.Counts() }()
	<-h.held // the owner is busy
	for range minRecords {
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	require.Same(t, s, b.snap.Load(), "every record taken at once, none renewed yet")
	mock.Add(11 * time.Millisecond) // the owner comes round 11 ms after the records were made
	h.free()
	<-counted
	b.Counts()
	assert.Equal(t, 2*minRecords, len(*b.snap.Load().recs), "records that ran out within a moment of being made")
}
