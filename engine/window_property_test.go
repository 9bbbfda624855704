package engine

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// One goroutine calls a breaker with a window, time-based or count-based,
// and drives a Machine with the same outcomes at the same times. The
// breaker tallies most successes, and failures that cannot open the
// circuit, on its snapshot and folds them later (under a time-based
// window, bucket by bucket; under a count-based one, in order);
// after every call the two must agree on the state, and at the end on the
// counts: what a caller sees is what applying its outcomes in order gives.
func TestPropertyWindowBreakerMatchesMachine(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			FailureRateThreshold: rapid.SampledFrom([]float64{0.3, 0.5, 0.8}).Draw(rt, "FailureRateThreshold"),
			FailureThreshold:     rapid.SampledFrom([]int{0, 0, 2, 5}).Draw(rt, "FailureThreshold"),
			MinimumCalls:         rapid.IntRange(1, 8).Draw(rt, "MinimumCalls"),
			RecoveryTimeout:      time.Duration(rapid.IntRange(1, 3).Draw(rt, "RecoverySeconds")) * time.Second,
			SuccessThreshold:     rapid.IntRange(1, 2).Draw(rt, "SuccessThreshold"),
		}
		drawWindow(rt, &cfg, 30, 10, 1, 2, 5, 10)
		const slowTakes = 300 * time.Millisecond // what a slow call takes, at least SlowCallThreshold
		if rapid.Bool().Draw(rt, "slowCalls") {
			cfg.SlowCallThreshold = slowTakes
			cfg.SlowCallRateThreshold = rapid.SampledFrom([]float64{0.3, 0.5, 1}).Draw(rt, "SlowCallRateThreshold")
			if rapid.Bool().Draw(rt, "slowOnly") {
				cfg.FailureRateThreshold, cfg.FailureThreshold = 0, 0
			}
		}
		type op struct {
			sleep  time.Duration
			fail   bool
			slow   bool // the call takes slowTakes
			scrape bool // a Counts first, as a metrics scrape sends: it moves the window on
			spread bool // the snapshot's successes tally spread first, as a busy breaker's callers do
		}
		// Two phases with failure rates of their own, so that runs where
		// old successes leave a window of failures are common.
		phase := func(name string) []op {
			pFail := rapid.SampledFrom([]int{0, 10, 50, 90, 100}).Draw(rt, name+"FailPercent")
			pSlow := 0
			if cfg.SlowCallThreshold > 0 {
				pSlow = rapid.SampledFrom([]int{0, 10, 50, 90}).Draw(rt, name+"SlowPercent")
			}
			return rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) op {
				return op{
					sleep:  time.Duration(rapid.IntRange(0, 1500).Draw(rt, "sleepMs")) * time.Millisecond,
					fail:   rapid.IntRange(0, 99).Draw(rt, "roll") < pFail,
					slow:   rapid.IntRange(0, 99).Draw(rt, "slowRoll") < pSlow,
					scrape: rapid.IntRange(0, 3).Draw(rt, "scrape") == 0,
					spread: rapid.IntRange(0, 3).Draw(rt, "spread") == 0,
				}
			}), 10, 100).Draw(rt, name)
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
				if o.spread {
					spread(b)
				}
				work, outcome := succeed, Success
				if o.fail {
					work, outcome = fail, Failure
				}
				got := b.Call(func() error {
					if o.slow {
						time.Sleep(slowTakes)
					}
					return work()
				})
				end := time.Now()
				if p, err := m.Admit(now); err != nil {
					require.ErrorIs(t, got, ErrOpen, "op %d: the machine rejects", i)
				} else {
					require.NotErrorIs(t, got, ErrOpen, "op %d: the machine admits", i)
					m.Report(end, p, outcome, got, end.Sub(now))
				}
				m.Advance(end)
				require.Equal(t, m.State(), b.State(), "op %d", i)
			}
			want, got := m.Counts(time.Now()), b.Counts()
			want.ProbesInFlight, got.ProbesInFlight = 0, 0
			require.Equal(t, want, got)
		})
	})
}

