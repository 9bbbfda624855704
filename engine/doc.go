// Package engine is a circuit breaker built as an actor: each breaker's
// state is owned by one goroutine at a time, callers talk to it over channels (or read
// a snapshot it publishes), and every state change is published to
// subscribers as an ordered stream. Start with [NewBreaker] and
// [Breaker.Do]; use [New] for an [Engine] that hosts many named breakers.
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
// window (count- or time-based), a custom Config.ShouldTrip, and upstream
// Retry-After hints: a failure whose error chain holds an error with a
// RetryAfter() time.Duration method opens the circuit at once, for at least
// that long (capped by Config.MaxRecoveryTimeout). Open rejects every call
// with an [*OpenError] (matching [ErrOpen]) until its timer ends the open
// period, which can back off with jitter across repeated trips. Half-open
// lets Config.HalfOpenProbes probes run at once; enough successes close the
// circuit, any failure opens it again, and so does a slow probe or one that
// overstays Config.ProbeLease.
// [Breaker.Reset], [Breaker.Trip], [Breaker.Isolate] and [Breaker.ForceOpen]
// change the state by hand.
//
// # Which entry point
//
// Most callers should use [Breaker.Do]; [Execute] is the same for functions
// that return a value, [Breaker.Call] the same without a context. [Async]
// runs the function on its own goroutine and delivers one [Result] on a
// channel; [Go] does the same onto a channel of the caller's, to gather
// many calls on one. [Breaker.Admit] and [Ticket.Report] split a call in two for
// event-driven code. An [Engine] hosts many named breakers with shared
// defaults and one transition stream.
//
// # Guarantees
//
//   - When a call returns, its outcome counts: the same goroutine's next
//     call, State or Counts sees it.
//   - A cancelled caller (context.Canceled) is, with [DefaultClassify],
//     neither a success nor a failure, and frees its probe slot. A panic
//     counts as a failure, frees its slot, and keeps panicking ([Async]
//     and [Go] deliver it as a [*PanicError] instead).
//   - Outcomes of calls admitted before a state change are dropped as
//     stale; a probe that never reports is reclaimed after its lease.
//   - Config.OnStateChange sees every transition exactly once, in order;
//     subscribers see them in order, and one that falls behind loses some
//     (counted in [Transition.Missed]) rather than slowing the breaker.
//     Neither runs on a caller's goroutine.
//   - There are no locks: whichever goroutine runs the breaker (its own,
//     or a caller that found it idle) is the only writer of its state, one
//     at a time, and the fast paths read a snapshot it publishes.
//
// [Machine] is the state machine alone, with no goroutine and no clock of
// its own, for tests and simulations that drive time themselves.
package engine
