package actor

import (
	"context"
	"errors"
	"sync/atomic"
)

// ErrStopped is returned by [Actor.Send] and [Ask] once the actor has stopped.
var ErrStopped = errors.New("actor: stopped")

// Actor is a goroutine that handles the messages of type M sent to its
// mailbox, one at a time, in the order they were queued. Create one with
// [Start].
type Actor[M any] struct {
	inbox    chan M
	stop     chan struct{}
	done     chan struct{}
	stopping atomic.Bool
}

// Start starts an actor whose mailbox holds up to size queued messages.
// handle runs on the actor's goroutine for every message; exit, if not nil,
// runs on it once after the last message, when the actor is stopped.
// Messages still queued at that point are dropped.
func Start[M any](size int, handle func(M), exit func()) *Actor[M] {
	a := &Actor[M]{
		inbox: make(chan M, size),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go a.run(handle, exit)
	return a
}

func (a *Actor[M]) run(handle func(M), exit func()) {
	defer close(a.done)
	if exit != nil {
		defer exit()
	}
	for {
		// A stop request wins over queued work, so Stop returns promptly
		// even when the mailbox is kept full.
		select {
		case <-a.stop:
			return
		default:
		}
		select {
		case m := <-a.inbox:
			handle(m)
		case <-a.stop:
			return
		}
	}
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
	select {
	case a.inbox <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-a.done:
		return ErrStopped
	}
}

// TrySend queues m if there is room right now, and reports whether it did.
func (a *Actor[M]) TrySend(m M) bool {
	select {
	case <-a.done:
		return false
	default:
	}
	select {
	case a.inbox <- m:
		return true
	default:
		return false
	}
}

// Stop asks the actor to stop and waits until its goroutine has exited.
// It is safe to call more than once and from many goroutines, but not from
// the actor's own goroutine.
func (a *Actor[M]) Stop() {
	if a.stopping.CompareAndSwap(false, true) {
		close(a.stop)
	}
	<-a.done
}

// Done is closed once the actor's goroutine has exited.
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
