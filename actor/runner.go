package actor

import (
	"runtime"
	"sync/atomic"
)

// Runner calls a function for every posted value, in the order posted,
// exactly once each, on a goroutine of its own. Post never blocks and never
// drops: values wait in an unbounded lock-free queue. That makes it the
// place for user callbacks, which may be slow but must see every value.
type Runner[T any] struct {
	fn       func(T)
	tail     atomic.Pointer[node[T]] // producers swap themselves in here
	head     *node[T]                // the consumer's cursor; a consumed sentinel
	wake     chan struct{}
	stop     chan struct{}
	done     chan struct{}
	stopping atomic.Bool
}

type node[T any] struct {
	v    T
	next atomic.Pointer[node[T]]
}

// NewRunner starts a runner that calls fn for each posted value.
func NewRunner[T any](fn func(T)) *Runner[T] {
	r := &Runner[T]{
		fn:   fn,
		head: new(node[T]),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	r.tail.Store(r.head)
	go r.run()
	return r
}

// Post queues v. It is safe from any goroutine. Values posted after
// [Runner.Close] has begun may never be run.
func (r *Runner[T]) Post(v T) {
	n := &node[T]{v: v}
	prev := r.tail.Swap(n)
	prev.next.Store(n)
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Runner[T]) run() {
	defer close(r.done)
	for {
		r.drain()
		select {
		case <-r.wake:
		case <-r.stop:
			// A producer caught between its swap and its link hides the
			// values linked after it, which may have been posted before
			// Close; wait for it to finish linking.
			for r.drain(); r.head != r.tail.Load(); r.drain() {
				runtime.Gosched()
			}
			return
		}
	}
}

// drain runs every value linked so far. A producer caught between its swap
// and its link is picked up on the wake-up it sends after linking.
func (r *Runner[T]) drain() {
	for {
		next := r.head.next.Load()
		if next == nil {
			return
		}
		r.head = next
		v := next.v
		var zero T
		next.v = zero
		r.fn(v)
	}
}

// Close runs what was posted before it, then stops the goroutine and waits
// for it. It is safe to call more than once, but not from fn itself.
func (r *Runner[T]) Close() {
	if r.stopping.CompareAndSwap(false, true) {
		close(r.stop)
	}
	<-r.done
}
