package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The helpers of the Machine tests are prefixed with mach so that they do
// not collide with the helpers of the package's other test files.

var errMachineDown = errors.New("upstream down")

// machineRetryErr is an upstream error carrying a Retry-After hint.
type machineRetryErr struct{ d time.Duration }

func (e machineRetryErr) Error() string             { return "429 too many requests, retry after " + e.d.String() }
func (e machineRetryErr) RetryAfter() time.Duration { return e.d }

// machOutcome is one call's outcome as reported to the machine.
type machOutcome struct {
	o       Outcome
	err     error
	elapsed time.Duration
}

var (
	machS = machOutcome{o: Success}
	machF = machOutcome{o: Failure, err: errMachineDown}
	machI = machOutcome{o: Ignored, err: context.Canceled}
)

// machSlow is a successful call that took d.
func machSlow(d time.Duration) machOutcome { return machOutcome{o: Success, elapsed: d} }

// machRA is a failure carrying a Retry-After hint of d.
func machRA(d time.Duration) machOutcome { return machOutcome{o: Failure, err: machineRetryErr{d}} }

func machNew(t testing.TB, cfg Config) *Machine {
	t.Helper()
	m, err := NewMachine("svc", cfg)
	require.NoError(t, err)
	require.NotNil(t, m)
	return m
}

// machCall admits a call at now and reports c for it at now; the call must
// be admitted and its report applied.
func machCall(t testing.TB, m *Machine, now time.Time, c machOutcome) Permit {
	t.Helper()
	p, err := m.Admit(now)
	require.NoError(t, err, "admit at %s", now)
	require.True(t, m.Report(now, p, c.o, c.err, c.elapsed), "report at %s", now)
	return p
}

// machAdmit admits a call at now; it must be admitted.
func machAdmit(t testing.TB, m *Machine, now time.Time) Permit {
	t.Helper()
	p, err := m.Admit(now)
	require.NoError(t, err, "admit at %s", now)
	return p
}

// machRejected checks that err is a refusal and returns it as *OpenError.
func machRejected(t testing.TB, err error) *OpenError {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, ErrOpen)
	var oe *OpenError
	require.ErrorAs(t, err, &oe)
	return oe
}

// machTake returns a copy of the transitions since the last call (the
// machine reuses the slice).
func machTake(m *Machine) []Transition { return slices.Clone(m.TakeTransitions()) }

type machEdge struct {
	From, To State
	Reason   string
}

func machEdges(ts []Transition) []machEdge {
	var es []machEdge
	for _, tr := range ts {
		es = append(es, machEdge{tr.From, tr.To, tr.Reason})
	}
	return es
}

// machOpenFor is the length of the current open period.
func machOpenFor(m *Machine) time.Duration { return m.OpenError().RetryAfter }

func TestMachineNew(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{})
	assert.Equal(t, Closed, m.State())
	assert.Equal(t, uint64(1), m.Generation())
	assert.False(t, m.Isolated())
	assert.True(t, m.OpenUntil().IsZero())
	_, ok := m.Deadline()
	assert.False(t, ok)
	assert.Equal(t, Counts{}, m.Counts(t0))
	assert.Empty(t, m.TakeTransitions())

	p := machAdmit(t, m, t0)
	assert.Equal(t, Permit{Gen: 1}, p)

	m, err := NewMachine("svc", Config{FailureThreshold: -1})
	assert.Nil(t, m)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.Equal(t, "FailureThreshold", ce.Field)
}

// TestMachineClosedTripPolicies drives a closed circuit with one call a
// second and checks after which call, if any, it opens, and why.
func TestMachineClosedTripPolicies(t *testing.T) {
	rep := func(o machOutcome, n int) []machOutcome {
		s := make([]machOutcome, n)
		for i := range s {
			s[i] = o
		}
		return s
	}
	cat := func(parts ...[]machOutcome) []machOutcome { return slices.Concat(parts...) }
	F, S, I := []machOutcome{machF}, []machOutcome{machS}, []machOutcome{machI}

	tests := []struct {
		name      string
		cfg       Config
		calls     []machOutcome
		tripAfter int // 1-based call after which the circuit is open; 0: never
		reason    string
		openFor   time.Duration // 0: 60s
	}{
		{
			name: "default threshold: 4 failures keep it closed", cfg: Config{},
			calls: rep(machF, 4),
		},
		{
			name: "default threshold: opens at exactly the 5th failure", cfg: Config{},
			calls: rep(machF, 5), tripAfter: 5, reason: "5 consecutive failures",
		},
		{
			name: "custom threshold 3", cfg: Config{FailureThreshold: 3},
			calls: rep(machF, 3), tripAfter: 3, reason: "3 consecutive failures",
		},
		{
			name: "threshold 1 opens on the first failure", cfg: Config{FailureThreshold: 1, RecoveryTimeout: 7 * time.Second},
			calls: F, tripAfter: 1, reason: "1 consecutive failure", openFor: 7 * time.Second,
		},
		{
			name: "a success resets the run", cfg: Config{FailureThreshold: 3},
			calls: cat(F, F, S, F, F), // never three in a row
		},
		{
			name: "a success resets the run, then three in a row open", cfg: Config{FailureThreshold: 3},
			calls: cat(F, F, S, F, F, F), tripAfter: 6, reason: "3 consecutive failures",
		},
		{
			name: "ignored calls do not break a run", cfg: Config{FailureThreshold: 3},
			calls: cat(F, I, F, I, I, F), tripAfter: 6, reason: "3 consecutive failures",
		},
		{
			name: "ignored calls do not extend a run", cfg: Config{FailureThreshold: 2},
			calls: cat(F, I, I, I, I, S, F, I, I, I),
		},
		{
			name: "only ignored calls never open", cfg: Config{FailureThreshold: 1},
			calls: rep(machI, 10),
		},
		{
			name:  "failure rate: below MinimumCalls nothing trips, consecutive policy is off",
			cfg:   Config{FailureRateThreshold: 0.9, WindowSize: 100, MinimumCalls: 20},
			calls: rep(machF, 19),
		},
		{
			name:  "failure rate: opens when the window reaches MinimumCalls",
			cfg:   Config{FailureRateThreshold: 0.9, WindowSize: 100, MinimumCalls: 20},
			calls: rep(machF, 20), tripAfter: 20, reason: "failure rate 100% >= 90% over 20 calls",
		},
		{
			name:  "failure rate: 2 of 4 reaches 50%, checked after a success too",
			cfg:   Config{FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 4},
			calls: cat(F, S, F, S), tripAfter: 4, reason: "failure rate 50% >= 50% over 4 calls",
		},
		{
			name:  "failure rate: below the threshold stays closed",
			cfg:   Config{FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 4},
			calls: cat(S, S, F, S, S, F, S, S, F, S),
		},
		{
			name:  "count window: old calls fall out of the window",
			cfg:   Config{FailureRateThreshold: 0.75, WindowSize: 4, MinimumCalls: 4},
			calls: cat(F, F, S, S, S, S, F, F), // the last 4 are S S F F: 50%
		},
		{
			name:  "count window: 3 failures among the last 4",
			cfg:   Config{FailureRateThreshold: 0.75, WindowSize: 4, MinimumCalls: 4},
			calls: cat(F, F, S, S, S, S, F, F, F), tripAfter: 9, reason: "failure rate 75% >= 75% over 4 calls",
		},
		{
			name:  "failure rate with an explicit FailureThreshold keeps both policies",
			cfg:   Config{FailureThreshold: 2, FailureRateThreshold: 0.9, WindowSize: 10, MinimumCalls: 10},
			calls: cat(S, F, F), tripAfter: 3, reason: "2 consecutive failures",
		},
		{
			name: "slow-call rate: 2 slow of 4 reaches 50%",
			cfg: Config{SlowCallThreshold: 100 * time.Millisecond, SlowCallRateThreshold: 0.5,
				WindowSize: 4, MinimumCalls: 4},
			calls: []machOutcome{
				machSlow(0), machSlow(100 * time.Millisecond), machSlow(99 * time.Millisecond), machSlow(150 * time.Millisecond),
			},
			tripAfter: 4, reason: "slow-call rate 50% >= 50% over 4 calls",
		},
		{
			name:  "slow-call rate: default rate 1 needs every call in the window slow",
			cfg:   Config{SlowCallThreshold: 50 * time.Millisecond, WindowSize: 3, MinimumCalls: 3},
			calls: []machOutcome{machSlow(time.Second), machSlow(time.Second), machSlow(0), machSlow(time.Second), machSlow(time.Second)},
		},
		{
			name: "slow-call rate: default rate 1 opens on 3 slow of 3",
			cfg:  Config{SlowCallThreshold: 50 * time.Millisecond, WindowSize: 3, MinimumCalls: 3},
			calls: []machOutcome{
				machSlow(time.Second), machSlow(time.Second), machSlow(0), machSlow(time.Second), machSlow(time.Second), machSlow(50 * time.Millisecond),
			},
			tripAfter: 6, reason: "slow-call rate 100% >= 100% over 3 calls",
		},
		{
			name: "slow failures count as slow",
			cfg: Config{SlowCallThreshold: 50 * time.Millisecond, SlowCallRateThreshold: 0.5,
				WindowSize: 2, MinimumCalls: 2},
			calls: []machOutcome{
				machS, {o: Failure, err: errMachineDown, elapsed: time.Second},
			},
			tripAfter: 2, reason: "slow-call rate 50% >= 50% over 2 calls",
		},
		{
			name: "ShouldTrip is asked after failures",
			cfg: Config{ShouldTrip: func(c Counts) bool {
				return c.Failures >= 3
			}},
			calls: cat(F, S, F, S, F), tripAfter: 5, reason: "ShouldTrip returned true",
		},
		{
			name: "ShouldTrip turns the default consecutive threshold off",
			cfg: Config{ShouldTrip: func(Counts) bool {
				return false
			}},
			calls: rep(machF, 20),
		},
		{
			name: "ShouldTrip is not asked after successes",
			cfg: Config{ShouldTrip: func(c Counts) bool {
				return c.Successes >= 1 // would open on the first success if asked
			}},
			calls: cat(S, S, S, F), tripAfter: 4, reason: "ShouldTrip returned true",
		},
		{
			name: "ShouldTrip is asked after slow successes",
			cfg: Config{SlowCallThreshold: time.Second, WindowSize: 10, MinimumCalls: 10,
				ShouldTrip: func(c Counts) bool { return c.SlowCalls >= 2 }},
			calls:     []machOutcome{machSlow(time.Second), machS, machSlow(2 * time.Second)},
			tripAfter: 3, reason: "ShouldTrip returned true",
		},
		{
			name: "Retry-After opens at once", cfg: Config{},
			calls: []machOutcome{machRA(30 * time.Second)}, tripAfter: 1,
			reason: "retry-after 30s from upstream", openFor: 60 * time.Second,
		},
		{
			name: "Retry-After longer than the period", cfg: Config{RecoveryTimeout: 10 * time.Second},
			calls: []machOutcome{machS, machRA(90 * time.Second)}, tripAfter: 2,
			reason: "retry-after 1m30s from upstream", openFor: 90 * time.Second,
		},
		{
			name: "Retry-After found through wrapping", cfg: Config{RecoveryTimeout: 10 * time.Second},
			calls: []machOutcome{{o: Failure, err: fmt.Errorf("GET /x: %w", machineRetryErr{20 * time.Second})}}, tripAfter: 1,
			reason: "retry-after 20s from upstream", openFor: 20 * time.Second,
		},
		{
			name: "a zero Retry-After is an ordinary failure", cfg: Config{},
			calls: []machOutcome{machRA(0), machRA(0), machRA(0), machRA(0)},
		},
		{
			name: "Retry-After on an ignored call does nothing", cfg: Config{},
			calls: []machOutcome{{o: Ignored, err: machineRetryErr{time.Minute}}},
		},
		{
			name: "Retry-After on a success does nothing", cfg: Config{},
			calls: []machOutcome{{o: Success, err: machineRetryErr{time.Minute}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			ncfg, err := tc.cfg.normalize()
			require.NoError(t, err)
			m := machNew(t, tc.cfg)
			if tc.tripAfter > 0 {
				require.Len(t, tc.calls, tc.tripAfter, "test table: no calls after the trip")
			}
			var want Counts
			var tripAt time.Time
			for i, c := range tc.calls {
				now := t0.Add(time.Duration(i) * time.Second)
				require.Equal(t, Closed, m.State(), "before call %d", i+1)
				machCall(t, m, now, c)
				switch c.o {
				case Success:
					want.Successes++
				case Failure:
					want.Failures++
				case Ignored:
					want.Ignored++
				}
				if c.o != Ignored && m.Slow(c.elapsed) {
					want.SlowCalls++
				}
				if i+1 == tc.tripAfter {
					tripAt = now
					require.Equal(t, Open, m.State(), "after call %d", i+1)
				} else {
					require.Equal(t, Closed, m.State(), "after call %d", i+1)
				}
			}
			got := m.Counts(t0.Add(time.Duration(len(tc.calls)) * time.Second))
			assert.Equal(t, want.Successes, got.Successes, "Successes")
			assert.Equal(t, want.Failures, got.Failures, "Failures")
			assert.Equal(t, want.Ignored, got.Ignored, "Ignored")
			assert.Equal(t, want.SlowCalls, got.SlowCalls, "SlowCalls")
			assert.Equal(t, got.Successes+got.Failures+got.Ignored, got.Requests)
			if ncfg.FailureThreshold > 0 && m.State() == Closed {
				assert.Less(t, got.ConsecutiveFailures, uint64(ncfg.FailureThreshold))
			}

			trs := machTake(m)
			if tc.tripAfter == 0 {
				assert.Empty(t, trs)
				assert.Equal(t, uint64(1), m.Generation())
				assert.Zero(t, got.Trips)
				return
			}
			openFor := tc.openFor
			if openFor == 0 {
				openFor = 60 * time.Second
			}
			require.Len(t, trs, 1)
			tr := trs[0]
			assert.Equal(t, "svc", tr.Name)
			assert.Equal(t, Closed, tr.From)
			assert.Equal(t, Open, tr.To)
			assert.Equal(t, tc.reason, tr.Reason)
			assert.Equal(t, tripAt, tr.At)
			assert.Equal(t, tripAt.Add(openFor), tr.OpenUntil)
			assert.Equal(t, uint64(1), tr.Seq)
			assert.Equal(t, uint64(1), tr.Counts.Trips)
			assert.Equal(t, uint64(1), got.Trips)
			assert.Equal(t, uint64(2), m.Generation())
			assert.Equal(t, tripAt.Add(openFor), m.OpenUntil())

			_, err = m.Admit(tripAt)
			oe := machRejected(t, err)
			assert.Equal(t, openFor, oe.RetryAfter)
			last := tc.calls[len(tc.calls)-1]
			if last.err != nil {
				assert.Equal(t, last.err, oe.Cause, "the failure that opened the circuit is the cause")
			} else {
				assert.NoError(t, oe.Cause)
			}
		})
	}
}

// TestMachineConsecutiveCounts checks the runs of like outcomes.
func TestMachineConsecutiveCounts(t *testing.T) {
	tests := []struct {
		name      string
		calls     []machOutcome
		succ, fai uint64
	}{
		{"empty", nil, 0, 0},
		{"successes", []machOutcome{machS, machS, machS}, 3, 0},
		{"failures", []machOutcome{machF, machF}, 0, 2},
		{"a failure breaks successes", []machOutcome{machS, machS, machF}, 0, 1},
		{"a success breaks failures", []machOutcome{machF, machF, machS}, 1, 0},
		{"ignored extends no run", []machOutcome{machS, machI, machI}, 1, 0},
		{"ignored breaks no run of successes", []machOutcome{machS, machI, machS}, 2, 0},
		{"ignored breaks no run of failures", []machOutcome{machF, machI, machF, machI}, 0, 2},
		{"slow success is a success", []machOutcome{machF, machSlow(time.Hour)}, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, Config{FailureThreshold: 100})
			for i, c := range tc.calls {
				machCall(t, m, t0.Add(time.Duration(i)*time.Millisecond), c)
			}
			c := m.Counts(t0.Add(time.Second))
			assert.Equal(t, tc.succ, c.ConsecutiveSuccesses, "ConsecutiveSuccesses")
			assert.Equal(t, tc.fai, c.ConsecutiveFailures, "ConsecutiveFailures")
		})
	}
}

