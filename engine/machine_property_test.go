package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// propConfig draws a valid config. Periods are at least 1ms and jitter at
// most 50%, so that no open period is empty.
func propConfig(t *rapid.T) Config {
	ms := time.Millisecond
	rt := time.Duration(rapid.IntRange(1, 10_000).Draw(t, "RecoveryTimeoutMs")) * ms
	c := Config{
		FailureThreshold: rapid.IntRange(0, 6).Draw(t, "FailureThreshold"),
		RecoveryTimeout:  rt,
		Jitter:           rapid.SampledFrom([]float64{0, 0, 0.1, 0.5}).Draw(t, "Jitter"),
		Seed:             rapid.Uint64Range(1, math.MaxUint64).Draw(t, "Seed"),
		HalfOpenProbes:   rapid.IntRange(0, 4).Draw(t, "HalfOpenProbes"),
		SuccessThreshold: rapid.IntRange(0, 4).Draw(t, "SuccessThreshold"),
		ProbeLease:       time.Duration(rapid.IntRange(0, 20_000).Draw(t, "ProbeLeaseMs")) * ms,
	}
	if rapid.Bool().Draw(t, "backoff") {
		c.BackoffMultiplier = rapid.Float64Range(1, 4).Draw(t, "BackoffMultiplier")
	}
	if rapid.Bool().Draw(t, "cap") {
		c.MaxRecoveryTimeout = rt * time.Duration(rapid.IntRange(1, 20).Draw(t, "capTimes"))
	}
	if rapid.Bool().Draw(t, "failureRate") {
		c.FailureRateThreshold = rapid.Float64Range(0.05, 1).Draw(t, "FailureRateThreshold")
	}
	if rapid.Bool().Draw(t, "slow") {
		c.SlowCallThreshold = time.Duration(rapid.IntRange(1, 1000).Draw(t, "SlowCallThresholdMs")) * ms
		if rapid.Bool().Draw(t, "slowRate") {
			c.SlowCallRateThreshold = rapid.Float64Range(0.05, 1).Draw(t, "SlowCallRateThreshold")
		}
	}
	if rapid.Bool().Draw(t, "shouldTrip") {
		k := uint64(rapid.IntRange(1, 6).Draw(t, "shouldTripAfter"))
		c.ShouldTrip = func(c Counts) bool { return c.ConsecutiveFailures >= k }
	}
	switch rapid.IntRange(0, 2).Draw(t, "window") {
	case 1:
		c.WindowSize = rapid.IntRange(1, 30).Draw(t, "WindowSize")
		c.MinimumCalls = rapid.IntRange(0, c.WindowSize).Draw(t, "MinimumCalls")
	case 2:
		c.WindowDuration = time.Duration(rapid.IntRange(10, 20_000).Draw(t, "WindowDurationMs")) * ms
		c.WindowBuckets = rapid.IntRange(0, 10).Draw(t, "WindowBuckets")
		c.MinimumCalls = rapid.IntRange(0, 30).Draw(t, "MinimumCalls")
	default:
		c.MinimumCalls = rapid.IntRange(0, 30).Draw(t, "MinimumCalls")
	}
	return c
}

// propOp is one step of a random run. Everything is drawn up front, so
// that the same ops can be replayed on a second machine.
type propOp struct {
	Kind    string
	Dt      time.Duration // advance: how far
	Frac    float64       // before: how far towards the deadline
	Idx     int           // report, reportN: which permit (mod the number issued)
	Recent  bool          // report: pick among the last few permits
	Outcome Outcome
	Err     int           // for a failure: 0 plain, 1 Retry-After, 2 wrapped Retry-After
	RA      time.Duration // the Retry-After hint
	Elapsed time.Duration
	N       uint64
}

