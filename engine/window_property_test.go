package engine

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// One goroutine calls a breaker with a time-based window and drives a
// Machine with the same outcomes at the same times. The breaker tallies
// most successes on its snapshot and folds them later, bucket by bucket;
// after every call the two must agree on the state, and at the end on the
// counts: what a caller sees is what applying its outcomes in order gives.
func TestPropertyTimeWindowBreakerMatchesMachine(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			FailureRateThreshold: rapid.SampledFrom([]float64{0.3, 0.5, 0.8}).Draw(rt, "FailureRateThreshold"),
			WindowDuration:       time.Duration(rapid.IntRange(1, 10).Draw(rt, "WindowSeconds")) * time.Second,
			WindowBuckets:        rapid.SampledFrom([]int{1, 2, 5, 10}).Draw(rt, "WindowBuckets"),
			MinimumCalls:         rapid.IntRange(1, 8).Draw(rt, "MinimumCalls"),
			RecoveryTimeout:      time.Duration(rapid.IntRange(1, 3).Draw(rt, "RecoverySeconds")) * time.Second,
			SuccessThreshold:     rapid.IntRange(1, 2).Draw(rt, "SuccessThreshold"),
		}
		type op struct {
			sleep  time.Duration
			fail   bool
			scrape bool // a Counts first, as a metrics scrape sends: it moves the window on
		}
		// Two phases with failure rates of their own, so that runs where
		// old successes leave a window of failures are common.
		phase := func(name string) []op {
			pFail := rapid.SampledFrom([]int{0, 10, 50, 90, 100}).Draw(rt, name+"FailPercent")
			return rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) op {
				return op{
					sleep:  time.Duration(rapid.IntRange(0, 1500).Draw(rt, "sleepMs")) * time.Millisecond,
					fail:   rapid.IntRange(0, 99).Draw(rt, "roll") < pFail,
					scrape: rapid.IntRange(0, 3).Draw(rt, "scrape") == 0,
				}
			}), 10, 40).Draw(rt, name)
		}
		ops := append(phase("first"), phase("second")...)

		synctest.Test(t, func(t *testing.T) {
			b, err := NewBreaker("prop", cfg)
			require.NoError(t, err)
			defer b.Close()
			m, err := NewMachine("prop", cfg)
			require.NoError(t, err)
			for i, o := range ops {
				time.Sleep(o.sleep)
				synctest.Wait() // the breaker's timer has done what it had to
				now := time.Now()
				if o.scrape {
					_ = b.Counts()
				}
				work, outcome := succeed, Success
				if o.fail {
					work, outcome = fail, Failure
				}
				got := b.Call(work)
				if p, err := m.Admit(now); err != nil {
					require.ErrorIs(t, got, ErrOpen, "op %d: the machine rejects", i)
				} else {
					require.NotErrorIs(t, got, ErrOpen, "op %d: the machine admits", i)
					m.Report(now, p, outcome, got, 0)
				}
				m.Advance(now)
				require.Equal(t, m.State(), b.State(), "op %d", i)
			}
			want, got := m.Counts(time.Now()), b.Counts()
			want.ProbesInFlight, got.ProbesInFlight = 0, 0
			require.Equal(t, want, got)
		})
	})
}