// TestMachineOpenRejectsUntilDeadline opens a circuit at t0 for 10s and
// tries a call at various times.
func TestMachineOpenRejectsUntilDeadline(t *testing.T) {
	tests := []struct {
		name     string
		at       time.Duration
		admitted bool
	}{
		{"right after the trip", 0, false},
		{"half way", 5 * time.Second, false},
		{"1ns before the deadline", 10*time.Second - 1, false},
		{"at the deadline", 10 * time.Second, true},
		{"1ns after the deadline", 10*time.Second + 1, true},
		{"long after the deadline", time.Hour, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, Config{FailureThreshold: 1, RecoveryTimeout: 10 * time.Second})
			machCall(t, m, t0, machF)
			require.Equal(t, Open, m.State())
			machTake(m)
			gen := m.Generation()
			now := t0.Add(tc.at)

			p, err := m.Admit(now)
			if !tc.admitted {
				oe := machRejected(t, err)
				assert.Equal(t, Permit{}, p)
				assert.Equal(t, "svc", oe.Name)
				assert.Equal(t, Open, oe.State)
				assert.Equal(t, t0.Add(10*time.Second), oe.Until)
				assert.Equal(t, 10*time.Second, oe.RetryAfter)
				assert.False(t, oe.Isolated)
				assert.ErrorIs(t, oe.Cause, errMachineDown)
				assert.Equal(t, `engine: circuit "svc" open, retry after 10s`, oe.Error())
				assert.Equal(t, Open, m.State())
				assert.Equal(t, gen, m.Generation())
				assert.Equal(t, uint64(1), m.Counts(now).Rejected)
				d, ok := m.Deadline()
				assert.True(t, ok)
				assert.Equal(t, t0.Add(10*time.Second), d)
				assert.Empty(t, m.TakeTransitions())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, HalfOpen, m.State())
			assert.Equal(t, m.Generation(), p.Gen)
			assert.NotEqual(t, gen, p.Gen)
			assert.Equal(t, uint64(1), p.Probe)
			assert.True(t, m.OpenUntil().IsZero())
			c := m.Counts(now)
			assert.Equal(t, 1, c.ProbesInFlight)
			assert.Zero(t, c.Rejected)
			d, ok := m.Deadline()
			assert.True(t, ok)
			assert.Equal(t, now.Add(60*time.Second), d, "deadline is the probe's lease")
			trs := machTake(m)
			require.Len(t, trs, 1)
			assert.Equal(t, machEdge{Open, HalfOpen, "recovery timeout elapsed"}, machEdges(trs)[0])
			assert.Equal(t, now, trs[0].At)
			assert.True(t, trs[0].OpenUntil.IsZero())
			assert.Equal(t, uint64(2), trs[0].Seq)
		})
	}
}

// machTripAndRecover opens m at t0 with a manual trip and returns the time
// at which it turns half-open.
func machTripAndRecover(t testing.TB, m *Machine, t0 time.Time) time.Time {
	t.Helper()
	m.Trip(t0)
	require.Equal(t, Open, m.State())
	until := m.OpenUntil()
	m.Advance(until)
	require.Equal(t, HalfOpen, m.State())
	machTake(m)
	return until
}