func propOps(cfg Config) *rapid.Generator[propOp] {
	// Weighted: calls and reports dominate; isolation is rare, since it
	// holds the circuit until a reset.
	weights := map[string]int{
		"call": 8, "admit": 4, "report": 6, "reportN": 1,
		"advance": 3, "deadline": 3, "before": 1,
		"trip": 1, "reset": 1, "isolate": 1,
	}
	var kinds []string
	for _, k := range []string{"call", "admit", "report", "reportN", "advance", "deadline", "before", "trip", "reset", "isolate"} {
		for range weights[k] {
			kinds = append(kinds, k)
		}
	}
	kinds = append(kinds, "call", "report") // 2 more, so that isolate is 1 in 32
	span := int64(2 * max(cfg.RecoveryTimeout, cfg.ProbeLease))
	slow := int64(time.Second) // twice the slow-call threshold
	if cfg.SlowCallThreshold > 0 {
		slow = int64(2 * cfg.SlowCallThreshold)
	}
	return rapid.Custom(func(t *rapid.T) propOp {
		op := propOp{Kind: rapid.SampledFrom(kinds).Draw(t, "kind")}
		switch op.Kind {
		case "advance":
			op.Dt = time.Duration(rapid.Int64Range(0, span).Draw(t, "dt"))
		case "before":
			op.Frac = rapid.Float64Range(0, 1).Draw(t, "frac")
		case "report", "call":
			op.Idx = rapid.IntRange(0, 1<<20).Draw(t, "idx")
			op.Recent = rapid.Bool().Draw(t, "recent")
			op.Outcome = rapid.SampledFrom([]Outcome{Success, Success, Failure, Failure, Failure, Ignored}).Draw(t, "outcome")
			if op.Outcome == Failure {
				op.Err = rapid.SampledFrom([]int{0, 0, 0, 0, 1, 2}).Draw(t, "err")
				if op.Err > 0 {
					op.RA = time.Duration(rapid.Int64Range(0, int64(2*cfg.MaxRecoveryTimeout)).Draw(t, "retryAfter"))
				}
			}
			op.Elapsed = time.Duration(rapid.OneOf(
				rapid.Just(int64(0)), rapid.Just(slow/2-1), rapid.Just(slow/2), rapid.Int64Range(0, slow),
			).Draw(t, "elapsed"))
		case "reportN":
			op.Idx = rapid.IntRange(0, 1<<20).Draw(t, "idx")
			op.Outcome = rapid.SampledFrom([]Outcome{Success, Ignored}).Draw(t, "outcome")
			op.N = rapid.Uint64Range(1, 50).Draw(t, "n")
		}
		return op
	})
}

type propPermit struct {
	p        Permit
	at       time.Time // when admitted
	reported bool
}

// propRun drives one machine through ops and checks the invariants after
// every step. trace records everything observable, for comparing runs.
type propRun struct {
	t   *rapid.T
	m   *Machine
	cfg Config // normalized

	now        time.Time
	lastAt     time.Time // of the last transition (creation at first)
	lastReason string
	state      State // after the last transition seen
	seq        uint64
	toOpen     uint64
	streak     int // consecutive open periods, as the docs define them
	permits    []propPermit
	prev       Counts
	trace      []string
}

func newPropRun(t *rapid.T, cfg Config) *propRun {
	ncfg, err := cfg.normalize()
	require.NoError(t, err)
	m, err := NewMachine("prop", cfg)
	require.NoError(t, err)
	t0 := time.Unix(1_700_000_000, 0)
	return &propRun{t: t, m: m, cfg: ncfg, now: t0, lastAt: t0, state: Closed}
}

func (r *propRun) logf(format string, args ...any) {
	r.trace = append(r.trace, fmt.Sprintf(format, args...))
}

func propLegal(tr Transition) bool {
	switch {
	case tr.From == tr.To:
		return false
	case tr.To == Closed && tr.Reason == "manual reset":
		return true
	case tr.To == Open && tr.Reason == "isolated":
		return true
	}
	switch [2]State{tr.From, tr.To} {
	case [2]State{Closed, Open}, [2]State{Open, HalfOpen}, [2]State{HalfOpen, Open}, [2]State{HalfOpen, Closed}:
		return true
	}
	return false
}

