package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// Permit is an admission by [Machine.Admit], to be handed back to
// [Machine.Report]. A report whose generation is no longer current is
// stale and changes nothing.
type Permit struct {
	// Gen is the [Machine.Generation] the call was admitted in.
	Gen uint64
	// Probe is the probe's id in half-open, 0 otherwise.
	Probe uint64
}

type lease struct {
	id       uint64
	deadline time.Time
}

// Machine is the circuit breaker's state machine with every policy, and
// nothing else: no goroutines, no channels, no clock. Time is an argument
// of every method that needs it, so the same inputs always give the same
// outputs (with Config.Seed set, if Config.Jitter is on). A [Breaker]
// drives one from its goroutine; simulations and tests can drive one
// directly.
//
// Machine is not safe for concurrent use.
type Machine struct {
	name string
	cfg  *Config // normalized; shared by the breakers of an Engine

	state     State
	gen       uint64
	isolated  bool
	openUntil time.Time
	openFor   time.Duration
	cause     error
	streak    int // consecutive open periods since the circuit last closed

	c       tally // what Counts reports, less what it derives
	win     *window
	probes  []lease
	probeID uint64
	wins    int // probe successes in this half-open period

	rng    *rand.Rand // made on the first jittered trip
	seq    uint64
	events []Transition
}

// tally is the part of Counts a machine stores.
type tally struct {
	Successes, Failures, Ignored, Rejected, SlowCalls, Stale, Reclaimed, Trips uint64
	ConsecutiveSuccesses, ConsecutiveFailures                                  uint64
}

// NewMachine returns a closed machine for a breaker of the given name. It
// returns a [*ConfigError] if cfg is invalid.
func NewMachine(name string, cfg Config) (*Machine, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	m := makeMachine(name, &cfg)
	return &m, nil
}

// makeMachine returns a machine for a normalized config, which it may
// share with others but never changes.
func makeMachine(name string, cfg *Config) Machine {
	return Machine{name: name, cfg: cfg, gen: 1, win: newWindow(cfg)}
}

// State returns the current state. It does not apply timeouts; call
// Advance first for that.
func (m *Machine) State() State { return m.state }

// Generation identifies the current state; it changes with every
// transition, Reset and Isolate, and with a ForceOpen that extends the open
// period, so that calls admitted before count as stale.
func (m *Machine) Generation() uint64 { return m.gen }

// Isolated reports whether the circuit is held open until Reset.
func (m *Machine) Isolated() bool { return m.isolated }

// ProbesFull reports whether the circuit is half-open with every probe
// slot taken, so that Admit would reject.
func (m *Machine) ProbesFull() bool {
	return m.state == HalfOpen && len(m.probes) >= m.cfg.HalfOpenProbes
}

// SuccessMayTrip reports whether, in the closed state, a success reported
// at now, or later in now's bucket of a time-based window, could trip a
// rate policy: while the window is short of MinimumCalls (the success may
// be the call that fills it), or if it is over a threshold already, with
// the success added (a time-based window can be: old buckets leaving raise
// its rate, and no outcome has checked it since).
//
// Once false it stays false until a new bucket or a transition, whatever
// outcomes come meanwhile: at MinimumCalls or more, a failure or slow call
// that did not trip left the window under its thresholds, and with one
// more success it stays under. So a caller that found it false may tally a
// success without waiting, even if other outcomes land before its tally.
func (m *Machine) SuccessMayTrip(now time.Time) bool {
	if m.state != Closed || m.win == nil || !m.cfg.ratePolicy() {
		return false
	}
	calls, fails, slow := m.win.totals(now)
	if calls < uint64(m.cfg.MinimumCalls) {
		return true
	}
	n := calls + 1
	if m.win.ring != nil {
		n = min(n, uint64(len(m.win.ring))) // a full ring stays full
	}
	return m.cfg.FailureRateThreshold > 0 && float64(fails)/float64(n) >= m.cfg.FailureRateThreshold ||
		m.cfg.SlowCallThreshold > 0 && float64(slow)/float64(n) >= m.cfg.SlowCallRateThreshold
}

// OpenUntil is when the open circuit lets a probe through (zero unless
// open and not isolated).
func (m *Machine) OpenUntil() time.Time { return m.openUntil }