func TestMachineHalfOpenProbeLimit(t *testing.T) {
	tests := []struct {
		name   string
		probes int
		want   int
	}{
		{"default is one probe", 0, 1},
		{"one probe", 1, 1},
		{"three probes", 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, HalfOpenProbes: tc.probes, SuccessThreshold: 10})
			h := machTripAndRecover(t, m, t0)
			require.Equal(t, t0.Add(10*time.Second), h)

			var ps []Permit
			for i := range tc.want {
				p := machAdmit(t, m, h.Add(time.Duration(i)*time.Millisecond))
				assert.Equal(t, m.Generation(), p.Gen)
				assert.NotZero(t, p.Probe)
				assert.NotContains(t, ps, p, "probe ids are distinct")
				ps = append(ps, p)
			}
			assert.Equal(t, tc.want, m.Counts(h).ProbesInFlight)

			for range 2 {
				_, err := m.Admit(h.Add(time.Second))
				oe := machRejected(t, err)
				assert.Equal(t, HalfOpen, oe.State)
				assert.True(t, oe.Until.IsZero())
				assert.Zero(t, oe.RetryAfter, "the probes decide; no period to wait out")
				assert.False(t, oe.Isolated)
				assert.Equal(t, `engine: circuit "svc" half-open, all probe slots taken`, oe.Error())
			}
			assert.Equal(t, uint64(2), m.Counts(h).Rejected)
			assert.Equal(t, HalfOpen, m.State())

			// A report frees a slot.
			require.True(t, m.Report(h.Add(2*time.Second), ps[0], Success, nil, 0))
			assert.Equal(t, tc.want-1, m.Counts(h).ProbesInFlight)
			p := machAdmit(t, m, h.Add(3*time.Second))
			assert.NotContains(t, ps, p)
			_, err := m.Admit(h.Add(3 * time.Second))
			machRejected(t, err)
			assert.Empty(t, m.TakeTransitions())
		})
	}
}

func TestMachineSuccessThreshold(t *testing.T) {
	tests := []struct {
		name      string
		threshold int
		closeAt   int
		reason    string
	}{
		{"default closes on the first success", 0, 1, "probe succeeded"},
		{"one", 1, 1, "probe succeeded"},
		{"two", 2, 2, "2 probes succeeded"},
		{"three", 3, 3, "3 probes succeeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, SuccessThreshold: tc.threshold})
			h := machTripAndRecover(t, m, t0)
			for i := 1; i <= tc.closeAt; i++ {
				require.Equal(t, HalfOpen, m.State(), "before probe %d", i)
				now := h.Add(time.Duration(i) * time.Second)
				p := machCall(t, m, now, machS)
				assert.NotZero(t, p.Probe)
			}
			assert.Equal(t, Closed, m.State())
			trs := machTake(m)
			require.Len(t, trs, 1)
			assert.Equal(t, machEdge{HalfOpen, Closed, tc.reason}, machEdges(trs)[0])
			assert.True(t, trs[0].OpenUntil.IsZero())
			assert.True(t, m.OpenUntil().IsZero())
			_, ok := m.Deadline()
			assert.False(t, ok)
		})
	}

	t.Run("a failed probe opens it again and the successes start over", func(t *testing.T) {
		t0 := time.Unix(1_700_000_000, 0)
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, SuccessThreshold: 3})
		h := machTripAndRecover(t, m, t0)
		machCall(t, m, h, machS)
		machCall(t, m, h.Add(time.Second), machS)
		machCall(t, m, h.Add(2*time.Second), machF)
		require.Equal(t, Open, m.State())
		h2 := m.OpenUntil()
		assert.Equal(t, h.Add(12*time.Second), h2)
		machCall(t, m, h2, machS)
		machCall(t, m, h2.Add(time.Second), machS)
		assert.Equal(t, HalfOpen, m.State(), "two successes of this half-open period are not enough")
		machCall(t, m, h2.Add(2*time.Second), machS)
		assert.Equal(t, Closed, m.State())
		assert.Equal(t, []machEdge{
			{HalfOpen, Open, "probe failed"},
			{Open, HalfOpen, "recovery timeout elapsed"},
			{HalfOpen, Closed, "3 probes succeeded"},
		}, machEdges(machTake(m)))
	})

	t.Run("concurrent probes", func(t *testing.T) {
		t0 := time.Unix(1_700_000_000, 0)
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, HalfOpenProbes: 2, SuccessThreshold: 2})
		h := machTripAndRecover(t, m, t0)
		p1 := machAdmit(t, m, h)
		p2 := machAdmit(t, m, h)
		require.True(t, m.Report(h.Add(time.Second), p2, Success, nil, 0))
		assert.Equal(t, HalfOpen, m.State())
		require.True(t, m.Report(h.Add(2*time.Second), p1, Success, nil, 0))
		assert.Equal(t, Closed, m.State())
	})

	t.Run("the first success closes; the other probe is then stale", func(t *testing.T) {
		t0 := time.Unix(1_700_000_000, 0)
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, HalfOpenProbes: 2})
		h := machTripAndRecover(t, m, t0)
		p1 := machAdmit(t, m, h)
		p2 := machAdmit(t, m, h)
		require.True(t, m.Report(h.Add(time.Second), p1, Success, nil, 0))
		assert.Equal(t, Closed, m.State())
		assert.False(t, m.Report(h.Add(2*time.Second), p2, Failure, errMachineDown, 0))
		assert.Equal(t, Closed, m.State())
		c := m.Counts(h.Add(2 * time.Second))
		assert.Equal(t, uint64(1), c.Stale)
		assert.Zero(t, c.ConsecutiveFailures)
	})
}

func TestMachineProbeFailureReopens(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	probeErr := errors.New("still down")
	m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, HalfOpenProbes: 2})
	h := machTripAndRecover(t, m, t0)
	p1 := machAdmit(t, m, h)
	p2 := machAdmit(t, m, h)
	gen := m.Generation()

	now := h.Add(2 * time.Second)
	require.True(t, m.Report(now, p1, Failure, probeErr, 0))
	assert.Equal(t, Open, m.State())
	assert.NotEqual(t, gen, m.Generation())
	assert.Equal(t, now.Add(10*time.Second), m.OpenUntil())
	trs := machTake(m)
	require.Len(t, trs, 1)
	assert.Equal(t, machEdge{HalfOpen, Open, "probe failed"}, machEdges(trs)[0])
	assert.Equal(t, now, trs[0].At)
	assert.Equal(t, now.Add(10*time.Second), trs[0].OpenUntil)
	assert.Zero(t, trs[0].Counts.ProbesInFlight)
	assert.Equal(t, uint64(2), trs[0].Counts.Trips)

	_, err := m.Admit(now)
	oe := machRejected(t, err)
	assert.Equal(t, Open, oe.State)
	assert.Equal(t, probeErr, oe.Cause)

	// The other probe is stale now.
	assert.False(t, m.Report(now.Add(time.Second), p2, Success, nil, 0))
	assert.Equal(t, Open, m.State())
	c := m.Counts(now)
	assert.Equal(t, uint64(1), c.Stale)
	assert.Zero(t, c.ProbesInFlight)
	assert.Equal(t, uint64(1), c.Failures)
	assert.Zero(t, c.Successes)
}

func TestMachineProbeIgnoredFreesTheSlot(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{RecoveryTimeout: 10 * time.Second})
	h := machTripAndRecover(t, m, t0)
	gen := m.Generation()
	p := machAdmit(t, m, h)
	_, err := m.Admit(h)
	machRejected(t, err)

	require.True(t, m.Report(h.Add(time.Second), p, Ignored, context.Canceled, 0))
	assert.Equal(t, HalfOpen, m.State(), "no verdict")
	assert.Equal(t, gen, m.Generation())
	c := m.Counts(h.Add(time.Second))
	assert.Zero(t, c.ProbesInFlight)
	assert.Equal(t, uint64(1), c.Ignored)
	assert.Zero(t, c.Successes+c.Failures)
	_, ok := m.Deadline()
	assert.False(t, ok, "no probe, no lease")

	// Even a slow ignored probe gives no verdict.
	p = machAdmit(t, m, h.Add(2*time.Second))
	require.True(t, m.Report(h.Add(3*time.Second), p, Ignored, context.Canceled, time.Hour))
	assert.Equal(t, HalfOpen, m.State())

	p = machAdmit(t, m, h.Add(4*time.Second))
	require.True(t, m.Report(h.Add(5*time.Second), p, Success, nil, 0))
	assert.Equal(t, Closed, m.State())
	assert.Equal(t, []machEdge{{HalfOpen, Closed, "probe succeeded"}}, machEdges(machTake(m)))
}

func TestMachineProbeLeaseExpiry(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, ProbeLease: 5 * time.Second})
	h := machTripAndRecover(t, m, t0) // t0+10s
	p := machAdmit(t, m, h)
	d, ok := m.Deadline()
	require.True(t, ok)
	assert.Equal(t, h.Add(5*time.Second), d)

	gen := m.Generation()
	m.Advance(d.Add(-1))
	assert.Equal(t, HalfOpen, m.State())
	assert.Equal(t, gen, m.Generation())
	assert.Empty(t, m.TakeTransitions())

	m.Advance(d)
	assert.Equal(t, Open, m.State())
	assert.Equal(t, d.Add(10*time.Second), m.OpenUntil())
	c := m.Counts(d)
	assert.Equal(t, uint64(1), c.Reclaimed)
	assert.Equal(t, uint64(1), c.Failures)
	assert.Equal(t, uint64(1), c.Requests)
	assert.Zero(t, c.ProbesInFlight)
	assert.Equal(t, uint64(2), c.Trips)
	trs := machTake(m)
	require.Len(t, trs, 1)
	assert.Equal(t, machEdge{HalfOpen, Open, "probe lease expired after 5s"}, machEdges(trs)[0])
	assert.Equal(t, d, trs[0].At)
	assert.Equal(t, d.Add(10*time.Second), trs[0].OpenUntil)

	// Advance again at the same time changes nothing.
	gen = m.Generation()
	m.Advance(d)
	assert.Equal(t, gen, m.Generation())

	// The late report is stale and changes nothing else.
	before := m.Counts(d.Add(time.Second))
	assert.False(t, m.Report(d.Add(time.Second), p, Success, nil, 0))
	after := m.Counts(d.Add(time.Second))
	assert.Equal(t, Open, m.State())
	assert.Equal(t, gen, m.Generation())
	before.Stale++
	assert.Equal(t, before, after)
	assert.Empty(t, m.TakeTransitions())
}

