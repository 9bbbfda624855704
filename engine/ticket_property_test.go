package engine

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// A sharper sequential variant of
// TestPropertyWindowBreakerMatchesMachine. One goroutine holds several
// tickets at once (Admit now, Report later, in any order), so calls
// admitted under one snapshot (or bucket) are reported under another, with
// slow-call policies, failure policies, Retry-After hints, Ignored
// outcomes, scrapes, Trip and Reset. One goroutine's operations have one
// order, so the breaker must match the Machine driven with the same
// operations at the same times, op by op.
func TestPropertyTicketsMatchMachine(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			FailureRateThreshold: rapid.SampledFrom([]float64{0, 0.3, 0.5, 0.8}).Draw(rt, "FailureRateThreshold"),
			FailureThreshold:     rapid.SampledFrom([]int{0, 0, 2, 5}).Draw(rt, "FailureThreshold"),
			MinimumCalls:         rapid.IntRange(1, 8).Draw(rt, "MinimumCalls"),
			RecoveryTimeout:      time.Duration(rapid.IntRange(1, 3).Draw(rt, "RecoverySeconds")) * time.Second,
			SuccessThreshold:     rapid.IntRange(1, 2).Draw(rt, "SuccessThreshold"),
			HalfOpenProbes:       rapid.IntRange(1, 2).Draw(rt, "HalfOpenProbes"),
			SlowCallThreshold:    300 * time.Millisecond,
		}
		cfg.SlowCallRateThreshold = rapid.SampledFrom([]float64{0.3, 0.5, 1}).Draw(rt, "SlowCallRateThreshold")
		drawWindow(rt, &cfg, 30, 10, 1, 2, 5, 10)
		type op struct {
			kind    int // 0 admit, 1 report, 2 sleep, 3 scrape, 4 trip, 5 reset, 6 spread
			pick    int
			outcome Outcome
			hint    bool
			sleep   time.Duration
		}
		pFail := rapid.SampledFrom([]int{10, 50, 90}).Draw(rt, "failPercent")
		ops := rapid.SliceOfN(rapid.Custom(func(rt *rapid.T) op {
			o := op{kind: rapid.SampledFrom([]int{0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5, 6}).Draw(rt, "kind")}
			o.pick = rapid.IntRange(0, 7).Draw(rt, "pick")
			switch r := rapid.IntRange(0, 99).Draw(rt, "roll"); {
			case r < pFail:
				o.outcome = Failure
			case r < pFail+5:
				o.outcome = Ignored
			default:
				o.outcome = Success
			}
			o.hint = rapid.IntRange(0, 19).Draw(rt, "hint") == 0
			o.sleep = time.Duration(rapid.SampledFrom([]int{0, 50, 100, 299, 300, 301, 700, 1500}).Draw(rt, "sleepMs")) * time.Millisecond
			return o
		}), 20, 200).Draw(rt, "ops")

		synctest.Test(t, func(t *testing.T) {
			w := newTwins(t, cfg)
			b, m := w.b, w.m
			for i, o := range ops {
				synctest.Wait()
				now := time.Now()
				switch o.kind {
				case 0:
					w.admit(t, now, i)
				case 1:
					if len(w.held) == 0 {
						break
					}
					var e error = errBoom
					if o.outcome == Success {
						e = nil
					}
					if o.hint {
						e = retryIn(2 * time.Second)
					}
					w.report(now, o.pick%len(w.held), o.outcome, e)
				case 2:
					time.Sleep(o.sleep)
					synctest.Wait()
				case 3:
					_ = b.Counts()
				case 4:
					b.Trip()
					m.Trip(now)
				case 5:
					b.Reset()
					m.Reset(now)
				case 6:
					spread(b)
				}
				m.Advance(time.Now())
				require.Equal(t, m.State(), b.State(), "op %d (%+v)", i, o)
			}
			w.finish(t, time.Now())
		})
	})
}

// retryIn is a failure carrying an upstream Retry-After hint.
type retryIn time.Duration

func (e retryIn) Error() string             { return "503 retry later" }
func (e retryIn) RetryAfter() time.Duration { return time.Duration(e) }

