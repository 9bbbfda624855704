package engine

import (
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