// Counts returns the counts, with the window figures as of now.
func (m *Machine) Counts(now time.Time) Counts {
	t := m.c
	c := Counts{
		Successes: t.Successes, Failures: t.Failures, Ignored: t.Ignored, Rejected: t.Rejected,
		SlowCalls: t.SlowCalls, Stale: t.Stale, Reclaimed: t.Reclaimed, Trips: t.Trips,
		ConsecutiveSuccesses: t.ConsecutiveSuccesses, ConsecutiveFailures: t.ConsecutiveFailures,
	}
	c.Requests = c.Successes + c.Failures + c.Ignored
	c.ProbesInFlight = len(m.probes)
	if m.win != nil {
		c.WindowCalls, c.WindowFailures, c.WindowSlowCalls = m.win.totals(now)
		if c.WindowCalls > 0 {
			c.FailureRate = float64(c.WindowFailures) / float64(c.WindowCalls)
			c.SlowCallRate = float64(c.WindowSlowCalls) / float64(c.WindowCalls)
		}
	}
	return c
}

// Admit decides whether a call may run now, after applying what time
// alone does (see [Machine.Advance]). It returns a Permit to pass to
// [Machine.Report], or an [*OpenError].
func (m *Machine) Admit(now time.Time) (Permit, error) {
	m.Advance(now)
	switch m.state {
	case Closed:
		return Permit{Gen: m.gen}, nil
	case HalfOpen:
		if len(m.probes) < m.cfg.HalfOpenProbes {
			m.probeID++
			m.probes = append(m.probes, lease{id: m.probeID, deadline: now.Add(m.cfg.ProbeLease)})
			return Permit{Gen: m.gen, Probe: m.probeID}, nil
		}
	}
	m.c.Rejected++
	return Permit{}, m.OpenError()
}

// OpenError returns the error a call rejected in the current state gets.
// It is meaningful only when the state is not Closed.
func (m *Machine) OpenError() *OpenError {
	e := &OpenError{
		Name:       m.name,
		State:      m.state,
		Until:      m.openUntil,
		RetryAfter: m.openFor,
		Isolated:   m.isolated,
		Cause:      m.cause,
	}
	if m.state == HalfOpen || m.isolated {
		e.RetryAfter = 0 // no period to wait out: the probes decide, or a Reset
	}
	return e
}

// Reject counts n calls rejected without asking Admit (a Breaker rejects
// from a snapshot of the open state and adds them up here).
func (m *Machine) Reject(n uint64) { m.c.Rejected += n }

// Slow reports whether a call that took elapsed counts as slow.
func (m *Machine) Slow(elapsed time.Duration) bool {
	return m.cfg.SlowCallThreshold > 0 && elapsed >= m.cfg.SlowCallThreshold
}

// Report applies the outcome of an admitted call: o is how it counts, err
// the error it returned (read for a Retry-After hint and kept as the cause
// if it opens the circuit), elapsed how long it ran. It first applies
// [Machine.Advance]; then it returns false, and changes nothing but the
// Stale count, when the report is stale: the state changed since the call
// was admitted, or the probe's lease expired.
func (m *Machine) Report(now time.Time, p Permit, o Outcome, err error, elapsed time.Duration) bool {
	return m.report(now, p, o, err, retryAfter(err), elapsed)
}

// report is Report with err's Retry-After hint read already: a Breaker
// reads it once per outcome, so that every step deciding on it sees the
// same value (a hint can be computed afresh at each read).
func (m *Machine) report(now time.Time, p Permit, o Outcome, err error, hint, elapsed time.Duration) bool {
	m.Advance(now)
	if p.Gen != m.gen {
		m.c.Stale++
		return false
	}
	if p.Probe != 0 {
		i := slices.IndexFunc(m.probes, func(l lease) bool { return l.id == p.Probe })
		if i < 0 {
			m.c.Stale++
			return false
		}
		m.probes = slices.Delete(m.probes, i, i+1)
	}
	slow := o != Ignored && m.Slow(elapsed)
	switch o {
	case Ignored:
		m.c.Ignored++
		return true
	case Success:
		m.c.Successes++
		m.c.ConsecutiveSuccesses++
		m.c.ConsecutiveFailures = 0
	default:
		o = Failure
		m.c.Failures++
		m.c.ConsecutiveFailures++
		m.c.ConsecutiveSuccesses = 0
	}
	if slow {
		m.c.SlowCalls++
	}
	switch m.state {
	case Closed:
		if m.win != nil {
			m.win.add(now, o == Failure, slow)
		}
		if o == Failure || slow || m.win != nil {
			m.checkTrip(now, o, err, hint, slow)
		}
	case HalfOpen:
		m.probeVerdict(now, o, err, hint, slow, elapsed)
	}
	return true
}

