package actor

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ev is a hub value that can carry how many values its reader missed.
type ev struct {
	n      int
	missed uint64
}

func stampEv(v ev, missed uint64) ev {
	v.missed = missed
	return v
}

func noCancel(uint64) {}

// recv receives one value that must already be buffered.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		require.True(t, ok, "channel closed")
		return v
	default:
		require.FailNow(t, "no value buffered")
		panic("unreachable")
	}
}

// requireClosed asserts that ch is closed once its buffer is drained.
func requireClosed[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v, ok := <-ch:
		require.False(t, ok, "want closed channel, got value %v", v)
	default:
		require.FailNow(t, "channel is open and empty, want closed")
	}
}

// requireOpenEmpty asserts that ch is open and has nothing buffered.
func requireOpenEmpty[T any](t *testing.T, ch <-chan T) {
	t.Helper()
	select {
	case v, ok := <-ch:
		require.FailNow(t, "want open empty channel", "got value %v (open=%v)", v, ok)
	default:
	}
}

func TestHubPublishReachesEverySubscriber(t *testing.T) {
	h := NewHub(stampEv)
	ctx := context.Background()
	subs := []<-chan ev{
		h.Subscribe(ctx, 4, noCancel),
		h.Subscribe(ctx, 4, noCancel),
		h.Subscribe(ctx, 4, noCancel),
	}
	require.Equal(t, 3, h.Len())

	for i := 1; i <= 3; i++ {
		h.Publish(ev{n: i})
	}
	for _, ch := range subs {
		for i := 1; i <= 3; i++ {
			assert.Equal(t, ev{n: i}, recv(t, ch), "values arrive in publish order, unstamped")
		}
		requireOpenEmpty(t, ch)
	}
	h.Close()
}

func TestHubDropsAreCountedAndStampedOnNextDelivery(t *testing.T) {
	h := NewHub(stampEv)
	slow := h.Subscribe(context.Background(), 2, noCancel)
	fast := h.Subscribe(context.Background(), 8, noCancel)

	for i := 1; i <= 5; i++ {
		h.Publish(ev{n: i}) // slow keeps 1, 2 and misses 3, 4, 5
	}
	assert.Equal(t, ev{n: 1}, recv(t, slow))
	h.Publish(ev{n: 6}) // room for one: delivered with the missed count
	h.Publish(ev{n: 7}) // full again: missed, count starts over at 1
	assert.Equal(t, ev{n: 2}, recv(t, slow))
	assert.Equal(t, ev{n: 6, missed: 3}, recv(t, slow))
	requireOpenEmpty(t, slow)

	h.Publish(ev{n: 8})
	assert.Equal(t, ev{n: 8, missed: 1}, recv(t, slow), "counter was reset after the stamped delivery")
	h.Publish(ev{n: 9})
	assert.Equal(t, ev{n: 9}, recv(t, slow), "nothing missed, nothing stamped")

	for i := 1; i <= 8; i++ {
		assert.Equal(t, ev{n: i}, recv(t, fast), "a fast reader is unaffected by a slow one")
	}
	h.Close()
}

func TestHubMissedCountAccumulatesWhileStillFull(t *testing.T) {
	h := NewHub(stampEv)
	ch := h.Subscribe(context.Background(), 1, noCancel)

	h.Publish(ev{n: 1})
	for i := 2; i <= 11; i++ {
		h.Publish(ev{n: i}) // stamped attempts that fail must keep counting
	}
	assert.Equal(t, ev{n: 1}, recv(t, ch))
	h.Publish(ev{n: 12})
	assert.Equal(t, ev{n: 12, missed: 10}, recv(t, ch))
	h.Close()
}

func TestHubWithoutStampDeliversValuesUnchanged(t *testing.T) {
	h := NewHub[int](nil)
	ch := h.Subscribe(context.Background(), 1, noCancel)
	h.Publish(1)
	h.Publish(2) // dropped
	assert.Equal(t, 1, recv(t, ch))
	h.Publish(3)
	assert.Equal(t, 3, recv(t, ch))
	h.Close()
}

