package engine

import (
	"fmt"
	"time"
)

// State is the state of a circuit.
type State int

const (
	// Closed lets every call through and watches the outcomes.
	Closed State = iota
	// HalfOpen lets a few probe calls through to test whether the upstream
	// has recovered, and rejects the rest.
	HalfOpen
	// Open rejects every call until the open period has passed (or, when
	// isolated, until Reset).
	Open
)

// String returns "closed", "half_open" or "open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half_open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Outcome is how a finished call counts against the breaker.
type Outcome uint8

const (
	// Success counts in the upstream's favour.
	Success Outcome = iota
	// Failure counts against the upstream.
	Failure
	// Ignored counts neither way; a probe that ends Ignored frees its slot
	// without a verdict. The default classifier gives it to context.Canceled,
	// since a caller giving up says nothing about the upstream.
	Ignored
)

// String returns "success", "failure" or "ignored".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Ignored:
		return "ignored"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Counts is what a breaker has seen, as returned by [Breaker.Counts] and
// carried by each [Transition]. The totals run from the breaker's
// creation; the consecutive and window figures restart whenever the circuit
// closes or is reset.
type Counts struct {
	// Requests is the number of calls whose outcome was applied:
	// Successes + Failures + Ignored.
	Requests uint64
	// Successes, Failures and Ignored count applied outcomes by kind.
	Successes, Failures, Ignored uint64
	// Rejected counts calls refused without running.
	Rejected uint64
	// SlowCalls counts applied outcomes that took at least
	// Config.SlowCallThreshold.
	SlowCalls uint64
	// Stale counts reports dropped because the breaker had changed state
	// since the call was admitted, including probes reported after their
	// lease had expired.
	Stale uint64
	// Reclaimed counts probes whose lease expired before they reported;
	// each is counted as a failure.
	Reclaimed uint64
	// Trips counts transitions to Open, for any reason.
	Trips uint64

	// ConsecutiveSuccesses and ConsecutiveFailures count the current run of
	// like outcomes (ignored calls neither extend nor break a run).
	ConsecutiveSuccesses, ConsecutiveFailures uint64

	// WindowCalls, WindowFailures and WindowSlowCalls cover the sliding
	// window of the rate policies (zero when none is configured).
	WindowCalls, WindowFailures, WindowSlowCalls uint64
	// FailureRate and SlowCallRate are WindowFailures and WindowSlowCalls
	// over WindowCalls, or 0 for an empty window.
	FailureRate, SlowCallRate float64

	// ProbesInFlight is the number of half-open probes admitted and not yet
	// reported.
	ProbesInFlight int
}

// Transition is one change of a breaker's state, as delivered to
// subscribers ([Breaker.Subscribe], [Engine.Subscribe]); Config.OnStateChange
// gets its name and states.
type Transition struct {
	// Name is the breaker's name.
	Name string
	// From and To are the states before and after.
	From, To State
	// At is when it happened, on the breaker's clock.
	At time.Time
	// Reason says why, in words: "5 consecutive failures",
	// "recovery timeout elapsed", "probe succeeded", "manual reset"...
	Reason string
	// OpenUntil is when an Open circuit will let a probe through; zero
	// unless To is Open, and zero while the circuit is isolated.
	OpenUntil time.Time
	// Cause is the failure that opened the circuit, if one did; nil unless
	// To is Open. An error with a RetryAfter() time.Duration method here
	// means the upstream set the open period.
	Cause error
	// Counts are the breaker's counts at the moment of the transition.
	Counts Counts
	// Seq numbers a breaker's transitions 1, 2, 3... with no gaps, so a
	// subscriber can tell the order and spot what it missed.
	Seq uint64
	// Missed is how many transitions this subscriber lost to a full buffer
	// just before this one. On an [Engine.Subscribe] stream it also counts
	// transitions the engine's own mailbox had no room for, whichever
	// breaker they came from.
	Missed uint64
}
