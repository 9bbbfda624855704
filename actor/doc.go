// Package actor is a tiny, typed runtime for goroutines that own their
// state. Start an actor with [Start], send it messages with [Actor.Send] or
// [Ask], and end it with [Actor.Stop].
//
// An [Actor] is a typed mailbox and the goroutine that handles it. Everything
// the actor owns is touched only by the goroutine running it, one at a
// time, so it needs no locks; other goroutines talk to it with [Actor.Send]
// (fire and forget, in order) or [Ask] (request and reply), or handle a
// request themselves with [Actor.TryHandle] when it is idle. Every wait selects on the caller's context
// and on the actor's exit, so no caller blocks forever on an actor that has
// stopped. The goroutine lives only while there are messages to handle, so
// an idle actor costs a few hundred bytes and no goroutine; and a caller
// that finds it idle can handle a request itself with [Actor.TryHandle],
// sparing the goroutine start and the hand-off (and then a few messages
// that came meanwhile too).
//
// Two helpers carry values out of an actor without ever blocking it:
//
//   - [Hub] fans values out to subscriber channels. It belongs to one owner
//     goroutine; a subscriber that falls behind loses values, and the next
//     value it does receive is stamped with how many it missed.
//   - [Runner] calls a function for each posted value, in order, exactly once,
//     on a goroutine of its own, with an unbounded queue in between.
//
// The package knows nothing about circuit breakers; package
// [github.com/nodus/circuitbreaker/engine] builds them on top of it.
package actor