// drain takes the transitions and checks them; it returns how many there
// were.
func (r *propRun) drain() int {
	t := r.t
	trs := r.m.TakeTransitions()
	for _, tr := range trs {
		require.Equal(t, r.seq+1, tr.Seq, "Seq goes up by one")
		r.seq = tr.Seq
		require.Equal(t, r.state, tr.From, "transition %d starts where the last one ended", tr.Seq)
		require.True(t, propLegal(tr), "illegal transition %s -> %s (%s)", tr.From, tr.To, tr.Reason)
		require.Equal(t, "prop", tr.Name)
		require.Equal(t, r.now, tr.At)
		require.False(t, tr.At.Before(r.lastAt), "transitions in time order")
		require.Zero(t, tr.Missed)
		c := tr.Counts
		require.Equal(t, c.Successes+c.Failures+c.Ignored, c.Requests)
		switch {
		case tr.To != Open:
			require.True(t, tr.OpenUntil.IsZero(), "OpenUntil of a transition to %s", tr.To)
		case tr.Reason == "isolated":
			require.True(t, tr.OpenUntil.IsZero(), "OpenUntil of an isolation")
		default:
			require.True(t, tr.OpenUntil.After(tr.At), "an open period ends after it starts")
		}
		switch {
		case tr.To == Closed:
			r.streak = 0
		case tr.To == Open && tr.Reason != "isolated":
			r.streak++
		}
		if tr.To == Open {
			r.toOpen++
			require.Equal(t, r.toOpen, c.Trips, "Trips counts the transitions to open")
		}
		if tr.From == Closed && strings.HasSuffix(tr.Reason, " consecutive failures") {
			require.Equal(t, uint64(r.cfg.FailureThreshold), c.ConsecutiveFailures, "opens at exactly FailureThreshold")
		}
		r.state, r.lastAt, r.lastReason = tr.To, tr.At, tr.Reason
		r.logf("transition %d %s->%s %q at %d until %d", tr.Seq, tr.From, tr.To, tr.Reason, tr.At.UnixNano(), tr.OpenUntil.UnixNano())
	}
	require.Equal(t, r.state, r.m.State())
	return len(trs)
}

func (r *propRun) outstandingProbes() []propPermit {
	var ps []propPermit
	for _, p := range r.permits {
		if p.p.Probe != 0 && p.p.Gen == r.m.Generation() && !p.reported {
			ps = append(ps, p)
		}
	}
	return ps
}

// unchanged checks that nothing but Stale (by stale) changed since before.
func (r *propRun) unchanged(state State, gen uint64, before Counts, stale uint64) {
	t := r.t
	require.Equal(t, state, r.m.State(), "a stale report changes no state")
	require.Equal(t, gen, r.m.Generation(), "a stale report changes no generation")
	before.Stale += stale
	require.Equal(t, before, r.m.Counts(r.now), "a stale report changes only Stale")
}

func (r *propRun) errFor(op propOp) error {
	switch op.Outcome {
	case Success:
		return nil
	case Ignored:
		return context.Canceled
	}
	switch op.Err {
	case 1:
		return machineRetryErr{op.RA}
	case 2:
		return fmt.Errorf("wrapped: %w", machineRetryErr{op.RA})
	}
	return errMachineDown
}

