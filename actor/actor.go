package actor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync/atomic"
)

// ErrStopped is returned by [Actor.Send] and [Ask] once the actor has stopped.
var ErrStopped = errors.New("actor: stopped")

// Actor handles the messages of type M sent to its mailbox, one at a time,
// in the order they were queued. Create one with [Start], or embed one and
// call [Actor.Init].
//
// An idle actor costs no goroutine: one is started when a message arrives
// at an empty mailbox and ends when the mailbox is empty again, so a
// program can hold a great many actors that are mostly idle. Only one
// goroutine runs an actor at any time, and each one starts after the last
// has finished, so what the actor owns is never touched concurrently.
type Actor[M any] struct {
	inbox    chan M
	pending  atomic.Int64 // messages queued and not yet handled, plus one once stopping
	stopping atomic.Bool
	done     chan struct{}
	h        Handler[M]
}

// Handler is what an actor does, for [Actor.Init]; [Start] takes the same
// two hooks as functions.
type Handler[M any] interface {
	// Handle runs for every message.
	Handle(M)
	// Exit runs once, after the last message handled, when the actor is
	// stopped.
	Exit()
}

// funcs adapts a pair of functions to a Handler.
type funcs[M any] struct {
	handle func(M)
	exit   func()
}

func (f funcs[M]) Handle(m M) { f.handle(m) }

func (f funcs[M]) Exit() {
	if f.exit != nil {
		f.exit()
	}
}

// Start returns an actor whose mailbox holds up to size queued messages
// (at least one: a message is queued before a goroutine is started for it).
// handle runs for every message; exit, if not nil, runs once after the
// last message handled, when the actor is stopped. Messages still queued
// at that point are dropped.
func Start[M any](size int, handle func(M), exit func()) *Actor[M] {
	a := new(Actor[M])
	a.Init(size, funcs[M]{handle, exit})
	return a
}

// Init readies a zero Actor, such as one embedded in a larger struct, to
// run h, as Start would. It must be called once, before the actor is used.
func (a *Actor[M]) Init(size int, h Handler[M]) {
	a.inbox = make(chan M, max(size, 1))
	a.done = make(chan struct{})
	a.h = h
}

// lingerYields is how many times an actor's goroutine yields before it
// ends for want of messages.
const lingerYields = 3

// schedule accounts for one queued message (or the stop request) and
// starts a goroutine if none is running. A goroutine runs only while the
// count is above zero, and every message is counted after it is queued,
// so it never waits on an empty mailbox and never misses a message.
func (a *Actor[M]) schedule() {
	if a.pending.Add(1) == 1 {
		go a.run()
	}
}

func (a *Actor[M]) run() {
	for {
		// A stop request wins over queued work, so Stop returns promptly
		// even when the mailbox is kept full. The count then never drops
		// back to zero, so no goroutine is started again.
		if a.stopping.Load() {
			a.h.Exit()
			close(a.done)
			return
		}
		a.h.Handle(<-a.inbox)
		// About to go idle: yield a few times first, since a sender that
		// comes back soon finds the goroutine still running, which costs
		// far less than starting another.
		for i := 0; i < lingerYields && a.pending.Load() == 1; i++ {
			runtime.Gosched()
		}
		if a.pending.Add(-1) == 0 {
			return
		}
	}
}

// TryHandle handles m on the calling goroutine if the actor is idle (no
// message queued or being handled, not stopping), and reports whether it
// did; if not, the caller sends m as usual. A request to an idle actor so
// costs no goroutine start and no hand-off: the caller runs the handler
// itself, as the goroutine that would have been started for m would, and
// nothing else runs the actor meanwhile. Messages sent while it does are
// handled after m: up to drainMax of them by the caller too, the rest by a
// goroutine started for them. If m's handler panics, the actor is released
// before the panic goes on; a panic in another sender's message goes on on
// a goroutine of its own, as it would have on the actor's.
//
// The caller lends its goroutine to the actor, other senders' messages
// included: a handler must not wait for anything that needs the caller to
// return first. So an actor's handler should not call TryHandle on an
// actor whose handlers may send to it.
func (a *Actor[M]) TryHandle(m M) bool {
	if !a.pending.CompareAndSwap(0, 1) {
		return false
	}
	// The count is not tied to particular messages: one queued by a
	// sender still inside Send, not yet counted, lets another's count go
	// to a goroutine that handles it and ends with the counted one still
	// queued. Once claimed, nothing else takes from the mailbox, so what
	// was queued before (by this goroutine too) is seen here, and goes
	// first.
	if len(a.inbox) != 0 {
		a.release(0)
		return false
	}
	finished := false
	defer func() {
		if !finished {
			a.release(0) // the handler panicked: hand the actor over at once
		}
	}()
	a.h.Handle(m)
	finished = true
	a.release(drainMax)
	return true
}