func TestHubPublishNeverBlocks(t *testing.T) {
	// In a bubble a blocked Publish would be reported as a deadlock.
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(stampEv)
		unbuffered := h.Subscribe(t.Context(), 0, noCancel)
		buffered := h.Subscribe(t.Context(), 1, noCancel)
		for i := 1; i <= 10_000; i++ {
			h.Publish(ev{n: i})
		}
		requireOpenEmpty(t, unbuffered)
		assert.Equal(t, ev{n: 1}, recv(t, buffered))

		// With nobody subscribed at all.
		h.Close()
		h.Publish(ev{n: 0})
		assert.Zero(t, h.Len())

		// An unbuffered subscriber whose reader is waiting gets the value.
		h2 := NewHub(stampEv)
		ch := h2.Subscribe(t.Context(), 0, noCancel)
		got := make(chan ev, 1)
		go func() { got <- <-ch }()
		synctest.Wait()
		h2.Publish(ev{n: 42})
		assert.Equal(t, ev{n: 42}, <-got)
		h2.Close()
	})
}

func TestHubContextCancelCallsOnCancelWithID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(stampEv)
		cancelled := make(chan uint64, 8)
		onCancel := func(id uint64) { cancelled <- id }

		ctxs := make([]context.CancelFunc, 3)
		chans := make([]<-chan ev, 3)
		for i := range chans {
			var ctx context.Context
			ctx, ctxs[i] = context.WithCancel(t.Context())
			chans[i] = h.Subscribe(ctx, 4, onCancel)
		}
		synctest.Wait()
		require.Empty(t, cancelled, "onCancel before any cancellation")

		ctxs[1]()
		synctest.Wait()
		require.Len(t, cancelled, 1)
		id := <-cancelled
		// The owner reacts by unsubscribing; exactly the cancelled
		// subscriber's channel must close.
		h.Unsubscribe(id)
		assert.Equal(t, 2, h.Len())
		requireClosed(t, chans[1])
		h.Publish(ev{n: 1})
		assert.Equal(t, ev{n: 1}, recv(t, chans[0]))
		assert.Equal(t, ev{n: 1}, recv(t, chans[2]))

		ctxs[0]()
		ctxs[2]()
		synctest.Wait()
		require.Len(t, cancelled, 2)
		ids := map[uint64]bool{id: true}
		for range 2 {
			other := <-cancelled
			assert.False(t, ids[other], "ids are unique")
			ids[other] = true
			h.Unsubscribe(other)
		}
		requireClosed(t, chans[0])
		requireClosed(t, chans[2])
		assert.Zero(t, h.Len())
	})
}

func TestHubUnsubscribeClosesChannelAndStopsWatchingCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(stampEv)
		cancelled := make(chan uint64, 8)
		onCancel := func(id uint64) { cancelled <- id }

		ctxA, cancelA := context.WithCancel(t.Context())
		a := h.Subscribe(ctxA, 4, onCancel)
		ctxB, cancelB := context.WithCancel(t.Context())
		b := h.Subscribe(ctxB, 4, onCancel)

		h.Publish(ev{n: 1})
		cancelA()
		synctest.Wait()
		idA := <-cancelled
		h.Unsubscribe(idA)
		assert.Equal(t, ev{n: 1}, recv(t, a), "a buffered value survives Unsubscribe")
		requireClosed(t, a)

		// Unknown and repeated ids are ignored (no double close).
		h.Unsubscribe(idA)
		h.Unsubscribe(12345)
		assert.Equal(t, 1, h.Len())

		// Once b is unsubscribed, cancelling its ctx must not call onCancel.
		// The API hands out ids only through onCancel, so read b's from
		// the hub itself.
		require.Len(t, h.subs, 1)
		h.Unsubscribe(h.subs[0].id)
		assert.Zero(t, h.Len())
		assert.Equal(t, ev{n: 1}, recv(t, b))
		requireClosed(t, b)
		cancelB()
		synctest.Wait()
		assert.Empty(t, cancelled, "onCancel after Unsubscribe")
	})
}