// admit calls Admit and checks the answer; it reports whether the call was
// admitted (its permit is then the last one).
func (r *propRun) admit() bool {
	t, m := r.t, r.m
	mustReject := m.State() == Open && (m.Isolated() || r.now.Before(m.OpenUntil()))
	full := m.ProbesFull()
	rejected := m.Counts(r.now).Rejected
	p, err := m.Admit(r.now)
	r.drain()
	if err != nil {
		require.ErrorIs(t, err, ErrOpen)
		var oe *OpenError
		require.True(t, errors.As(err, &oe))
		require.Equal(t, m.State(), oe.State)
		require.NotEqual(t, Closed, m.State())
		require.Equal(t, rejected+1, m.Counts(r.now).Rejected)
		require.Equal(t, m.Isolated(), oe.Isolated)
		if oe.State == Open {
			require.True(t, m.Isolated() || r.now.Before(oe.Until), "rejected only before the end of the open period")
			require.Equal(t, m.OpenUntil(), oe.Until)
		} else {
			require.True(t, oe.Until.IsZero())
			require.Equal(t, r.cfg.HalfOpenProbes, m.Counts(r.now).ProbesInFlight, "rejected in half-open only when every slot is taken")
			require.True(t, full, "ProbesFull said Admit would not reject")
		}
		r.logf("admit: %v", err)
		return false
	}
	require.False(t, mustReject, "admitted while open before %s (now %s)", m.OpenUntil(), r.now)
	require.False(t, full, "ProbesFull said Admit would reject")
	require.Equal(t, m.Generation(), p.Gen)
	switch m.State() {
	case Closed:
		require.Zero(t, p.Probe)
	case HalfOpen:
		require.NotZero(t, p.Probe)
	default:
		t.Fatalf("admitted in state %s", m.State())
	}
	r.permits = append(r.permits, propPermit{p: p, at: r.now})
	r.logf("admit: %+v", p)
	return true
}

// report reports op's outcome for pp and checks the answer.
func (r *propRun) report(op propOp, pp *propPermit) {
	t, m := r.t, r.m
	// Apply time first: staleness is judged against the generation
	// current at the time of the report.
	m.Advance(r.now)
	r.drain()
	state, gen, before := m.State(), m.Generation(), m.Counts(r.now)
	mayTrip := m.SuccessMayTrip(r.now)
	ok := m.Report(r.now, pp.p, op.Outcome, r.errFor(op), op.Elapsed)
	if ok && state == Closed && op.Outcome == Success && !mayTrip && (r.cfg.SlowCallThreshold == 0 || op.Elapsed < r.cfg.SlowCallThreshold) {
		require.Equal(t, state, m.State(), "a success that SuccessMayTrip said could not trip did")
	}
	switch {
	case pp.p.Gen != gen:
		require.False(t, ok, "report of generation %d in generation %d", pp.p.Gen, gen)
		r.unchanged(state, gen, before, 1)
	case pp.p.Probe != 0 && pp.reported:
		require.False(t, ok, "a probe reported twice is stale")
		r.unchanged(state, gen, before, 1)
	default:
		require.True(t, ok)
		require.Equal(t, pp.p.Probe == 0, state == Closed, "a current closed permit in closed, a current probe in half-open")
	}
	pp.reported = true
	r.logf("report %+v %s elapsed %s: %v", pp.p, op.Outcome, op.Elapsed, ok)
}