// ReportN applies n outcomes of kind o (Success or Ignored) of calls that
// were admitted with p in the closed state and were not slow, as n calls
// of Report would. A Breaker uses it to fold in outcomes that callers
// tallied without sending a message. It returns false when the reports
// are stale. Any other outcome is applied by n calls of Report, stopping
// at the first that is stale, since a failure may change the state.
func (m *Machine) ReportN(now time.Time, p Permit, o Outcome, n uint64) bool {
	if o != Success && o != Ignored {
		for i := range n {
			if !m.Report(now, p, o, nil, 0) {
				m.c.Stale += n - i - 1 // Report counted its own
				return false
			}
		}
		return true
	}
	if !m.countN(now, p, o, n) {
		return false
	}
	if o == Success && m.win != nil {
		m.checkTrip(now, Success, nil, 0, false)
	}
	return true
}

// countN is ReportN without the trip check, for tallies of outcomes that
// could not trip the circuit when they were taken (see SuccessMayTrip).
// They may be folded late, when a time-based window has moved on; checked
// then, at their own time, they would be judged against buckets that a
// later period has reused.
func (m *Machine) countN(now time.Time, p Permit, o Outcome, n uint64) bool {
	// Stale first: folding a retired snapshot's tallies must not let time
	// move the state on behind the breaker's back.
	if p.Gen != m.gen || p.Probe != 0 || m.state != Closed {
		m.c.Stale += n
		return false
	}
	m.Advance(now)
	if o == Ignored {
		m.c.Ignored += n
		return true
	}
	m.successes(now, n)
	return true
}

// successes applies n successes in the closed state, unchecked.
func (m *Machine) successes(now time.Time, n uint64) {
	m.c.Successes += n
	m.c.ConsecutiveSuccesses += n
	m.c.ConsecutiveFailures = 0
	if m.win != nil {
		m.win.addTallied(now, n, 0)
	}
}

// reportOrdered applies outcomes tallied with their order, as an ordered
// Breaker's callers tally them (see Breaker.orderedFailure): n successes
// of calls admitted under p, which follow the first base of their tally,
// and failures, each given as the successes of that tally it saw before
// it, in order: each comes after that many successes, or first if it saw
// no more than base. The failures were tallied so that none can open the
// circuit in any order (see failureRoom), so nothing is checked. Like
// ReportN it returns false, and counts them stale, unless p is a
// closed-state permit of the current generation.
func (m *Machine) reportOrdered(now time.Time, p Permit, base, n uint64, failures []uint64) bool {
	if p.Gen != m.gen || p.Probe != 0 || m.state != Closed {
		m.c.Stale += n + uint64(len(failures))
		return false
	}
	m.Advance(now)
	at := base
	for _, saw := range failures {
		if saw > at {
			m.successes(now, saw-at)
			at = saw
		}
		m.c.Failures++
		m.c.ConsecutiveFailures++
		m.c.ConsecutiveSuccesses = 0
		if m.win != nil {
			m.win.add(now, true, false)
		}
	}
	if base+n > at {
		m.successes(now, base+n-at)
	}
	return true
}

