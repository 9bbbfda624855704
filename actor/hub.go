package actor

import (
	"context"
	"slices"
)

// Hub fans values out to subscriber channels. It belongs to one owner
// goroutine: every method must be called from that goroutine (typically an
// actor's), which is what lets it close subscriber channels safely.
//
// Publish never blocks. Each subscriber has a bounded buffer; when it is
// full the value is dropped for that subscriber and counted, and the next
// value it does receive is passed through the stamp function with that
// count, so a slow reader learns how much it missed.
type Hub[T any] struct {
	subs   []*subscriber[T]
	nextID uint64
	stamp  func(v T, missed uint64) T
}

type subscriber[T any] struct {
	id      uint64
	ch      chan T
	missed  uint64
	release func() bool
}

// NewHub returns an empty hub. stamp, if not nil, is applied to a value
// before it is sent to a subscriber that missed values since its last one.
func NewHub[T any](stamp func(v T, missed uint64) T) *Hub[T] {
	return &Hub[T]{stamp: stamp}
}

// Subscribe adds a subscriber whose channel buffers up to buf values.
// When ctx is done, onCancel is called (on another goroutine) with the
// subscriber's id; it should ask the owner to call [Hub.Unsubscribe].
// A ctx that is already done yields a closed channel.
func (h *Hub[T]) Subscribe(ctx context.Context, buf int, onCancel func(id uint64)) <-chan T {
	ch := make(chan T, buf)
	if ctx.Err() != nil {
		close(ch)
		return ch
	}
	h.nextID++
	id := h.nextID
	s := &subscriber[T]{id: id, ch: ch}
	s.release = context.AfterFunc(ctx, func() { onCancel(id) })
	h.subs = append(h.subs, s)
	return ch
}

// Unsubscribe closes the subscriber's channel and forgets it. Unknown ids
// are ignored.
func (h *Hub[T]) Unsubscribe(id uint64) {
	for i, s := range h.subs {
		if s.id == id {
			s.release()
			close(s.ch)
			h.subs = slices.Delete(h.subs, i, i+1)
			return
		}
	}
}

// Publish offers v to every subscriber without blocking.
func (h *Hub[T]) Publish(v T) {
	for _, s := range h.subs {
		out := v
		if s.missed > 0 && h.stamp != nil {
			out = h.stamp(v, s.missed)
		}
		select {
		case s.ch <- out:
			s.missed = 0
		default:
			s.missed++
		}
	}
}

// Len returns the number of subscribers.
func (h *Hub[T]) Len() int { return len(h.subs) }

// Close closes every subscriber channel. Values already buffered can still
// be received.
func (h *Hub[T]) Close() {
	for _, s := range h.subs {
		s.release()
		close(s.ch)
	}
	h.subs = nil
}