func TestMachineProbeLeaseExpiryOnAdmitAndReport(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	t.Run("a report at the lease deadline is already late", func(t *testing.T) {
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, ProbeLease: 5 * time.Second})
		h := machTripAndRecover(t, m, t0)
		p := machAdmit(t, m, h)
		assert.False(t, m.Report(h.Add(5*time.Second), p, Success, nil, 0))
		assert.Equal(t, Open, m.State())
		c := m.Counts(h.Add(5 * time.Second))
		assert.Equal(t, uint64(1), c.Reclaimed)
		assert.Equal(t, uint64(1), c.Stale)
		assert.Zero(t, c.Successes)
	})
	t.Run("a report 1ns before the deadline counts", func(t *testing.T) {
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, ProbeLease: 5 * time.Second})
		h := machTripAndRecover(t, m, t0)
		p := machAdmit(t, m, h)
		assert.True(t, m.Report(h.Add(5*time.Second-1), p, Success, nil, 0))
		assert.Equal(t, Closed, m.State())
		assert.Zero(t, m.Counts(h).Reclaimed)
	})
	t.Run("admit applies the expiry before asking for a slot", func(t *testing.T) {
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, ProbeLease: 5 * time.Second})
		h := machTripAndRecover(t, m, t0)
		machAdmit(t, m, h)
		_, err := m.Admit(h.Add(5 * time.Second))
		oe := machRejected(t, err)
		assert.Equal(t, Open, oe.State, "the lost probe reopened the circuit")
		assert.Equal(t, h.Add(15*time.Second), oe.Until)
	})
}

// TestMachineStaleReports checks that a report of a permit that is no longer
// current returns false and changes nothing but the Stale count.
func TestMachineStaleReports(t *testing.T) {
	cfg := Config{FailureThreshold: 1, RecoveryTimeout: 10 * time.Second, HalfOpenProbes: 2, SuccessThreshold: 2, ProbeLease: 5 * time.Second}
	tests := []struct {
		name  string
		setup func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time)
		o     Outcome
	}{
		{
			name: "closed permit after the circuit opened",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				p := machAdmit(t, m, t0)
				machCall(t, m, t0, machF)
				return p, t0.Add(time.Second)
			},
			o: Success,
		},
		{
			name: "closed permit after a reset of the closed circuit",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				p := machAdmit(t, m, t0)
				m.Reset(t0.Add(time.Second))
				return p, t0.Add(2 * time.Second)
			},
			o: Failure,
		},
		{
			name: "closed permit in half-open takes no slot and gives no verdict",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				p := machAdmit(t, m, t0)
				h := machTripAndRecover(t, m, t0)
				return p, h
			},
			o: Success,
		},
		{
			name: "closed permit after isolation",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				p := machAdmit(t, m, t0)
				m.Isolate(t0)
				return p, t0.Add(time.Second)
			},
			o: Failure,
		},
		{
			name: "probe reported twice",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				h := machTripAndRecover(t, m, t0)
				p := machCall(t, m, h, machS) // one success of two
				return p, h.Add(time.Second)
			},
			o: Success, // must not count as the second success
		},
		{
			name: "probe of an earlier half-open period",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				h := machTripAndRecover(t, m, t0)
				p := machAdmit(t, m, h)
				machCall(t, m, h, machF)
				h2 := m.OpenUntil()
				m.Advance(h2)
				require.Equal(t, HalfOpen, m.State())
				return p, h2
			},
			o: Success,
		},
		{
			name: "probe after its lease expired",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				h := machTripAndRecover(t, m, t0)
				p := machAdmit(t, m, h)
				m.Advance(h.Add(5 * time.Second))
				require.Equal(t, Open, m.State())
				return p, h.Add(6 * time.Second)
			},
			o: Failure,
		},
		{
			name: "probe after a reset",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				h := machTripAndRecover(t, m, t0)
				p := machAdmit(t, m, h)
				m.Reset(h)
				return p, h.Add(time.Second)
			},
			o: Failure,
		},
		{
			name: "unknown probe id of the current generation",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				h := machTripAndRecover(t, m, t0)
				machAdmit(t, m, h)
				return Permit{Gen: m.Generation(), Probe: 99}, h
			},
			o: Failure,
		},
		{
			name: "zero permit",
			setup: func(t *testing.T, m *Machine, t0 time.Time) (Permit, time.Time) {
				return Permit{}, t0
			},
			o: Failure,
		},
	}
	for _, tc := range tests {
		for _, o := range []Outcome{tc.o, Ignored} {
			t.Run(tc.name+"/"+o.String(), func(t *testing.T) {
				t0 := time.Unix(1_700_000_000, 0)
				m := machNew(t, cfg)
				p, now := tc.setup(t, m, t0)
				machTake(m)
				state, gen, until := m.State(), m.Generation(), m.OpenUntil()
				dl, dlok := m.Deadline()
				before := m.Counts(now)

				assert.False(t, m.Report(now, p, o, errMachineDown, time.Hour))

				assert.Equal(t, state, m.State())
				assert.Equal(t, gen, m.Generation())
				assert.Equal(t, until, m.OpenUntil())
				dl2, dlok2 := m.Deadline()
				assert.Equal(t, dlok, dlok2)
				assert.Equal(t, dl, dl2)
				after := m.Counts(now)
				before.Stale++
				assert.Equal(t, before, after)
				assert.Empty(t, m.TakeTransitions())
			})
		}
	}
}

// An outcome folded late, after its bucket's slot has moved on to a newer
// bucket, is already out of the window: it must not wipe the newer bucket.
func TestWindowOutcomeOlderThanItsSlot(t *testing.T) {
	w := newWindow(&Config{WindowDuration: time.Second, WindowBuckets: 1})
	t0 := time.Unix(1_700_000_000, 0)
	w.add(t0.Add(time.Second), true, false)
	w.addTallied(t0, 5, 0)
	calls, fails, _ := w.totals(t0.Add(time.Second))
	assert.Equal(t, uint64(1), calls)
	assert.Equal(t, uint64(1), fails)
}

// A wall clock stepped back by more than the window (an NTP step, a VM
// restored) finds every slot holding a newer bucket; outcomes reported
// then still count, so the rate policy keeps working.
func TestMachineTimeWindowAfterTheClockStepsBack(t *testing.T) {
	m, err := NewMachine("m", Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second, MinimumCalls: 5})
	require.NoError(t, err)
	t0 := time.Unix(1_700_000_000, 0)
	for i := range 10 {
		now := t0.Add(time.Duration(i) * time.Second)
		p, err := m.Admit(now)
		require.NoError(t, err)
		m.Report(now, p, Success, nil, 0)
	}
	back := t0.Add(-time.Minute)
	for range 5 {
		p, err := m.Admit(back)
		require.NoError(t, err)
		m.Report(back, p, Failure, errMachineDown, 0)
	}
	assert.Equal(t, Open, m.State(), "5 failures in 5 calls after the clock stepped back")
}

// TestMachineTimeWindow drives a time-based window of 10 buckets of 1s.
func TestMachineTimeWindow(t *testing.T) {
	cfg := Config{FailureRateThreshold: 0.6, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 4}
	type call struct {
		at time.Duration
		c  machOutcome
	}
	s := time.Second
	tests := []struct {
		name      string
		calls     []call
		tripAfter int
		reason    string
	}{
		{
			name:      "failures inside the window open it",
			calls:     []call{{0, machF}, {1 * s, machF}, {2 * s, machF}, {10*s - 1, machF}},
			tripAfter: 4, reason: "failure rate 100% >= 60% over 4 calls",
		},
		{
			name:  "the failures of an expired bucket do not count",
			calls: []call{{0, machF}, {1 * s, machF}, {2 * s, machF}, {10 * s, machF}},
		},
		{
			name:      "the window fills again",
			calls:     []call{{0, machF}, {1 * s, machF}, {2 * s, machF}, {10 * s, machF}, {10*s + s/2, machF}},
			tripAfter: 5, reason: "failure rate 100% >= 60% over 4 calls",
		},
		{
			name:  "a bucket expires whole: a call at 0.5s is gone at 10s",
			calls: []call{{s / 2, machF}, {1 * s, machF}, {2 * s, machF}, {10 * s, machF}},
		},
		{
			name: "expired successes stop diluting the rate",
			calls: []call{
				{0, machS}, {0, machS}, {0, machS}, {0, machS},
				{5 * s, machF}, {6 * s, machF}, {7 * s, machF}, // 3 of 7
				{10 * s, machF}, // 4 of 4 once the successes have expired (it would be 4 of 8 otherwise)
			},
			tripAfter: 8, reason: "failure rate 100% >= 60% over 4 calls",
		},
		{
			name: "successes inside the window dilute the rate",
			calls: []call{
				{1 * s, machS}, {1 * s, machS}, {1 * s, machS}, {1 * s, machS},
				{5 * s, machF}, {6 * s, machF}, {7 * s, machF}, {10*s + s/2, machF}, // 4 of 8
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, cfg)
			for i, c := range tc.calls {
				require.Equal(t, Closed, m.State(), "before call %d", i+1)
				machCall(t, m, t0.Add(c.at), c.c)
			}
			trs := machTake(m)
			if tc.tripAfter == 0 {
				assert.Equal(t, Closed, m.State())
				assert.Empty(t, trs)
				return
			}
			require.Len(t, tc.calls, tc.tripAfter)
			assert.Equal(t, Open, m.State())
			require.Len(t, trs, 1)
			assert.Equal(t, tc.reason, trs[0].Reason)
		})
	}
}