// reportTallies applies outcomes counted without their order, as a lean
// Breaker's callers count them on its snapshot: successes and failures of
// calls admitted under p. runF is how many of the failures came after the
// latest of the successes, runS how many of the successes came after the
// latest of the failures; without successes the failures extend the
// current run, and the other way round. A window, if any, is a time-based
// one, and they go to now's bucket, whose counts keep no order anyway.
// The failures were counted so that they cannot open the circuit (see
// failureRoom). Without a window the check runs all the same; with one it
// does not, since now may be a past bucket's time, and the window at that
// time may no longer be there to judge by. Like ReportN it returns false,
// and counts them stale, unless p is a closed-state permit of the current
// generation.
func (m *Machine) reportTallies(now time.Time, p Permit, successes, failures, runS, runF uint64) bool {
	if p.Gen != m.gen || p.Probe != 0 || m.state != Closed {
		m.c.Stale += successes + failures
		return false
	}
	m.Advance(now)
	m.c.Successes += successes
	m.c.Failures += failures
	cf, cs := m.c.ConsecutiveFailures+failures, m.c.ConsecutiveSuccesses+successes
	if successes > 0 {
		cf = runF
	}
	if failures > 0 {
		cs = runS
	}
	if cf > 0 && cs > 0 {
		// Outcomes at once on different goroutines, which either order
		// explains: count the failures last.
		cs = 0
	}
	m.c.ConsecutiveFailures, m.c.ConsecutiveSuccesses = cf, cs
	if m.win != nil {
		m.win.addTallied(now, successes+failures, failures)
	} else if failures > 0 {
		m.checkTrip(now, Failure, nil, 0, false)
	}
	return true
}

func (m *Machine) probeVerdict(now time.Time, o Outcome, err error, hint time.Duration, slow bool, elapsed time.Duration) {
	switch {
	case o == Failure:
		ra := m.hintedOpen(hint)
		reason := "probe failed"
		if ra > 0 {
			reason = fmt.Sprintf("probe failed, retry-after %s from upstream", ra)
		}
		m.trip(now, reason, err, ra)
	case slow:
		m.trip(now, fmt.Sprintf("probe slow (%s >= %s)", elapsed, m.cfg.SlowCallThreshold), nil, 0)
	default:
		m.wins++
		if m.wins >= m.cfg.SuccessThreshold {
			reason := "probe succeeded"
			if m.wins > 1 {
				reason = fmt.Sprintf("%d probes succeeded", m.wins)
			}
			m.transition(now, Closed, reason)
		}
	}
}

// hintedOpen is how long a Retry-After hint holds the circuit open.
func (m *Machine) hintedOpen(hint time.Duration) time.Duration {
	return min(hint, m.cfg.MaxRecoveryTimeout)
}

// checkTrip applies the trip policies after an outcome in the closed
// state. The rate policies are checked after every outcome, ShouldTrip
// after failures and slow calls only.
func (m *Machine) checkTrip(now time.Time, o Outcome, err error, hint time.Duration, slow bool) {
	var calls, fails, slw uint64
	if m.win != nil {
		calls, fails, slw = m.win.totals(now)
	}
	if reason, ra, ok := m.verdict(o, hint, m.c.ConsecutiveFailures, calls, fails, slw); ok {
		m.trip(now, reason, err, ra)
		return
	}
	if m.cfg.ShouldTrip != nil && (o == Failure || slow) && m.cfg.ShouldTrip(m.Counts(now)) {
		m.trip(now, "ShouldTrip returned true", err, 0)
	}
}

// verdict says whether the policies other than ShouldTrip open the
// circuit after an outcome o (with its Retry-After hint) that left the run of
// consecutive failures at cf and the window at calls, fails and slw, and
// why.
func (m *Machine) verdict(o Outcome, hint time.Duration, cf, calls, fails, slw uint64) (reason string, ra time.Duration, trip bool) {
	if o == Failure {
		if ra := m.hintedOpen(hint); ra > 0 {
			return fmt.Sprintf("retry-after %s from upstream", ra), ra, true
		}
	}
	if t := m.cfg.FailureThreshold; t > 0 && cf >= uint64(t) {
		return plural(cf, "consecutive failure"), 0, true
	}
	if m.win != nil {
		if t := m.cfg.FailureRateThreshold; m.over(t, calls, fails) {
			return fmt.Sprintf("failure rate %s >= %s over %d calls", pct(float64(fails)/float64(calls)), pct(t), calls), 0, true
		}
		if t := m.cfg.SlowCallRateThreshold; m.cfg.SlowCallThreshold > 0 && m.over(t, calls, slw) {
			return fmt.Sprintf("slow-call rate %s >= %s over %d calls", pct(float64(slw)/float64(calls)), pct(t), calls), 0, true
		}
	}
	return "", 0, false
}

// over reports whether n of a window's calls make a rate at or over a
// threshold t (off if 0) that opens the circuit.
func (m *Machine) over(t float64, calls, n uint64) bool {
	return t > 0 && calls >= uint64(m.cfg.MinimumCalls) && calls > 0 && float64(n)/float64(calls) >= t
}