// The ticket property on a hand-driven clock that also steps back (a wall
// clock corrected by NTP), so that calls are timed across a step back (a
// negative elapsed is not slow) and tallies meet a snapshot whose bucket
// slot holds a newer bucket.
func TestPropertyTicketsMatchMachineAsTheClockStepsBack(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		cfg := Config{
			FailureRateThreshold: rapid.SampledFrom([]float64{0, 0.3, 0.5}).Draw(rt, "FailureRateThreshold"),
			FailureThreshold:     rapid.SampledFrom([]int{0, 2, 5}).Draw(rt, "FailureThreshold"),
			MinimumCalls:         rapid.IntRange(1, 6).Draw(rt, "MinimumCalls"),
			RecoveryTimeout:      time.Second,
			SlowCallThreshold:    300 * time.Millisecond,
		}
		cfg.SlowCallRateThreshold = rapid.SampledFrom([]float64{0.3, 0.5, 1}).Draw(rt, "SlowCallRateThreshold")
		drawWindow(rt, &cfg, 20, 6, 1, 2, 3)
		mock := clock.NewMock()
		mock.Set(time.Unix(1_700_000_000, 0))
		cfg.Clock = mock
		w := newTwins(rt, cfg)
		b, m := w.b, w.m
		pFail := rapid.SampledFrom([]int{10, 50, 90}).Draw(rt, "failPercent")
		n := rapid.IntRange(20, 150).Draw(rt, "ops")
		for i := range n {
			now := mock.Now()
			switch rapid.SampledFrom([]int{0, 0, 0, 1, 1, 1, 2, 2, 3, 4, 5}).Draw(rt, "kind") {
			case 0:
				w.admit(rt, now, i)
			case 1:
				if len(w.held) == 0 {
					break
				}
				j := rapid.IntRange(0, len(w.held)-1).Draw(rt, "pick")
				o, e := Success, error(nil)
				if rapid.IntRange(0, 99).Draw(rt, "roll") < pFail {
					o, e = Failure, errBoom
				}
				w.report(now, j, o, e)
			case 2:
				mock.Add(time.Duration(rapid.SampledFrom([]int{0, 100, 299, 300, 700, 1500}).Draw(rt, "forwardMs")) * time.Millisecond)
			case 3:
				mock.Set(now.Add(-time.Duration(rapid.SampledFrom([]int{100, 500, 2000, 7000}).Draw(rt, "backMs")) * time.Millisecond))
			case 4:
				_ = b.Counts()
			case 5:
				spread(b)
			}
			m.Advance(mock.Now())
			require.Equal(rt, m.State(), b.State(), "op %d", i)
		}
		w.finish(rt, mock.Now())
	})
}

// twins drives a Breaker and a Machine of one Config with the same
// tickets: admitted together, reported together.
type twins struct {
	b    *Breaker
	m    *Machine
	held []heldTicket
}

type heldTicket struct {
	tk    *Ticket
	p     Permit
	start time.Time
}

func newTwins(t interface {
	require.TestingT
	Cleanup(func())
}, cfg Config) *twins {
	b, err := NewBreaker("prop", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	m, err := NewMachine("prop", cfg)
	require.NoError(t, err)
	return &twins{b: b, m: m}
}

// admit admits a call to both, as op i, and holds the tickets if the
// machine admits it; the breaker must agree.
func (w *twins) admit(t require.TestingT, now time.Time, i int) {
	tk, err := w.b.Admit(context.Background())
	p, merr := w.m.Admit(now)
	if merr != nil {
		require.ErrorIs(t, err, ErrOpen, "op %d: the machine rejects", i)
		return
	}
	require.NoError(t, err, "op %d: the machine admits", i)
	w.held = append(w.held, heldTicket{tk, p, now})
}

// report reports the j-th held call to both, timed from its admission.
func (w *twins) report(now time.Time, j int, o Outcome, err error) {
	h := w.held[j]
	w.held = append(w.held[:j], w.held[j+1:]...)
	h.tk.ReportAs(o, err)
	w.m.Report(now, h.p, o, err, now.Sub(h.start))
}

// finish reports what is still held as ignored, and checks that both
// counted the same.
func (w *twins) finish(t require.TestingT, now time.Time) {
	for _, h := range w.held {
		h.tk.ReportAs(Ignored, nil)
		w.m.Report(now, h.p, Ignored, nil, 0)
	}
	want, got := w.m.Counts(now), w.b.Counts()
	want.ProbesInFlight, got.ProbesInFlight = 0, 0
	require.Equal(t, want, got)
}