func (r *propRun) step(op propOp) {
	t, m := r.t, r.m
	genBefore := m.Generation()
	seqBefore := r.seq
	switch op.Kind {
	case "admit":
		r.admit()

	case "call":
		if r.admit() {
			r.report(op, &r.permits[len(r.permits)-1])
		}

	case "report":
		if len(r.permits) == 0 {
			r.logf("report: no permit")
			break
		}
		i := op.Idx % len(r.permits)
		if op.Recent {
			i = len(r.permits) - 1 - op.Idx%min(len(r.permits), 4)
		}
		r.report(op, &r.permits[i])

	case "reportN":
		if len(r.permits) == 0 {
			r.logf("reportN: no permit")
			break
		}
		pp := r.permits[op.Idx%len(r.permits)]
		m.Advance(r.now)
		r.drain()
		state, gen, before := m.State(), m.Generation(), m.Counts(r.now)
		mayTrip := m.SuccessMayTrip(r.now)
		ok := m.ReportN(r.now, pp.p, op.Outcome, op.N)
		if ok && state == Closed && op.Outcome == Success && !mayTrip {
			require.Equal(t, state, m.State(), "successes that SuccessMayTrip said could not trip did")
		}
		require.Equal(t, pp.p.Gen == gen && pp.p.Probe == 0 && state == Closed, ok)
		if !ok {
			r.unchanged(state, gen, before, op.N)
		}
		r.logf("reportN %+v %s %d: %v", pp.p, op.Outcome, op.N, ok)

	case "advance":
		r.now = r.now.Add(op.Dt)
		m.Advance(r.now)
		r.logf("advance %s", op.Dt)

	case "deadline":
		d, ok := m.Deadline()
		if !ok {
			// Time alone changes nothing.
			r.now = r.now.Add(time.Hour)
			m.Advance(r.now)
			require.Equal(t, genBefore, m.Generation(), "no deadline, yet time changed something")
			r.logf("deadline: none")
			break
		}
		require.True(t, d.After(r.now))
		r.now = d
		m.Advance(r.now)
		require.NotEqual(t, genBefore, m.Generation(), "nothing happened at the deadline")
		r.logf("deadline %d", d.UnixNano())

	case "before":
		d, ok := m.Deadline()
		if !ok {
			r.logf("before: none")
			break
		}
		mid := r.now.Add(time.Duration(op.Frac * float64(d.Sub(r.now))))
		if !mid.Before(d) {
			mid = d.Add(-1)
		}
		r.now = mid
		m.Advance(r.now)
		require.Equal(t, genBefore, m.Generation(), "something happened before the deadline")
		r.logf("before %d", mid.UnixNano())

	case "trip":
		wasOpen := m.State() == Open
		m.Trip(r.now)
		require.Equal(t, Open, m.State())
		if wasOpen {
			require.Equal(t, genBefore, m.Generation(), "Trip of an open circuit is a no-op")
		}
		r.logf("trip")

	case "reset":
		m.Reset(r.now)
		require.Equal(t, Closed, m.State())
		require.False(t, m.Isolated())
		require.Greater(t, m.Generation(), genBefore)
		r.logf("reset")

	case "isolate":
		m.Isolate(r.now)
		require.Equal(t, Open, m.State())
		require.True(t, m.Isolated())
		require.Greater(t, m.Generation(), genBefore)
		r.logf("isolate")

	default:
		t.Fatalf("bad op %q", op.Kind)
	}
	r.drain()
	r.check(genBefore, r.seq-seqBefore)
}