func TestMachineTimeWindowCounts(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{FailureRateThreshold: 1, WindowDuration: 10 * time.Second, WindowBuckets: 10, MinimumCalls: 100,
		SlowCallThreshold: time.Second, SlowCallRateThreshold: 1})
	machCall(t, m, t0, machF)
	machCall(t, m, t0.Add(500*time.Millisecond), machS)
	machCall(t, m, t0.Add(3*time.Second), machSlow(time.Second))
	machCall(t, m, t0.Add(3*time.Second), machF)
	machCall(t, m, t0.Add(3*time.Second), machI) // ignored calls are not in the window

	tests := []struct {
		at                 time.Duration
		calls, fails, slow uint64
	}{
		{500 * time.Millisecond, 2, 1, 0},
		{3 * time.Second, 4, 2, 1},
		{10*time.Second - 1, 4, 2, 1},
		{10 * time.Second, 2, 1, 1},
		{13*time.Second - 1, 2, 1, 1},
		{13 * time.Second, 0, 0, 0},
		{time.Hour, 0, 0, 0},
	}
	for _, tc := range tests {
		c := m.Counts(t0.Add(tc.at))
		assert.Equal(t, tc.calls, c.WindowCalls, "WindowCalls at +%s", tc.at)
		assert.Equal(t, tc.fails, c.WindowFailures, "WindowFailures at +%s", tc.at)
		assert.Equal(t, tc.slow, c.WindowSlowCalls, "WindowSlowCalls at +%s", tc.at)
		if tc.calls > 0 {
			assert.InDelta(t, float64(tc.fails)/float64(tc.calls), c.FailureRate, 1e-12)
			assert.InDelta(t, float64(tc.slow)/float64(tc.calls), c.SlowCallRate, 1e-12)
		} else {
			assert.Zero(t, c.FailureRate)
			assert.Zero(t, c.SlowCallRate)
		}
		assert.Equal(t, uint64(5), c.Requests)
	}
	assert.Equal(t, Closed, m.State())
}

func TestMachineSlowProbe(t *testing.T) {
	tests := []struct {
		name    string
		elapsed time.Duration
		want    State
		reason  string
	}{
		{"a fast probe closes", time.Second - 1, Closed, "probe succeeded"},
		{"a probe at the threshold is slow and reopens", time.Second, Open, "probe slow (1s >= 1s)"},
		{"a slower probe reopens", 3 * time.Second, Open, "probe slow (3s >= 1s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, SlowCallThreshold: time.Second})
			h := machTripAndRecover(t, m, t0)
			now := h.Add(tc.elapsed)
			p := machAdmit(t, m, h)
			require.True(t, m.Report(now, p, Success, nil, tc.elapsed))
			assert.Equal(t, tc.want, m.State())
			trs := machTake(m)
			require.Len(t, trs, 1)
			assert.Equal(t, tc.reason, trs[0].Reason)
			c := m.Counts(now)
			if tc.want == Open {
				assert.Equal(t, uint64(1), c.SlowCalls)
				assert.Equal(t, now.Add(10*time.Second), m.OpenUntil())
				assert.NoError(t, m.OpenError().Cause)
			} else {
				assert.Zero(t, c.SlowCalls)
			}
		})
	}
}

func TestMachineRetryAfter(t *testing.T) {
	base := Config{FailureThreshold: 5, RecoveryTimeout: 10 * time.Second, MaxRecoveryTimeout: time.Minute}
	tests := []struct {
		name    string
		cfg     Config
		probe   bool // the failure is a probe's; otherwise a closed call's
		err     error
		openFor time.Duration // 0: the circuit stays closed
		reason  string
	}{
		{"closed: longer hint", base, false, machineRetryErr{30 * time.Second}, 30 * time.Second, "retry-after 30s from upstream"},
		{"closed: shorter hint keeps the period", base, false, machineRetryErr{5 * time.Second}, 10 * time.Second, "retry-after 5s from upstream"},
		{"closed: hint capped by MaxRecoveryTimeout", base, false, machineRetryErr{5 * time.Minute}, time.Minute, "retry-after 1m0s from upstream"},
		{"closed: wrapped hint", base, false, fmt.Errorf("call: %w", machineRetryErr{45 * time.Second}), 45 * time.Second, "retry-after 45s from upstream"},
		{"closed: negative hint is none", base, false, machineRetryErr{-time.Second}, 0, ""},
		{"closed: default cap of 10 minutes", Config{}, false, machineRetryErr{time.Hour}, 10 * time.Minute, "retry-after 10m0s from upstream"},
		{"probe: longer hint", base, true, machineRetryErr{30 * time.Second}, 30 * time.Second, "probe failed, retry-after 30s from upstream"},
		{"probe: hint capped", base, true, machineRetryErr{5 * time.Minute}, time.Minute, "probe failed, retry-after 1m0s from upstream"},
		{"probe: no hint", base, true, errMachineDown, 10 * time.Second, "probe failed"},
		{
			"probe: backoff longer than the hint",
			Config{RecoveryTimeout: 10 * time.Second, BackoffMultiplier: 3, MaxRecoveryTimeout: time.Minute},
			true, machineRetryErr{20 * time.Second}, 30 * time.Second, "probe failed, retry-after 20s from upstream",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, tc.cfg)
			now := t0
			if tc.probe {
				now = machTripAndRecover(t, m, t0)
			}
			machCall(t, m, now, machOutcome{o: Failure, err: tc.err})
			trs := machTake(m)
			if tc.openFor == 0 {
				assert.Equal(t, Closed, m.State())
				assert.Empty(t, trs)
				return
			}
			require.Equal(t, Open, m.State())
			assert.Equal(t, now.Add(tc.openFor), m.OpenUntil())
			require.Len(t, trs, 1)
			assert.Equal(t, tc.reason, trs[0].Reason)
			assert.Equal(t, now.Add(tc.openFor), trs[0].OpenUntil)
			_, err := m.Admit(now)
			oe := machRejected(t, err)
			assert.Equal(t, tc.openFor, oe.RetryAfter)
			assert.Equal(t, now.Add(tc.openFor), oe.Until)
			assert.Equal(t, tc.err, oe.Cause)
			// The hint holds the circuit open for the whole period.
			_, err = m.Admit(now.Add(tc.openFor - 1))
			machRejected(t, err)
			machAdmit(t, m, now.Add(tc.openFor))
			assert.Equal(t, HalfOpen, m.State())
		})
	}
}

func TestMachineBackoff(t *testing.T) {
	s := time.Second
	tests := []struct {
		name  string
		cfg   Config
		fails []string // how each probe fails: fail, slow, lease, trip, retry
		want  []time.Duration
	}{
		{
			name:  "fixed period by default",
			cfg:   Config{RecoveryTimeout: s},
			fails: []string{"fail", "fail", "fail"},
			want:  []time.Duration{s, s, s, s},
		},
		{
			name:  "doubling capped at 5s",
			cfg:   Config{RecoveryTimeout: s, BackoffMultiplier: 2, MaxRecoveryTimeout: 5 * s},
			fails: []string{"fail", "fail", "fail", "fail", "fail"},
			want:  []time.Duration{s, 2 * s, 4 * s, 5 * s, 5 * s, 5 * s},
		},
		{
			name:  "multiplier 1.5",
			cfg:   Config{RecoveryTimeout: 2 * s, BackoffMultiplier: 1.5, MaxRecoveryTimeout: 5 * s},
			fails: []string{"fail", "fail", "fail"},
			want:  []time.Duration{2 * s, 3 * s, 4500 * time.Millisecond, 5 * s},
		},
		{
			name:  "every kind of probe failure grows the period",
			cfg:   Config{RecoveryTimeout: s, BackoffMultiplier: 2, MaxRecoveryTimeout: time.Hour, SlowCallThreshold: s, ProbeLease: 3 * s},
			fails: []string{"fail", "slow", "lease", "trip", "retry"},
			want:  []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s},
		},
		{
			name:  "default cap of 10 minutes",
			cfg:   Config{RecoveryTimeout: time.Minute, BackoffMultiplier: 10},
			fails: []string{"fail", "fail", "fail"},
			want:  []time.Duration{time.Minute, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute},
		},
		{
			name:  "huge multiplier saturates at the cap",
			cfg:   Config{RecoveryTimeout: s, BackoffMultiplier: 1e6, MaxRecoveryTimeout: 1000 * time.Hour},
			fails: []string{"fail", "fail", "fail", "fail", "fail", "fail", "fail", "fail"},
			want: []time.Duration{s, 1e6 * s, 1000 * time.Hour, 1000 * time.Hour, 1000 * time.Hour, 1000 * time.Hour,
				1000 * time.Hour, 1000 * time.Hour, 1000 * time.Hour},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Len(t, tc.want, len(tc.fails)+1)
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, tc.cfg)
			ncfg, err := tc.cfg.normalize()
			require.NoError(t, err)

			m.Trip(t0)
			got := []time.Duration{m.OpenUntil().Sub(t0)}
			for _, how := range tc.fails {
				h := m.OpenUntil()
				p := machAdmit(t, m, h)
				require.Equal(t, HalfOpen, m.State())
				at := h
				switch how {
				case "fail":
					require.True(t, m.Report(h, p, Failure, errMachineDown, 0))
				case "slow":
					require.True(t, m.Report(h, p, Success, nil, ncfg.SlowCallThreshold))
				case "lease":
					at = h.Add(ncfg.ProbeLease)
					m.Advance(at)
				case "trip":
					m.Trip(h)
				case "retry":
					require.True(t, m.Report(h, p, Failure, machineRetryErr{time.Millisecond}, 0))
				default:
					t.Fatalf("bad kind %q", how)
				}
				require.Equal(t, Open, m.State(), "after %s", how)
				got = append(got, m.OpenUntil().Sub(at))
				assert.Equal(t, m.OpenUntil().Sub(at), machOpenFor(m))
			}
			assert.Equal(t, tc.want, got)

			// A close resets the backoff.
			h := m.OpenUntil()
			machCall(t, m, h, machS)
			require.Equal(t, Closed, m.State())
			m.Trip(h.Add(time.Second))
			assert.Equal(t, tc.want[0], m.OpenUntil().Sub(h.Add(time.Second)), "first period after a close")

			// So does a manual reset.
			for range 3 {
				h := m.OpenUntil()
				machAdmit(t, m, h)
				m.Trip(h)
			}
			m.Reset(m.OpenUntil().Add(-1))
			now := m.OpenUntil().Add(time.Hour)
			m.Trip(now)
			assert.Equal(t, tc.want[0], m.OpenUntil().Sub(now), "first period after a reset")
		})
	}
}

// machJitterPeriods opens and resets a fresh machine n times and returns the
// open periods, then does the same across n consecutive probe failures.
func machJitterPeriods(t testing.TB, cfg Config, n int) (fresh, backoff []time.Duration) {
	t.Helper()
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, cfg)
	now := t0
	for range n {
		m.Trip(now)
		fresh = append(fresh, m.OpenUntil().Sub(now))
		require.Equal(t, m.OpenUntil().Sub(now), machOpenFor(m))
		now = now.Add(time.Second)
		m.Reset(now)
	}
	m.Trip(now)
	for range n {
		now = m.OpenUntil()
		machAdmit(t, m, now)
		m.Trip(now)
		backoff = append(backoff, m.OpenUntil().Sub(now))
	}
	return fresh, backoff
}