// maxRoom bounds what failureRoom finds under a failure rate: a little
// search per message, and a message every maxRoom failures at most.
const maxRoom = 1024

// failureRoom is how many more failures the closed circuit can take, in
// any order with any number of successes, before one of them could open
// it: how many a Breaker may tally without waiting (see Breaker.failure).
// It is -1 unless the circuit is closed. It weighs the two policies under
// which a Breaker tallies failures: consecutive failures (counted as if
// no success came between them), and a failure rate over a window: a
// count-based one, or a time-based one taken at now's bucket, which the
// tallies are bound to (the window's other buckets stay as they are until
// it ends).
//
// A success never raises the rate of a window at MinimumCalls or more
// (in a full count-based window it pushes out a call, at worst a
// success), and with k more failures the rate only grows with k. So the
// worst case for k failures is with just enough successes to bring the
// window to MinimumCalls, and none of its failures pushed out; and if the
// k-th failure cannot open the circuit, none before it can.
func (m *Machine) failureRoom(now time.Time) int64 {
	if m.state != Closed {
		return -1
	}
	room := int64(math.MaxInt32)
	if t := m.cfg.FailureThreshold; t > 0 {
		room = int64(t) - 1 - int64(m.c.ConsecutiveFailures)
	}
	if t := m.cfg.FailureRateThreshold; t > 0 && m.win != nil {
		calls, fails, _ := m.win.totals(now)
		full := uint64(math.MaxUint64) // a count-based window holds no more than its size
		if m.win.ring != nil {
			full = uint64(len(m.win.ring))
		}
		trips := func(k int) bool {
			n := max(min(calls+uint64(k), full), uint64(m.cfg.MinimumCalls))
			return m.over(t, n, min(fails+uint64(k), n))
		}
		room = min(room, int64(sort.Search(maxRoom, func(i int) bool { return trips(i + 1) })))
	}
	return room
}

// mayOpen reports whether Report of this outcome could open the circuit,
// without applying it: always when it would (and when ShouldTrip would be
// asked, which it cannot ask twice), never for a stale report or one that
// does not find the circuit closed.
func (m *Machine) mayOpen(now time.Time, p Permit, o Outcome, hint, elapsed time.Duration) bool {
	if p.Gen != m.gen || p.Probe != 0 || m.state != Closed || o == Ignored {
		return false
	}
	if o != Success {
		o = Failure
	}
	slow := m.Slow(elapsed)
	if m.cfg.ShouldTrip != nil && (o == Failure || slow) {
		return true
	}
	var cf, calls, fails, slw uint64
	if o == Failure {
		cf = m.c.ConsecutiveFailures + 1
	}
	if m.win != nil {
		calls, fails, slw = m.win.with(now, o == Failure, slow)
	}
	_, _, trip := m.verdict(o, hint, cf, calls, fails, slw)
	return trip
}

