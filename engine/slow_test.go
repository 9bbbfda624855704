package engine

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ba116b6: under a slow-call policy a lean breaker's slow failure came as
// a message while the failures tally still had room, and tallyLast folded
// the tally, applied the failure (which used a place of that room) and
// only then put it back; callers' quick failures meanwhile took places
// under the limit published before, so the room was used twice, and the
// circuit stayed closed past its threshold. (Before, a lean failure came
// as a message only when the tally was at its limit, and nobody could
// take a place in between.) Now tallyLast seals a tally with room first.
//
// Each iteration: a time-based window and a failure policy with room for
// exactly one failure (2 consecutive failures; or 50% after two
// successes). A reports a slow failure, B at the same moment one that was
// not slow, which finds the room and tallies. In every order of the two
// the second opens the circuit. 10,000 buckets make applying A take some
// microseconds; B starts when the breaker goes busy with A's message,
// after a delay that varies with the iteration; no real sleeps.
func TestSlowFailureMessageRetiresARoomyTally(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		warmup int // successes first, so the window holds MinimumCalls
	}{
		{"consecutive", Config{FailureThreshold: 2, MinimumCalls: 1}, 1},
		{"failure-rate", Config{FailureRateThreshold: 0.5, MinimumCalls: 2}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := 0
			var sink atomic.Int64
			budget := time.Now().Add(time.Second) // a bound on the work, not a wait: the bug showed within ~100 iterations
			for iter := 0; iter < 3000 && bad == 0 && time.Now().Before(budget); iter++ {
				func() {
					mock := clock.NewMock()
					cfg := tc.cfg
					cfg.Clock = mock
					cfg.SlowCallThreshold = time.Minute
					cfg.WindowDuration = 10_000 * time.Hour
					cfg.WindowBuckets = 10_000
					b, err := NewBreaker(t.Name(), cfg)
					require.NoError(t, err)
					defer b.Close()
					require.True(t, b.lean())
					for range tc.warmup {
						require.NoError(t, b.Call(succeed))
					}
					require.False(t, b.snap.Load().mayTrip(), "the window holds MinimumCalls")
					s := b.snap.Load()
					require.Equal(t, int64(1), s.limit.Load()-s.failures.Load(), "room for exactly one failure")

					ta, err := b.Admit(t.Context())
					require.NoError(t, err)
					tb, err := b.Admit(t.Context())
					require.NoError(t, err)
					ta.start = ta.start.Add(-time.Hour) // A's call was slow

					var aDone atomic.Bool
					bDone := make(chan struct{})
					delay := int64(iter%40) * 50
					go func() {
						defer close(bDone)
						for b.act.Idle() && !aDone.Load() {
						}
						for range delay {
							sink.Add(1)
						}
						tb.ReportAs(Failure, errBoom) // not slow: tallied if it finds room
					}()
					ta.ReportAs(Failure, errBoom)
					aDone.Store(true)
					<-bDone

					c := b.Counts()
					if c.Trips == 0 {
						bad++
						t.Logf("iteration %d: two failures applied, circuit %v, no trip: %+v", iter, b.State(), c)
					}
				}()
			}
			assert.Zero(t, bad, "in every order of the two failures the second opens the circuit")
		})
	}
}

// Three goroutines at a time mix successes (some slow),
// failures that were not slow, and slow ones (a ticket whose start is moved
// back an hour: no clock moves, so a time-based window stays in one bucket)
// on breakers with a slow-call policy and failure policies; after each
// step, at a quiescent point, a closed circuit must be under every
// threshold: the Machine checks after each outcome, so in any order of
// the outcomes the one that reaches a threshold opens the circuit.
//
// After ba116b6 the time-* subtests failed most runs, with the bug
// TestSlowFailureMessageRetiresARoomyTally shows: a lean
// (time-window) breaker ends a step closed with ConsecutiveFailures at
// FailureThreshold, or a failure rate at its threshold, because a slow
// failure applied by tallyLast and quick failures tallied meanwhile used
// the same room. The count-* subtests (ordered breakers, whose tallyLast
// sealed the tally before it applied a failure) passed.
func TestSlowStressClosedMeansUnderThresholds(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"time-consecutive", Config{FailureThreshold: 3, MinimumCalls: 2, WindowDuration: 10_000 * time.Hour, WindowBuckets: 10_000}},
		{"time-rate", Config{FailureRateThreshold: 0.5, MinimumCalls: 4, WindowDuration: 10_000 * time.Hour, WindowBuckets: 10_000}},
		{"count-consecutive", Config{FailureThreshold: 3, MinimumCalls: 2, WindowSize: 50}},
		{"count-rate", Config{FailureRateThreshold: 0.5, MinimumCalls: 4, WindowSize: 20}},
		{"count-both", Config{FailureThreshold: 4, FailureRateThreshold: 0.6, MinimumCalls: 4, WindowSize: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := 0
			budget := time.Now().Add(time.Second) // a bound on the work, not a wait
			for round := 0; round < 300 && bad == 0 && time.Now().Before(budget); round++ {
				func() {
					cfg := tc.cfg
					cfg.Clock = clock.NewMock()
					cfg.SlowCallThreshold = time.Minute
					cfg.SlowCallRateThreshold = 0.5
					b, err := NewBreaker(t.Name(), cfg)
					require.NoError(t, err)
					defer b.Close()
					check := func(step int) {
						c := b.Counts()
						if b.State() != Closed {
							return
						}
						n := b.m.cfg
						over := n.FailureThreshold > 0 && c.ConsecutiveFailures >= uint64(n.FailureThreshold) ||
							c.WindowCalls >= uint64(n.MinimumCalls) && (n.FailureRateThreshold > 0 && c.FailureRate >= n.FailureRateThreshold ||
								c.SlowCallRate >= n.SlowCallRateThreshold)
						if over {
							bad++
							t.Logf("round %d step %d: closed over a threshold: %+v", round, step, c)
						}
					}
					r := rand.New(rand.NewPCG(uint64(round), 7))
					for step := 0; step < 40 && bad == 0 && b.State() == Closed; step++ {
						var wg sync.WaitGroup
						for range 3 {
							x := r.IntN(10)
							wg.Go(func() {
								tk, err := b.Admit(context.Background())
								if err != nil {
									return
								}
								switch {
								case x < 4:
									tk.ReportAs(Success, nil)
								case x < 7:
									tk.ReportAs(Failure, errBoom)
								case x < 8:
									tk.start = tk.start.Add(-time.Hour)
									tk.ReportAs(Success, nil)
								default:
									tk.start = tk.start.Add(-time.Hour)
									tk.ReportAs(Failure, errBoom)
								}
							})
						}
						wg.Wait()
						check(step)
					}
				}()
			}
			require.Zero(t, bad)
		})
	}
}