func TestMachineJitter(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		min, max time.Duration // of a first open period
	}{
		{"10%", Config{RecoveryTimeout: 10 * time.Second, Jitter: 0.1, Seed: 42}, 9 * time.Second, 11 * time.Second},
		{"50%", Config{RecoveryTimeout: 10 * time.Second, Jitter: 0.5, Seed: 7}, 5 * time.Second, 15 * time.Second},
		{"100%", Config{RecoveryTimeout: 10 * time.Second, Jitter: 1, Seed: 9}, 0, 20 * time.Second},
		{"capped by MaxRecoveryTimeout", Config{RecoveryTimeout: 10 * time.Second, MaxRecoveryTimeout: 10 * time.Second, Jitter: 0.5, Seed: 3}, 5 * time.Second, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const n = 300
			fresh, backoff := machJitterPeriods(t, tc.cfg, n)
			for i, d := range fresh {
				assert.GreaterOrEqual(t, d, tc.min, "period %d", i)
				assert.LessOrEqual(t, d, tc.max, "period %d", i)
			}
			assert.Greater(t, len(slices.Compact(slices.Sorted(slices.Values(fresh)))), n/2, "the periods are spread")
			below := slices.ContainsFunc(fresh, func(d time.Duration) bool { return d < tc.cfg.RecoveryTimeout })
			assert.True(t, below, "some periods are shorter than RecoveryTimeout")
			if tc.max > tc.cfg.RecoveryTimeout {
				above := slices.ContainsFunc(fresh, func(d time.Duration) bool { return d > tc.cfg.RecoveryTimeout })
				assert.True(t, above, "some periods are longer than RecoveryTimeout")
			}

			// The same seed gives the same periods; another seed others.
			fresh2, backoff2 := machJitterPeriods(t, tc.cfg, n)
			assert.Equal(t, fresh, fresh2)
			assert.Equal(t, backoff, backoff2)
			other := tc.cfg
			other.Seed++
			fresh3, _ := machJitterPeriods(t, other, n)
			assert.NotEqual(t, fresh, fresh3)
		})
	}

	t.Run("with backoff", func(t *testing.T) {
		cfg := Config{RecoveryTimeout: time.Second, BackoffMultiplier: 2, MaxRecoveryTimeout: 8 * time.Second, Jitter: 0.25, Seed: 11}
		ncfg, err := cfg.normalize()
		require.NoError(t, err)
		t0 := time.Unix(1_700_000_000, 0)
		m := machNew(t, cfg)
		m.Trip(t0)
		for k := 2; k <= 8; k++ {
			now := m.OpenUntil()
			machAdmit(t, m, now)
			m.Trip(now)
			d := m.OpenUntil().Sub(now)
			base := ncfg.openPeriod(k)
			assert.GreaterOrEqual(t, d, time.Duration(float64(base)*0.75), "period %d", k)
			assert.LessOrEqual(t, d, min(time.Duration(float64(base)*1.25), 8*time.Second), "period %d", k)
		}
	})

	t.Run("seed 0 is random", func(t *testing.T) {
		cfg := Config{RecoveryTimeout: 10 * time.Second, Jitter: 0.5}
		a, _ := machJitterPeriods(t, cfg, 20)
		b, _ := machJitterPeriods(t, cfg, 20)
		assert.NotEqual(t, a, b)
	})
}

// TestMachineJitterAtAHugeCap opens a circuit with jitter and a cap of
// math.MaxInt64 ("no cap") many times in a row: every open period must
// stay positive and within the cap.
func TestMachineJitterAtAHugeCap(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := Config{RecoveryTimeout: time.Hour, BackoffMultiplier: 10, MaxRecoveryTimeout: math.MaxInt64, Jitter: 0.1, Seed: 1}
	m := machNew(t, cfg)
	now := t0
	m.Trip(now)
	for i := range 30 {
		require.Equal(t, Open, m.State())
		d := machOpenFor(m)
		require.Positive(t, d, "open period %d", i+1)
		require.True(t, m.OpenUntil().After(now), "open period %d ends at %s, before it started at %s", i+1, m.OpenUntil(), now)
		_, err := m.Admit(now)
		machRejected(t, err)
		now = m.OpenUntil()
		machAdmit(t, m, now)
		m.Trip(now)
	}
}

func TestMachineTrip(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := Config{RecoveryTimeout: 10 * time.Second, BackoffMultiplier: 2}

	t.Run("from closed", func(t *testing.T) {
		m := machNew(t, cfg)
		p := machAdmit(t, m, t0)
		m.Trip(t0)
		assert.Equal(t, Open, m.State())
		assert.Equal(t, t0.Add(10*time.Second), m.OpenUntil())
		trs := machTake(m)
		assert.Equal(t, []machEdge{{Closed, Open, "manual trip"}}, machEdges(trs))
		assert.Equal(t, t0.Add(10*time.Second), trs[0].OpenUntil)
		assert.Equal(t, uint64(1), m.Counts(t0).Trips)
		assert.NoError(t, m.OpenError().Cause)
		assert.False(t, m.Report(t0, p, Success, nil, 0), "calls admitted before are stale")
	})

	t.Run("no-op when open", func(t *testing.T) {
		m := machNew(t, cfg)
		m.Trip(t0)
		machTake(m)
		gen, until := m.Generation(), m.OpenUntil()
		m.Trip(t0.Add(5 * time.Second))
		assert.Equal(t, gen, m.Generation())
		assert.Equal(t, until, m.OpenUntil())
		assert.Empty(t, m.TakeTransitions())
		assert.Equal(t, uint64(1), m.Counts(t0).Trips)
	})

	t.Run("from half-open, with backoff", func(t *testing.T) {
		m := machNew(t, cfg)
		m.Trip(t0)
		h := t0.Add(10 * time.Second)
		p := machAdmit(t, m, h)
		m.Trip(h.Add(time.Second))
		assert.Equal(t, Open, m.State())
		assert.Equal(t, h.Add(21*time.Second), m.OpenUntil())
		assert.Equal(t, []machEdge{
			{Closed, Open, "manual trip"},
			{Open, HalfOpen, "recovery timeout elapsed"},
			{HalfOpen, Open, "manual trip"},
		}, machEdges(machTake(m)))
		assert.False(t, m.Report(h.Add(2*time.Second), p, Success, nil, 0))
		assert.Zero(t, m.Counts(h).ProbesInFlight)
	})

	t.Run("after the open period turns half-open first", func(t *testing.T) {
		m := machNew(t, cfg)
		m.Trip(t0)
		m.Trip(t0.Add(10 * time.Second))
		assert.Equal(t, Open, m.State())
		assert.Equal(t, t0.Add(30*time.Second), m.OpenUntil())
		assert.Equal(t, []machEdge{
			{Closed, Open, "manual trip"},
			{Open, HalfOpen, "recovery timeout elapsed"},
			{HalfOpen, Open, "manual trip"},
		}, machEdges(machTake(m)))
	})

	t.Run("no-op when isolated", func(t *testing.T) {
		m := machNew(t, cfg)
		m.Isolate(t0)
		machTake(m)
		gen := m.Generation()
		m.Trip(t0.Add(time.Hour))
		assert.Equal(t, gen, m.Generation())
		assert.True(t, m.Isolated())
		assert.True(t, m.OpenUntil().IsZero())
		assert.Empty(t, m.TakeTransitions())
	})
}

func TestMachineIsolate(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := Config{RecoveryTimeout: 10 * time.Second}
	check := func(t *testing.T, m *Machine, now time.Time) {
		t.Helper()
		assert.Equal(t, Open, m.State())
		assert.True(t, m.Isolated())
		assert.True(t, m.OpenUntil().IsZero())
		_, ok := m.Deadline()
		assert.False(t, ok, "no deadline while isolated")
		_, err := m.Admit(now)
		oe := machRejected(t, err)
		assert.True(t, oe.Isolated)
		assert.Equal(t, Open, oe.State)
		assert.True(t, oe.Until.IsZero())
		assert.Zero(t, oe.RetryAfter)
		assert.Equal(t, `engine: circuit "svc" isolated`, oe.Error())

		// Time never moves it.
		gen := m.Generation()
		for _, d := range []time.Duration{time.Second, time.Hour, 100 * 365 * 24 * time.Hour} {
			m.Advance(now.Add(d))
			_, err := m.Admit(now.Add(d))
			machRejected(t, err)
		}
		assert.Equal(t, Open, m.State())
		assert.Equal(t, gen, m.Generation())
		assert.Empty(t, m.TakeTransitions())

		// Reset ends it.
		later := now.Add(200 * 365 * 24 * time.Hour)
		m.Reset(later)
		assert.Equal(t, Closed, m.State())
		assert.False(t, m.Isolated())
		assert.NotEqual(t, gen, m.Generation())
		trs := machTake(m)
		assert.Equal(t, []machEdge{{Open, Closed, "manual reset"}}, machEdges(trs))
		machCall(t, m, later, machS)
	}

	t.Run("from closed", func(t *testing.T) {
		m := machNew(t, cfg)
		p := machAdmit(t, m, t0)
		m.Isolate(t0)
		trs := machTake(m)
		require.Equal(t, []machEdge{{Closed, Open, "isolated"}}, machEdges(trs))
		assert.True(t, trs[0].OpenUntil.IsZero())
		assert.Equal(t, uint64(1), trs[0].Counts.Trips)
		assert.False(t, m.Report(t0, p, Failure, errMachineDown, 0))
		check(t, m, t0)
	})

	t.Run("from open", func(t *testing.T) {
		m := machNew(t, cfg)
		m.Trip(t0)
		machTake(m)
		gen := m.Generation()
		m.Isolate(t0.Add(time.Second))
		assert.NotEqual(t, gen, m.Generation(), "isolation changes the generation")
		assert.Empty(t, m.TakeTransitions(), "open to open is no transition")
		assert.Equal(t, uint64(1), m.Counts(t0).Trips)
		check(t, m, t0.Add(10*time.Second))
	})

	t.Run("from half-open", func(t *testing.T) {
		m := machNew(t, cfg)
		h := machTripAndRecover(t, m, t0)
		p := machAdmit(t, m, h)
		m.Isolate(h)
		assert.Equal(t, []machEdge{{HalfOpen, Open, "isolated"}}, machEdges(machTake(m)))
		assert.Zero(t, m.Counts(h).ProbesInFlight)
		assert.False(t, m.Report(h, p, Success, nil, 0))
		check(t, m, h)
	})

	t.Run("twice", func(t *testing.T) {
		m := machNew(t, cfg)
		m.Isolate(t0)
		machTake(m)
		gen := m.Generation()
		m.Isolate(t0.Add(time.Second))
		assert.NotEqual(t, gen, m.Generation())
		assert.Empty(t, m.TakeTransitions())
		check(t, m, t0.Add(time.Second))
	})

	t.Run("when the open period is over it turns half-open first", func(t *testing.T) {
		m := machNew(t, cfg)
		m.Trip(t0)
		m.Isolate(t0.Add(10 * time.Second))
		assert.Equal(t, []machEdge{
			{Closed, Open, "manual trip"},
			{Open, HalfOpen, "recovery timeout elapsed"},
			{HalfOpen, Open, "isolated"},
		}, machEdges(machTake(m)))
		check(t, m, t0.Add(10*time.Second))
	})
}