// plural says "1 thing" or "n things".
func plural(n uint64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func pct(x float64) string { return fmt.Sprintf("%.0f%%", x*100) }

// Advance applies what time alone does: an open circuit whose period is
// over turns half-open, and a probe whose lease has expired is counted as a
// failure, which opens the circuit again.
func (m *Machine) Advance(now time.Time) {
	if m.state == Open && !m.isolated && !now.Before(m.openUntil) {
		m.transition(now, HalfOpen, "recovery timeout elapsed")
	}
	if m.state == HalfOpen {
		expired := 0
		for _, l := range m.probes {
			if !now.Before(l.deadline) {
				expired++
			}
		}
		if expired > 0 {
			n := uint64(expired)
			m.c.Reclaimed += n
			m.c.Failures += n
			m.c.ConsecutiveFailures += n
			m.c.ConsecutiveSuccesses = 0
			m.trip(now, fmt.Sprintf("probe lease expired after %s", m.cfg.ProbeLease), nil, 0)
		}
	}
}

// Deadline returns the next time at which Advance would change something,
// if there is one: the end of the open period, or the earliest probe lease.
func (m *Machine) Deadline() (time.Time, bool) {
	switch {
	case m.state == Open && !m.isolated:
		return m.openUntil, true
	case m.state == HalfOpen && len(m.probes) > 0:
		d := m.probes[0].deadline
		for _, l := range m.probes[1:] {
			if l.deadline.Before(d) {
				d = l.deadline
			}
		}
		return d, true
	}
	return time.Time{}, false
}

// Trip opens the circuit now, unless it is open already; recovery then
// follows as after any trip.
func (m *Machine) Trip(now time.Time) {
	m.Advance(now)
	if m.state != Open {
		m.trip(now, "manual trip", nil, 0)
	}
}

// ForceOpen opens the circuit until the given time, or keeps it open at
// least that long if it is open already: for a signal from outside the
// machine, such as another replica's breaker tripping. A time not after
// now, or an isolated circuit, changes nothing.
func (m *Machine) ForceOpen(now, until time.Time, reason string) {
	m.Advance(now)
	if !until.After(now) || m.isolated {
		return
	}
	if m.state == Open {
		if until.After(m.openUntil) {
			m.openUntil, m.openFor = until, until.Sub(now)
			m.gen++ // a new deadline for the snapshot's rejection error
		}
		return
	}
	m.streak++
	m.openFor, m.openUntil = until.Sub(now), until
	m.cause = nil
	m.c.Trips++
	m.transition(now, Open, reason)
}

// Isolate opens the circuit and holds it open until [Machine.Reset].
func (m *Machine) Isolate(now time.Time) {
	m.Advance(now)
	m.isolated = true
	m.openUntil, m.openFor = time.Time{}, 0
	if m.state != Open {
		m.c.Trips++
		m.transition(now, Open, "isolated")
		return
	}
	m.gen++
}

// Reset closes the circuit and forgets the consecutive and window counts;
// calls admitted before it become stale.
func (m *Machine) Reset(now time.Time) {
	m.Advance(now)
	if m.state != Closed {
		m.transition(now, Closed, "manual reset")
		return
	}
	m.gen++
	m.restart()
}

func (m *Machine) trip(now time.Time, reason string, cause error, ra time.Duration) {
	m.streak++
	d := m.cfg.openPeriod(m.streak)
	if j := m.cfg.Jitter; j > 0 {
		if m.rng == nil {
			seed := m.cfg.Seed
			if seed == 0 {
				seed = rand.Uint64()
			}
			// The name keeps breakers that share a Seed out of step.
			m.rng = rand.New(rand.NewPCG(seed, fnv64a(m.name)))
		}
		// In floating point, so that a period near the cap cannot overflow.
		if f := float64(d) * (1 + j*(2*m.rng.Float64()-1)); f < float64(m.cfg.MaxRecoveryTimeout) {
			d = time.Duration(f)
		} else {
			d = m.cfg.MaxRecoveryTimeout
		}
	}
	d = max(d, ra)
	m.openFor, m.openUntil = d, now.Add(d)
	m.cause = cause
	m.c.Trips++
	m.transition(now, Open, reason)
}

// restart clears what a closed period accumulates.
func (m *Machine) restart() {
	m.c.ConsecutiveFailures, m.c.ConsecutiveSuccesses = 0, 0
	if m.win != nil {
		m.win.reset()
	}
}

func (m *Machine) transition(now time.Time, to State, reason string) {
	from := m.state
	m.state = to
	m.gen++
	m.probes = m.probes[:0]
	m.wins = 0
	switch to {
	case Closed:
		m.streak = 0
		m.isolated = false
		m.cause = nil
		m.openUntil, m.openFor = time.Time{}, 0
		m.restart()
	case HalfOpen:
		m.openUntil = time.Time{}
	}
	m.seq++
	t := Transition{
		Name:      m.name,
		From:      from,
		To:        to,
		At:        now,
		Reason:    reason,
		OpenUntil: m.openUntil,
		Counts:    m.Counts(now),
		Seq:       m.seq,
	}
	if to == Open {
		t.Cause = m.cause
	}
	m.events = append(m.events, t)
}

// TakeTransitions returns the transitions since the last call, oldest
// first. The slice is reused: it is valid until the next call of any
// other method.
func (m *Machine) TakeTransitions() []Transition {
	t := m.events
	m.events = m.events[:0]
	return t
}

// fnv64a hashes s the same way in every process (FNV-1a), so that a run
// with a given Config.Seed repeats exactly.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}