// check asserts the invariants that hold between any two steps.
func (r *propRun) check(genBefore, transitions uint64) {
	t, m := r.t, r.m
	c := m.Counts(r.now)
	gen := m.Generation()

	require.Equal(t, c.Successes+c.Failures+c.Ignored, c.Requests)
	require.Equal(t, r.toOpen, c.Trips)
	require.GreaterOrEqual(t, gen-genBefore, transitions, "every transition changes the generation")

	// Totals never go down.
	p := r.prev
	for _, x := range [][2]uint64{
		{p.Successes, c.Successes}, {p.Failures, c.Failures}, {p.Ignored, c.Ignored}, {p.Rejected, c.Rejected},
		{p.SlowCalls, c.SlowCalls}, {p.Stale, c.Stale}, {p.Reclaimed, c.Reclaimed}, {p.Trips, c.Trips},
	} {
		require.LessOrEqual(t, x[0], x[1], "a total went down: %+v -> %+v", p, c)
	}
	r.prev = c

	// Probes.
	require.LessOrEqual(t, c.ProbesInFlight, r.cfg.HalfOpenProbes)
	out := r.outstandingProbes()
	require.Len(t, out, c.ProbesInFlight, "ProbesInFlight is the probes admitted and not yet reported")
	if m.State() != HalfOpen {
		require.Zero(t, c.ProbesInFlight)
	}
	require.Equal(t, m.State() == HalfOpen && c.ProbesInFlight >= r.cfg.HalfOpenProbes, m.ProbesFull())

	// Window.
	require.LessOrEqual(t, c.WindowFailures, c.WindowCalls)
	require.LessOrEqual(t, c.WindowSlowCalls, c.WindowCalls)
	if r.cfg.WindowSize > 0 {
		require.LessOrEqual(t, c.WindowCalls, uint64(r.cfg.WindowSize))
	}

	// States.
	switch m.State() {
	case Closed:
		require.False(t, m.Isolated())
		require.True(t, m.OpenUntil().IsZero())
		if r.cfg.FailureThreshold > 0 {
			require.Less(t, c.ConsecutiveFailures, uint64(r.cfg.FailureThreshold))
		}
	case HalfOpen:
		require.False(t, m.Isolated())
		require.True(t, m.OpenUntil().IsZero())
	case Open:
		if m.Isolated() {
			require.True(t, m.OpenUntil().IsZero())
			break
		}
		// Every method applies time first, so the period is not over.
		require.True(t, m.OpenUntil().After(r.now), "open until %s, now %s", m.OpenUntil(), r.now)
		openFor := m.OpenUntil().Sub(r.lastAt)
		require.Equal(t, openFor, m.OpenError().RetryAfter)
		require.LessOrEqual(t, openFor, r.cfg.MaxRecoveryTimeout)
		base := float64(r.cfg.openPeriod(r.streak))
		lo := time.Duration(base*(1-r.cfg.Jitter)) - 1
		hi := min(time.Duration(base*(1+r.cfg.Jitter))+1, r.cfg.MaxRecoveryTimeout)
		require.GreaterOrEqual(t, openFor, lo, "open period %d too short (%s)", r.streak, r.lastReason)
		if !strings.Contains(r.lastReason, "retry-after") {
			require.LessOrEqual(t, openFor, hi, "open period %d too long (%s)", r.streak, r.lastReason)
		}
	}

	// Deadline.
	d, ok := m.Deadline()
	switch {
	case m.State() == Open && !m.Isolated():
		require.True(t, ok)
		require.Equal(t, m.OpenUntil(), d)
	case m.State() == HalfOpen && len(out) > 0:
		require.True(t, ok)
		first := out[0].at
		for _, p := range out[1:] {
			if p.at.Before(first) {
				first = p.at
			}
		}
		require.Equal(t, first.Add(r.cfg.ProbeLease), d, "the earliest probe lease")
	default:
		require.False(t, ok, "deadline in %s", m.State())
	}
	if ok {
		require.False(t, d.Before(r.lastAt), "deadline %s before the last transition at %s", d, r.lastAt)
		require.True(t, d.After(r.now), "deadline %s not after now %s", d, r.now)
	}
	r.logf("state %s gen %d until %d counts %+v", m.State(), gen, m.OpenUntil().UnixNano(), c)
}

func TestPropertyMachineInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := propConfig(t)
		r := newPropRun(t, cfg)
		ops := rapid.SliceOfN(propOps(r.cfg), 30, 300).Draw(t, "ops")
		for _, op := range ops {
			r.step(op)
		}
	})
}

// TestPropertyMachineDeterministic replays the same ops on a second
// machine with the same config and seed: everything observable is the
// same.
func TestPropertyMachineDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := propConfig(t)
		a := newPropRun(t, cfg)
		ops := rapid.SliceOfN(propOps(a.cfg), 10, 150).Draw(t, "ops")
		b := newPropRun(t, cfg)
		for i, op := range ops {
			a.step(op)
			b.step(op)
			require.Equal(t, a.trace, b.trace, "after op %d (%+v)", i, op)
		}
	})
}