// Machine.failureRoom is the room a Breaker's callers tally failures in,
// none of which is checked: it must be safe, and it should be tight. After
// a history of outcomes that left the circuit closed, k failures at now
// must not open it for k up to the room, whether they come in a row,
// after just enough successes to bring the window to MinimumCalls (the
// worst cases of the two policies it weighs), or mixed with successes in
// any order. One more must open it in one of the first two, unless the
// room was capped, or a count-based window would push calls out (the room
// assumes none of them is a failure).
func TestPropertyFailureRoom(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			FailureRateThreshold: rapid.Float64Range(0.05, 1).Draw(rt, "FailureRateThreshold"),
			FailureThreshold:     rapid.SampledFrom([]int{0, 0, 3, 10}).Draw(rt, "FailureThreshold"),
			MinimumCalls:         rapid.IntRange(1, 40).Draw(rt, "MinimumCalls"),
		}
		if rapid.Bool().Draw(rt, "countBased") {
			cfg.WindowSize = rapid.IntRange(cfg.MinimumCalls, 60).Draw(rt, "WindowSize")
		} else {
			cfg.WindowDuration, cfg.WindowBuckets = 4*time.Second, 4
		}
		// How failures mix with successes: 0 is a success, else a failure.
		mix := rapid.SliceOfN(rapid.IntRange(0, 3), 0, 300).Draw(rt, "mix")
		base := time.Unix(1_700_000_000, 0) // a multiple of 4 s
		type out struct {
			at   time.Duration
			fail bool
		}
		pFail := rapid.IntRange(0, 100).Draw(rt, "failPercent")
		var history []out
		at := time.Duration(0)
		for range rapid.IntRange(0, 80).Draw(rt, "outcomes") {
			at += time.Duration(rapid.IntRange(0, 300).Draw(rt, "stepMs")) * time.Millisecond
			history = append(history, out{at, rapid.IntRange(0, 99).Draw(rt, "roll") < pFail})
		}
		now := base.Add(at + time.Duration(rapid.IntRange(0, 4000).Draw(rt, "laterMs"))*time.Millisecond)

		// replay applies the history up to the first outcome that opens
		// the circuit, which it leaves out.
		replay := func() *Machine {
			m, err := NewMachine("room", cfg)
			require.NoError(rt, err)
			for i, o := range history {
				p, err := m.Admit(base.Add(o.at))
				require.NoError(rt, err)
				outcome := Success
				if o.fail {
					outcome = Failure
				}
				gen := m.Generation()
				m.Report(base.Add(o.at), p, outcome, nil, 0)
				if m.Generation() != gen {
					history = history[:i] // the next replay stops before it
					return nil
				}
			}
			return m
		}
		m := replay()
		if m == nil {
			m = replay()
		}
		room := m.failureRoom(now)
		require.GreaterOrEqual(rt, room, int64(0))
		require.LessOrEqual(rt, room, int64(maxRoom))

		// opens reports whether k failures at now, after the successes the
		// rate's worst case needs, after none, or mixed with successes as
		// mix says, open the circuit. Successes are tallied: not checked.
		const inARow, successesFirst, mixed = 0, 1, 2
		opens := func(k int64, how int) bool {
			m := replay()
			require.NotNil(rt, m)
			success := func(n int64) { m.countN(now, Permit{Gen: m.Generation()}, Success, uint64(n)) }
			if how == successesFirst {
				calls, _, _ := m.win.totals(now)
				if need := int64(cfg.MinimumCalls) - int64(calls) - k; need > 0 {
					success(need)
				}
			}
			for i := 0; k > 0; i++ {
				if how == mixed && i < len(mix) && mix[i] == 0 {
					success(1)
					continue
				}
				k--
				p, err := m.Admit(now)
				if err != nil {
					return true
				}
				m.Report(now, p, Failure, nil, 0)
			}
			return m.State() != Closed
		}
		assert.False(rt, opens(room, inARow), "%d failures in a row open it", room)
		assert.False(rt, opens(room, successesFirst), "%d failures after successes open it", room)
		assert.False(rt, opens(room, mixed), "%d failures mixed with successes open it", room)
		calls, _, _ := m.win.totals(now)
		if room < maxRoom && (cfg.WindowSize == 0 || calls+uint64(room)+1 <= uint64(cfg.WindowSize)) {
			assert.True(rt, opens(room+1, inARow) || opens(room+1, successesFirst), "room %d is not tight", room)
		}
	})
}

// drawWindow gives cfg a count-based window of MinimumCalls to maxSize
// calls, or a time-based one of 1 to maxSeconds seconds in one of buckets.
func drawWindow(rt *rapid.T, cfg *Config, maxSize, maxSeconds int, buckets ...int) {
	if rapid.Bool().Draw(rt, "countBased") {
		cfg.WindowSize = rapid.IntRange(cfg.MinimumCalls, maxSize).Draw(rt, "WindowSize")
		return
	}
	cfg.WindowDuration = time.Duration(rapid.IntRange(1, maxSeconds).Draw(rt, "WindowSeconds")) * time.Second
	cfg.WindowBuckets = rapid.SampledFrom(buckets).Draw(rt, "WindowBuckets")
}