func TestMachineReset(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)

	t.Run("when closed: new generation, counts forgotten, no transition", func(t *testing.T) {
		m := machNew(t, Config{FailureThreshold: 3})
		machCall(t, m, t0, machF)
		machCall(t, m, t0, machF)
		p := machAdmit(t, m, t0)
		gen := m.Generation()
		m.Reset(t0.Add(time.Second))
		assert.Equal(t, Closed, m.State())
		assert.Equal(t, gen+1, m.Generation())
		assert.Empty(t, m.TakeTransitions())
		c := m.Counts(t0.Add(time.Second))
		assert.Zero(t, c.ConsecutiveFailures)
		assert.Equal(t, uint64(2), c.Failures, "totals are kept")
		assert.False(t, m.Report(t0.Add(time.Second), p, Failure, errMachineDown, 0), "calls admitted before are stale")

		machCall(t, m, t0.Add(2*time.Second), machF)
		machCall(t, m, t0.Add(2*time.Second), machF)
		assert.Equal(t, Closed, m.State(), "the run started over")
		machCall(t, m, t0.Add(2*time.Second), machF)
		assert.Equal(t, Open, m.State())
	})

	t.Run("when closed: the window is forgotten", func(t *testing.T) {
		m := machNew(t, Config{FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 4})
		for range 3 {
			machCall(t, m, t0, machF)
		}
		assert.Equal(t, uint64(3), m.Counts(t0).WindowCalls)
		m.Reset(t0)
		c := m.Counts(t0)
		assert.Zero(t, c.WindowCalls)
		assert.Zero(t, c.WindowFailures)
		machCall(t, m, t0, machF)
		assert.Equal(t, Closed, m.State(), "1 call < MinimumCalls")
	})

	t.Run("when open", func(t *testing.T) {
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second})
		m.Trip(t0)
		machTake(m)
		m.Reset(t0.Add(time.Second))
		assert.Equal(t, Closed, m.State())
		assert.True(t, m.OpenUntil().IsZero())
		_, ok := m.Deadline()
		assert.False(t, ok)
		trs := machTake(m)
		assert.Equal(t, []machEdge{{Open, Closed, "manual reset"}}, machEdges(trs))
		assert.Equal(t, t0.Add(time.Second), trs[0].At)
		assert.True(t, trs[0].OpenUntil.IsZero())
		machCall(t, m, t0.Add(time.Second), machS)
		assert.NoError(t, m.OpenError().Cause)
	})

	t.Run("when half-open", func(t *testing.T) {
		m := machNew(t, Config{RecoveryTimeout: 10 * time.Second})
		h := machTripAndRecover(t, m, t0)
		p := machAdmit(t, m, h)
		m.Reset(h)
		assert.Equal(t, Closed, m.State())
		assert.Equal(t, []machEdge{{HalfOpen, Closed, "manual reset"}}, machEdges(machTake(m)))
		assert.Zero(t, m.Counts(h).ProbesInFlight)
		assert.False(t, m.Report(h, p, Success, nil, 0))
	})
}

func TestMachineDeadline(t *testing.T) {
	cfg := Config{FailureThreshold: 1, RecoveryTimeout: 10 * time.Second, HalfOpenProbes: 3, ProbeLease: 5 * time.Second}
	tests := []struct {
		name  string
		setup func(t *testing.T, m *Machine, t0 time.Time) time.Time // returns now
		want  time.Duration                                          // from t0; -1: none
	}{
		{"new", func(t *testing.T, m *Machine, t0 time.Time) time.Time { return t0 }, -1},
		{"closed after calls", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			machCall(t, m, t0, machS)
			return t0
		}, -1},
		{"open", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			machCall(t, m, t0.Add(time.Second), machF)
			return t0.Add(time.Second)
		}, 11 * time.Second},
		{"half-open without probes", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			m.Advance(t0.Add(10 * time.Second))
			return t0.Add(10 * time.Second)
		}, -1},
		{"half-open with one probe", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			machAdmit(t, m, t0.Add(10*time.Second))
			return t0.Add(10 * time.Second)
		}, 15 * time.Second},
		{"half-open: the earliest lease", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			machAdmit(t, m, t0.Add(10*time.Second))
			machAdmit(t, m, t0.Add(12*time.Second))
			machAdmit(t, m, t0.Add(11*time.Second))
			return t0.Add(12 * time.Second)
		}, 15 * time.Second},
		{"half-open: the earliest lease after the first probe reported", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			p := machAdmit(t, m, t0.Add(10*time.Second))
			machAdmit(t, m, t0.Add(12*time.Second))
			machAdmit(t, m, t0.Add(11*time.Second))
			require.True(t, m.Report(t0.Add(13*time.Second), p, Ignored, nil, 0))
			return t0.Add(13 * time.Second)
		}, 16 * time.Second},
		{"open again after a lease expired", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			machAdmit(t, m, t0.Add(10*time.Second))
			m.Advance(t0.Add(15 * time.Second))
			return t0.Add(15 * time.Second)
		}, 25 * time.Second},
		{"isolated", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			m.Isolate(t0)
			return t0
		}, -1},
		{"closed by a probe", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			machCall(t, m, t0.Add(10*time.Second), machS)
			return t0.Add(10 * time.Second)
		}, -1},
		{"reset", func(t *testing.T, m *Machine, t0 time.Time) time.Time {
			m.Trip(t0)
			m.Reset(t0)
			return t0
		}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1_700_000_000, 0)
			m := machNew(t, cfg)
			now := tc.setup(t, m, t0)
			machTake(m)
			d, ok := m.Deadline()
			gen, state := m.Generation(), m.State()
			if tc.want < 0 {
				assert.False(t, ok)
				assert.True(t, d.IsZero())
				// Time alone changes nothing.
				m.Advance(now.Add(1000 * time.Hour))
				assert.Equal(t, gen, m.Generation())
				assert.Equal(t, state, m.State())
				return
			}
			require.True(t, ok)
			assert.Equal(t, t0.Add(tc.want), d)
			assert.True(t, d.After(now))
			// Nothing happens before the deadline, something at it.
			m.Advance(d.Add(-1))
			assert.Equal(t, gen, m.Generation())
			assert.Equal(t, state, m.State())
			assert.Empty(t, m.TakeTransitions())
			m.Advance(d)
			assert.NotEqual(t, gen, m.Generation())
			assert.NotEmpty(t, m.TakeTransitions())
		})
	}
}

func TestMachineTransitions(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m, err := NewMachine("payments", Config{FailureThreshold: 2, RecoveryTimeout: 10 * time.Second, BackoffMultiplier: 2})
	require.NoError(t, err)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	machCall(t, m, at(0), machF)
	machCall(t, m, at(1), machF)                     // 1: closed -> open until 11
	machCall(t, m, at(11), machF)                    // 2: open -> half_open, 3: half_open -> open until 31
	first := machTake(m)                             // take in the middle: Seq goes on
	machCall(t, m, at(31), machS)                    // 4: open -> half_open, 5: half_open -> closed
	m.Reset(at(32))                                  // no transition
	m.Isolate(at(33))                                // 6: closed -> open (isolated)
	m.Reset(at(34))                                  // 7: open -> closed
	m.Trip(at(35))                                   // 8: closed -> open until 45
	m.Advance(at(45))                                // 9: open -> half_open
	trs := slices.Concat(first, m.TakeTransitions()) // the concatenation copies

	type tr struct {
		From, To  State
		At        time.Time
		Reason    string
		OpenUntil time.Time
	}
	want := []tr{
		{Closed, Open, at(1), "2 consecutive failures", at(11)},
		{Open, HalfOpen, at(11), "recovery timeout elapsed", time.Time{}},
		{HalfOpen, Open, at(11), "probe failed", at(31)},
		{Open, HalfOpen, at(31), "recovery timeout elapsed", time.Time{}},
		{HalfOpen, Closed, at(31), "probe succeeded", time.Time{}},
		{Closed, Open, at(33), "isolated", time.Time{}},
		{Open, Closed, at(34), "manual reset", time.Time{}},
		{Closed, Open, at(35), "manual trip", at(45)},
		{Open, HalfOpen, at(45), "recovery timeout elapsed", time.Time{}},
	}
	require.Len(t, trs, len(want))
	for i, w := range want {
		got := trs[i]
		assert.Equal(t, w, tr{got.From, got.To, got.At, got.Reason, got.OpenUntil}, "transition %d", i+1)
		assert.Equal(t, uint64(i+1), got.Seq, "transition %d", i+1)
		assert.Equal(t, "payments", got.Name)
		assert.Zero(t, got.Missed)
		c := got.Counts
		assert.Equal(t, c.Successes+c.Failures+c.Ignored, c.Requests, "transition %d", i+1)
	}
	// Counts at the moment of each transition.
	assert.Equal(t, uint64(2), trs[0].Counts.ConsecutiveFailures)
	assert.Equal(t, uint64(2), trs[0].Counts.Failures)
	assert.Equal(t, uint64(1), trs[0].Counts.Trips)
	assert.Equal(t, uint64(3), trs[2].Counts.Failures)
	assert.Equal(t, uint64(2), trs[2].Counts.Trips)
	assert.Equal(t, uint64(1), trs[4].Counts.Successes)
	assert.Zero(t, trs[4].Counts.ConsecutiveFailures, "closing restarts the runs")
	assert.Equal(t, uint64(3), trs[5].Counts.Trips)
	assert.Equal(t, uint64(4), trs[7].Counts.Trips)

	assert.Empty(t, m.TakeTransitions())
	m.Trip(at(46))
	next := m.TakeTransitions()
	require.Len(t, next, 1)
	assert.Equal(t, uint64(10), next[0].Seq)
}