func TestHubSubscribeWithDoneCtxYieldsClosedChannel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(stampEv)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		called := false
		ch := h.Subscribe(ctx, 4, func(uint64) { called = true })
		requireClosed(t, ch)
		assert.Zero(t, h.Len())
		h.Publish(ev{n: 1}) // must not send on the closed channel
		synctest.Wait()
		assert.False(t, called, "onCancel is not called for a ctx that was already done")
	})
}

func TestHubCloseClosesAllAndKeepsBufferedValues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := NewHub(stampEv)
		cancelled := make(chan uint64, 8)
		ctx, cancel := context.WithCancel(t.Context())
		a := h.Subscribe(ctx, 4, func(id uint64) { cancelled <- id })
		b := h.Subscribe(ctx, 1, func(id uint64) { cancelled <- id })

		h.Publish(ev{n: 1})
		h.Publish(ev{n: 2})
		h.Close()
		assert.Zero(t, h.Len())

		assert.Equal(t, ev{n: 1}, recv(t, a))
		assert.Equal(t, ev{n: 2}, recv(t, a))
		requireClosed(t, a)
		assert.Equal(t, ev{n: 1}, recv(t, b))
		requireClosed(t, b)

		// Close released the ctx watches, and everything after it is safe.
		cancel()
		synctest.Wait()
		assert.Empty(t, cancelled, "onCancel after Close")
		h.Close()
		h.Unsubscribe(1)
		h.Publish(ev{n: 3})

		// The hub is still usable after Close.
		c := h.Subscribe(t.Context(), 1, noCancel)
		h.Publish(ev{n: 4})
		assert.Equal(t, ev{n: 4}, recv(t, c))
		h.Close()
		requireClosed(t, c)
	})
}

// The intended use: an actor owns the hub, and onCancel asks the actor to
// unsubscribe.
func TestHubOwnedByActor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type subscribe struct {
			ctx   context.Context
			reply chan (<-chan int)
		}
		type msg struct {
			publish     int
			subscribe   *subscribe
			unsubscribe uint64
		}
		h := NewHub[int](nil)
		var a *Actor[msg]
		a = Start(8, func(m msg) {
			switch {
			case m.subscribe != nil:
				Reply(m.subscribe.reply, h.Subscribe(m.subscribe.ctx, 8, func(id uint64) {
					_ = a.Send(context.Background(), msg{unsubscribe: id})
				}))
			case m.unsubscribe != 0:
				h.Unsubscribe(m.unsubscribe)
			default:
				h.Publish(m.publish)
			}
		}, h.Close)

		ctx, cancel := context.WithCancel(t.Context())
		reply := make(chan (<-chan int), 1)
		ch, err := Ask(t.Context(), a, msg{subscribe: &subscribe{ctx, reply}}, reply)
		require.NoError(t, err)
		keep, err := Ask(t.Context(), a, msg{subscribe: &subscribe{t.Context(), reply}}, reply)
		require.NoError(t, err)

		require.NoError(t, a.Send(t.Context(), msg{publish: 1}))
		synctest.Wait()
		assert.Equal(t, 1, recv(t, ch))

		cancel()
		synctest.Wait() // onCancel sent unsubscribe; the actor handled it
		requireClosed(t, ch)

		require.NoError(t, a.Send(t.Context(), msg{publish: 2}))
		synctest.Wait()
		a.Stop() // exit hook closes the hub
		assert.Equal(t, 1, recv(t, keep))
		assert.Equal(t, 2, recv(t, keep))
		requireClosed(t, keep)
	})
}