// drainMax is how many messages queued while a caller handled its own a
// TryHandle caller handles too. A goroutine started for them would wait
// for a processor until the caller blocks or is preempted, which for a
// caller that goes on without blocking can be milliseconds, while its
// senders wait; a few messages cost the caller a microsecond or so.
const drainMax = 4

// release ends a TryHandle's hold on the actor: it handles up to n of the
// messages queued meanwhile, and starts a goroutine for the rest, or for
// a stop request.
func (a *Actor[M]) release(n int) {
	for ; a.pending.Add(-1) != 0; n-- {
		if n == 0 || a.stopping.Load() {
			go a.run()
			return
		}
		if !a.drain(<-a.inbox) {
			return
		}
	}
}

// drain handles another sender's message for a TryHandle caller, and
// reports whether it returned. A panic there is not the caller's to see
// (it may recover it, and the sender would wait for good): the actor is
// released, and the panic goes on on a goroutine of its own, as it would
// have on the actor's.
func (a *Actor[M]) drain(m M) (ok bool) {
	defer func() {
		if !ok {
			p := recover()
			a.release(0)
			if p != nil { // nil: runtime.Goexit, which goes on here
				repanic(drainedPanic{p, debug.Stack()})
			}
		}
	}()
	a.h.Handle(m)
	return true
}

// repanic raises p on a goroutine of its own. A variable, for tests.
var repanic = func(p any) { go panic(p) }

// drainedPanic is a panic raised by a handler that ran for another
// sender on a TryHandle caller, with the stack it was raised on.
type drainedPanic struct {
	value any
	stack []byte
}

func (p drainedPanic) String() string {
	return fmt.Sprintf("%v [recovered from a handler run by actor.TryHandle, and raised again]\n\n%s", p.value, p.stack)
}

// Send queues m. It waits while the mailbox is full, and returns ctx.Err()
// if ctx is done first, or [ErrStopped] if the actor stops first. Messages
// one goroutine sends are handled in the order it sent them.
func (a *Actor[M]) Send(ctx context.Context, m M) error {
	select {
	case <-a.done:
		return ErrStopped
	default:
	}
	// A select with room in the mailbox picks at random between queuing
	// and a ctx already done: look first, so a done ctx never delivers.
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case a.inbox <- m:
		a.schedule()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-a.done:
		return ErrStopped
	}
}

// TrySend queues m if there is room right now, and reports whether it did.
// It never waits, so an actor can use it to send to another without ever
// blocking on it.
func (a *Actor[M]) TrySend(m M) bool {
	select {
	case <-a.done:
		return false
	default:
	}
	select {
	case a.inbox <- m:
		a.schedule()
		return true
	default:
		return false
	}
}

// Stop asks the actor to stop and waits until its exit hook has run and
// its goroutine has ended. It is safe to call more than once and from many
// goroutines, but not from the actor's own handle or exit.
func (a *Actor[M]) Stop() {
	if a.stopping.CompareAndSwap(false, true) {
		a.schedule()
	}
	<-a.done
}

// Idle reports whether the actor has no message queued or being handled.
// It is a moment's view: another goroutine may send one right after.
func (a *Actor[M]) Idle() bool { return a.pending.Load() == 0 && len(a.inbox) == 0 }

// Done is closed once the actor has stopped.
func (a *Actor[M]) Done() <-chan struct{} { return a.done }

// Ask sends m, which carries reply, and waits for the actor's answer on
// reply. It returns ctx.Err() if ctx is done first and [ErrStopped] if the
// actor stops first. reply should have a buffer of one so that the actor's
// answer never blocks it; after an error the actor may still write to reply
// later, so a reply channel is fit for reuse only after a successful Ask.
func Ask[M, R any](ctx context.Context, a *Actor[M], m M, reply <-chan R) (R, error) {
	var zero R
	if err := a.Send(ctx, m); err != nil {
		return zero, err
	}
	select {
	case r := <-reply:
		return r, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-a.done:
		// The actor may have answered just before it exited.
		select {
		case r := <-reply:
			return r, nil
		default:
			return zero, ErrStopped
		}
	}
}

// Reply answers a request whose reply channel has a buffer of one. It never
// blocks: an answer nobody waits for any more is dropped.
func Reply[R any](reply chan<- R, r R) {
	select {
	case reply <- r:
	default:
	}
}