func TestMachineReportN(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{FailureThreshold: 3, FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 10})
	p := machAdmit(t, m, t0)
	machCall(t, m, t0, machF)
	machCall(t, m, t0, machF)
	require.True(t, m.ReportN(t0, p, Success, 4))
	require.True(t, m.ReportN(t0, p, Ignored, 2))
	c := m.Counts(t0)
	assert.Equal(t, uint64(4), c.Successes)
	assert.Equal(t, uint64(2), c.Ignored)
	assert.Equal(t, uint64(8), c.Requests)
	assert.Equal(t, uint64(4), c.ConsecutiveSuccesses)
	assert.Zero(t, c.ConsecutiveFailures)
	assert.Equal(t, uint64(6), c.WindowCalls)
	assert.Equal(t, uint64(2), c.WindowFailures)

	// More successes than the window holds leave only successes in it.
	require.True(t, m.ReportN(t0, p, Success, 1000))
	c = m.Counts(t0)
	assert.Equal(t, uint64(10), c.WindowCalls)
	assert.Zero(t, c.WindowFailures)

	// Stale once the circuit has opened, and for probes.
	m.Trip(t0)
	before := m.Counts(t0)
	assert.False(t, m.ReportN(t0, p, Success, 5))
	before.Stale += 5
	assert.Equal(t, before, m.Counts(t0))
	h := m.OpenUntil()
	probe := machAdmit(t, m, h)
	assert.False(t, m.ReportN(h, probe, Success, 1))
	assert.Equal(t, HalfOpen, m.State())
	assert.Equal(t, 1, m.Counts(h).ProbesInFlight)
}

// TestMachineReportNFailures: failures are applied one by one, as Report
// would, never booked as successes; those after the trip are stale.
func TestMachineReportNFailures(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{FailureThreshold: 3})
	p := machAdmit(t, m, t0)
	assert.False(t, m.ReportN(t0, p, Failure, 5))
	assert.Equal(t, Open, m.State())
	c := m.Counts(t0)
	assert.Zero(t, c.Successes)
	assert.Equal(t, uint64(3), c.Failures)
	assert.Equal(t, uint64(2), c.Stale)

	m.Reset(t0)
	p = machAdmit(t, m, t0)
	assert.True(t, m.ReportN(t0, p, Failure, 2))
	assert.Equal(t, Closed, m.State())
	assert.Equal(t, uint64(2), m.Counts(t0).ConsecutiveFailures)
}

func TestMachineOpenErrorCause(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{FailureThreshold: 2, RecoveryTimeout: 10 * time.Second})
	e1, e2 := errors.New("first"), errors.New("second")
	machCall(t, m, t0, machOutcome{o: Failure, err: e1})
	machCall(t, m, t0, machOutcome{o: Failure, err: e2})
	_, err := m.Admit(t0)
	oe := machRejected(t, err)
	assert.Equal(t, e2, oe.Cause, "the failure that opened the circuit")
	// Closing forgets the cause.
	machCall(t, m, t0.Add(10*time.Second), machS)
	assert.NoError(t, m.OpenError().Cause)
}

func TestMachineRejectAndProbesFull(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, HalfOpenProbes: 2})
	m.Reject(3)
	assert.Equal(t, uint64(3), m.Counts(t0).Rejected)
	assert.False(t, m.ProbesFull(), "closed")
	m.Trip(t0)
	assert.False(t, m.ProbesFull(), "open")
	h := t0.Add(10 * time.Second)
	m.Advance(h)
	assert.False(t, m.ProbesFull(), "half-open, no probe")
	p := machAdmit(t, m, h)
	assert.False(t, m.ProbesFull(), "half-open, one probe of two")
	machAdmit(t, m, h)
	assert.True(t, m.ProbesFull())
	_, err := m.Admit(h)
	machRejected(t, err)
	assert.Equal(t, uint64(4), m.Counts(h).Rejected)
	require.True(t, m.Report(h, p, Ignored, context.Canceled, 0))
	assert.False(t, m.ProbesFull())
}

// TestMachineFailureRateReachedOnASuccess: the failure-rate policy "opens
// the circuit when the share of failures in the sliding window reaches it,
// once the window holds MinimumCalls calls". Here the window reaches
// MinimumCalls with a success, at a rate of exactly the threshold.
func TestMachineFailureRateReachedOnASuccess(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 4})
	for i, c := range []machOutcome{machF, machF, machS, machS} {
		machCall(t, m, t0.Add(time.Duration(i)*time.Second), c)
	}
	c := m.Counts(t0.Add(3 * time.Second))
	require.Equal(t, uint64(4), c.WindowCalls)
	require.Equal(t, 0.5, c.FailureRate)
	assert.Equal(t, Open, m.State(), "4 calls >= MinimumCalls, failure rate 50% >= 50%")
}

// TestMachineLeaseExpiryReclaimsEveryExpiredProbe: "Reclaimed counts probes
// whose lease expired before they reported; each is counted as a failure."
func TestMachineLeaseExpiryReclaimsEveryExpiredProbe(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	m := machNew(t, Config{RecoveryTimeout: 10 * time.Second, HalfOpenProbes: 2, ProbeLease: 5 * time.Second})
	h := machTripAndRecover(t, m, t0)
	machAdmit(t, m, h)
	machAdmit(t, m, h)
	m.Advance(h.Add(5 * time.Second))
	require.Equal(t, Open, m.State())
	c := m.Counts(h.Add(5 * time.Second))
	assert.Equal(t, uint64(2), c.Reclaimed, "both leases expired")
	assert.Equal(t, uint64(2), c.Failures)
}

// reportTallies takes the run from the caller when the tallies hold both
// kinds, extends the current run when they hold one, counts totals, trips
// on the consecutive policy, and drops stale tallies.
func TestMachineReportTallies(t *testing.T) {
	t0 := time.Unix(1000, 0)
	m := machNew(t, Config{FailureThreshold: 3})
	p, err := m.Admit(t0)
	require.NoError(t, err)

	require.True(t, m.reportTallies(t0, p, 5, 4, 0, 2))
	c := m.Counts(t0)
	assert.Equal(t, uint64(5), c.Successes)
	assert.Equal(t, uint64(4), c.Failures)
	assert.Equal(t, uint64(2), c.ConsecutiveFailures, "the failures after the latest success")
	assert.Equal(t, uint64(0), c.ConsecutiveSuccesses)
	assert.Equal(t, Closed, m.State())

	require.True(t, m.reportTallies(t0, p, 1, 0, 1, 0))
	assert.Equal(t, uint64(0), m.Counts(t0).ConsecutiveFailures, "a success came last")
	assert.Equal(t, uint64(1), m.Counts(t0).ConsecutiveSuccesses)
	require.True(t, m.reportTallies(t0, p, 2, 0, 0, 0))
	assert.Equal(t, uint64(3), m.Counts(t0).ConsecutiveSuccesses, "successes alone extend the run")

	require.True(t, m.reportTallies(t0, p, 0, 2, 0, 0))
	assert.Equal(t, uint64(2), m.Counts(t0).ConsecutiveFailures)
	assert.Equal(t, Closed, m.State())
	require.True(t, m.reportTallies(t0, p, 0, 1, 0, 0))
	assert.Equal(t, Open, m.State(), "failures alone extend the run to the threshold")
	trs := m.TakeTransitions()
	require.Len(t, trs, 1)
	assert.Equal(t, "3 consecutive failures", trs[0].Reason)

	assert.False(t, m.reportTallies(t0, p, 2, 1, 0, 1), "admitted before the trip: stale")
	assert.Equal(t, uint64(3), m.Counts(t0).Stale)
}

// reportOrdered places each failure after the successes it saw, and one
// that saw no more than base (successes folded before) first.
func TestMachineReportOrdered(t *testing.T) {
	m, err := NewMachine("m", Config{FailureRateThreshold: 0.5, WindowSize: 8, MinimumCalls: 8})
	require.NoError(t, err)
	t0 := time.Unix(1_700_000_000, 0)
	p := Permit{Gen: m.Generation()}
	require.True(t, m.reportOrdered(t0, p, 0, 2, nil)) // S S
	// Successes 3 to 6 of the tally, failures that saw 1 (no more than
	// base: first), 4 and 4, and 6 (after them all): F S S F F S S F.
	require.True(t, m.reportOrdered(t0, p, 2, 4, []uint64{1, 4, 4, 6}))
	var got []bool
	for i := range 8 {
		got = append(got, m.win.ring[(m.win.pos+i)%8]&flagFail != 0)
	}
	assert.Equal(t, []bool{true, false, false, true, true, false, false, true}, got)
	c := m.Counts(t0)
	assert.Equal(t, uint64(6), c.Successes)
	assert.Equal(t, uint64(4), c.Failures)
	assert.Equal(t, uint64(1), c.ConsecutiveFailures)
	assert.Equal(t, Closed, m.State(), "tallied failures are not checked (4 of 8 would open it)")

	m.Trip(t0)
	assert.False(t, m.reportOrdered(t0, p, 6, 1, []uint64{7}), "admitted before the trip: stale")
	assert.Equal(t, uint64(2), m.Counts(t0).Stale)
}
