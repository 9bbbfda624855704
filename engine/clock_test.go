package engine

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// timeLayout mirrors time.Time's fields, to make a reading whose wall
// clock has stepped while its monotonic clock has not: what time.Now
// returns after an NTP step, or a resume from suspend (CLOCK_MONOTONIC
// does not count the suspend).
type timeLayout struct {
	wall uint64
	ext  int64
	loc  *time.Location
}

func wallStep(t time.Time, d time.Duration) time.Time {
	u := t.Add(d)
	tl, ul := (*timeLayout)(unsafe.Pointer(&t)), (*timeLayout)(unsafe.Pointer(&u))
	if tl.wall&(1<<63) != 0 && ul.wall&(1<<63) != 0 {
		ul.ext = tl.ext // monotonic reading unchanged
	}
	return u
}

// steppedClock is real time (in a bubble, the bubble's) whose wall clock
// has been stepped by step: Now and Since behave exactly as time.Now and
// time.Since do after a wall-clock step.
type steppedClock struct {
	clock.Clock
	step atomic.Int64
}

func (c *steppedClock) Now() time.Time {
	return wallStep(c.Clock.Now(), time.Duration(c.step.Load()))
}
func (c *steppedClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// newSteppedClock returns real time that the test steps, once it has
// checked that wallStep still moves the wall clock alone: should time.Time
// change its layout, the tests using it fail here rather than pass
// without testing anything.
func newSteppedClock(t *testing.T) *steppedClock {
	n := time.Now()
	u := wallStep(n, time.Hour)
	require.Equal(t, time.Duration(0), u.Sub(n), "wallStep keeps the monotonic reading")
	require.Equal(t, int64(time.Hour), u.UnixNano()-n.UnixNano(), "wallStep moves the wall clock")
	return &steppedClock{Clock: clock.New()}
}

// 035b6ca: a caller under a time-based window took the time of its outcome
// from the monotonic clock plus the snapshot's wall time at publication.
// After a wall-clock step (NTP, a resume from suspend) the owner, which
// reads the wall clock, files buckets elsewhere: the first failure after a
// step past the whole window was tallied on the old bucket's snapshot,
// folded into that bucket, which had left the window, and lost; four
// failures of four calls did not trip a 50% policy. A caller reads the
// wall clock, finds its bucket over and goes as a message.
//
// Real time (a bubble's time.Now has no monotonic reading, so it cannot
// show this), with buckets of an hour, so the test stays in one.
func TestWallClockStepForwardFilesFailuresAtTheOwnersTime(t *testing.T) {
	sc := newSteppedClock(t)
	b := newTestBreaker(t, Config{
		FailureRateThreshold: 0.5, WindowDuration: 10 * time.Hour, WindowBuckets: 10, MinimumCalls: 4,
		Clock: sc,
	})
	require.True(t, b.lean() && b.timed())
	sc.step.Store(int64(100 * time.Hour)) // past the whole window
	for range 4 {
		require.ErrorIs(t, b.Call(fail), errBoom)
	}
	c := b.Counts()
	assert.Equal(t, uint64(4), c.Failures)
	assert.Equal(t, uint64(4), c.WindowFailures, "every failure after the step is in the window at the owner's now")
	assert.Equal(t, Open, b.State(), "4 failures of 4 calls in the window")
}

// 035b6ca, as above, for a success: the caller's own Counts right after
// its call did not see it in the window.
func TestWallClockStepForwardFilesSuccessesAtTheOwnersTime(t *testing.T) {
	sc := newSteppedClock(t)
	b := newTestBreaker(t, Config{
		FailureRateThreshold: 0.5, WindowDuration: 10 * time.Hour, WindowBuckets: 10, MinimumCalls: 1,
		Clock: sc,
	})
	require.NoError(t, b.Call(succeed)) // before the step; the snapshot it leaves lets successes tally
	require.False(t, b.snap.Load().mayTrip())
	sc.step.Store(int64(100 * time.Hour))
	require.NoError(t, b.Call(succeed))
	c := b.Counts()
	assert.Equal(t, uint64(2), c.Successes)
	assert.Equal(t, uint64(1), c.WindowCalls, "the success ended 100 h after the last publication, by the owner's clock")
}

// cb7cd64: calls were timed as durations since the process started, which
// saturate for a hand-driven clock more than about 292 years away (2400,
// 1700, the zero time): every call took no time, and none was slow. A
// configured clock's calls are timed by its Now alone.
func TestSlowCallOnAHandDrivenClockFarFromNow(t *testing.T) {
	for name, at := range map[string]time.Time{
		"2400": time.Date(2400, 1, 1, 0, 0, 0, 0, time.UTC),
		"1700": time.Date(1700, 1, 1, 0, 0, 0, 0, time.UTC),
		"zero": {},
	} {
		t.Run(name, func(t *testing.T) {
			mock := clock.NewMock()
			mock.Set(at)
			b := newTestBreaker(t, Config{SlowCallThreshold: time.Second, Clock: mock})
			tk, err := b.Admit(t.Context())
			require.NoError(t, err)
			mock.Add(time.Minute)
			tk.ReportAs(Success, nil)
			assert.Equal(t, uint64(1), b.Counts().SlowCalls, "a call that took a minute of the breaker's clock")
		})
	}
}

// skewClock is a custom clock that overrides Now only: its embedded
// clock's Since disagrees with it.
type skewClock struct {
	*clock.Mock
	skew atomic.Int64
}

func (c *skewClock) Now() time.Time { return c.Mock.Now().Add(time.Duration(c.skew.Load())) }

// cb7cd64: calls were timed by the clock's Since, which a custom clock
// that overrides only Now leaves to the clock it embeds. The breaker reads
// a configured clock by Now only, as it always had.
func TestSlowCallTimedByTheClocksNow(t *testing.T) {
	sc := &skewClock{Mock: clock.NewMock()}
	b := newTestBreaker(t, Config{SlowCallThreshold: time.Second, Clock: sc})
	tk, err := b.Admit(t.Context())
	require.NoError(t, err)
	sc.skew.Add(int64(time.Minute))
	tk.ReportAs(Success, nil)
	assert.Equal(t, uint64(1), b.Counts().SlowCalls, "a minute by the breaker's Now")
}

// 035b6ca, as above, for a step back: the caller's time ran ahead of the
// owner's, its success was filed in a bucket ahead of the owner's clock,
// and was out of the window, and of Counts, until the wall clock got back
// there.
func TestWallClockStepBackFilesSuccessesAtTheOwnersTime(t *testing.T) {
	sc := newSteppedClock(t)
	b := newTestBreaker(t, Config{
		FailureRateThreshold: 0.5, WindowDuration: 10 * time.Hour, WindowBuckets: 10, MinimumCalls: 1,
		Clock: sc,
	})
	require.NoError(t, b.Call(succeed))
	require.False(t, b.snap.Load().mayTrip())
	sc.step.Store(int64(-2 * time.Hour))
	require.NoError(t, b.Call(succeed))
	c := b.Counts()
	assert.Equal(t, uint64(2), c.Successes)
	assert.Equal(t, uint64(1), c.WindowCalls, "the success ended at the owner's now, two hours before B0")
}

// Real time outside a bubble: a start from Breaker.started (the monotonic
// clock alone) and a time.Now reading measure the same interval, and a
// fresh reading is later still.
func TestSlowCallTimingOnTheMonotonicClock(t *testing.T) {
	b := newTestBreaker(t, Config{SlowCallThreshold: time.Second})
	start := b.started()
	now := time.Now()
	d := b.since(start, now)
	assert.GreaterOrEqual(t, d, time.Duration(0))
	assert.Less(t, d, time.Minute)
	assert.GreaterOrEqual(t, b.since(start, time.Time{}), d)
}
