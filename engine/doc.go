// Package engine is a circuit breaker built as an actor: each breaker is one
// goroutine that owns its state, callers talk to it over channels, and every
// state change is published to subscribers as an ordered stream.
//
// # States
//
//	              a trip policy fires
//	┌────────┐ ─────────────────────────▶ ┌──────┐
//	│ closed │                            │ open │
//	└────────┘ ◀───┐              ┌─────▶ └──────┘
//	               │ enough       │ a probe     │ recovery timeout
//	               │ probes       │ fails       │ (the breaker's own timer)
//	               │ succeed  ┌───────────┐     │
//	               └──────────│ half_open │ ◀───┘
//	                          └───────────┘
//
// Closed lets every call through and feeds outcomes to the trip policies:
// consecutive failures, failure rate and slow-call rate over a sliding
// window (count- or time-based), a custom ShouldTrip, and upstream
// Retry-After hints. Open rejects every call with an *OpenError (matching
// ErrOpen) until its timer ends the open period, which can back off with
// jitter across repeated trips. Half-open lets Config.HalfOpenProbes probes
// run at once; enough successes close the circuit, any failure opens it
// again. Reset, Trip and Isolate change the state by hand.
//
// # Which entry point
//
// Most callers should use [Breaker.Do]; [Execute] is the same for functions
// that return a value, [Breaker.Call] the same without a context. [Async]
// runs the function on its own goroutine and delivers one [Result] on a
// channel. [Breaker.Admit] and [Ticket.Report] split a call in two for
// event-driven code. An [Engine] hosts many named breakers with shared
// defaults and one transition stream.
//
// # Guarantees
//
//   - When a call returns, its outcome has been applied: the same
//     goroutine's next call, State or Counts sees it.
//   - A cancelled caller (context.Canceled) is neither a success nor a
//     failure, and frees its probe slot. A panic counts as a failure, frees
//     its slot, and keeps panicking.
//   - Outcomes of calls admitted before a state change are dropped as
//     stale; a probe that never reports is reclaimed after its lease.
//   - Subscribers and OnStateChange see every transition in order, never
//     on a caller's goroutine; a slow subscriber never blocks the breaker.
//   - There are no locks: the breaker's goroutine is the only writer of
//     its state, and the fast paths read an immutable snapshot it publishes.
//
// [Machine] is the state machine alone, pure and deterministic, for tests
// and simulations that drive time themselves.
package engine
