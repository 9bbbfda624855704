package llm

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

// FallbackClient is a [Client] and [Streamer] that tries its clients in
// order. Create one with [Fallback].
type FallbackClient struct {
	clients []Client
}

// Fallback returns a Client that tries each client in turn and returns the
// first success. A client whose circuit is open answers at once with a
// *CircuitOpenError, so it is skipped without a network call. A failure
// moves on to the next client, except a bad request (the next would fail
// the same way) and a caller that gave up. When every client fails, the
// error is a [*FallbackError]. Streams fall back the same way, but only
// before their first chunk has reached the caller. Use [Pin] to give each
// target its own model.
func Fallback(clients ...Client) *FallbackClient {
	return &FallbackClient{clients: clients}
}

// FallbackError is returned when every target failed. It unwraps to each
// target's error, so errors.Is(err, engine.ErrOpen) reports whether any
// target's circuit was open.
type FallbackError struct {
	// Errors holds each target's error, in the order tried (or one error
	// saying there was no target to try).
	Errors []error
	// RetryAfter is when the soonest open circuit among the targets lets a
	// probe through, if every target's circuit was open; 0 otherwise.
	RetryAfter time.Duration
}

// Error lists every target's error.
func (e *FallbackError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, err := range e.Errors {
		msgs[i] = err.Error()
	}
	s := fmt.Sprintf("llm: all %d targets failed: %s", len(e.Errors), strings.Join(msgs, "; "))
	if e.RetryAfter > 0 {
		s += fmt.Sprintf("; the soonest reopens in %s", e.RetryAfter.Round(time.Millisecond))
	}
	return s
}

// Unwrap returns every target's error, for errors.Is and errors.As.
func (e *FallbackError) Unwrap() []error { return e.Errors }

// Chat asks each client in turn, as described at [Fallback].
func (f *FallbackClient) Chat(ctx context.Context, msgs []Message, opts ...Option) (*Response, error) {
	var errs []error
	for _, c := range f.clients {
		resp, err := c.Chat(ctx, msgs, opts...)
		if err == nil {
			return resp, nil
		}
		if !fallsBack(ctx, err) {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, allFailed(errs)
}

// ChatStream streams from the first client that starts a stream. Clients
// that cannot stream are skipped: those that are not Streamers, and a
// [BreakerClient] or [Pin] around one. Once a chunk has reached the caller,
// an error ends the stream instead of falling back.
func (f *FallbackClient) ChatStream(ctx context.Context, msgs []Message, opts ...Option) iter.Seq2[Chunk, error] {
	return func(yield func(Chunk, error) bool) {
		var errs []error
		for _, c := range f.clients {
			if !canStream(c) {
				continue
			}
			s := c.(Streamer)
			started := false
			var failed error
			for chunk, err := range s.ChatStream(ctx, msgs, opts...) {
				if err != nil && !started && fallsBack(ctx, err) {
					failed = err
					break
				}
				started = true
				if !yield(chunk, err) || err != nil {
					return
				}
			}
			if failed == nil {
				return
			}
			errs = append(errs, failed)
		}
		yield(Chunk{}, allFailed(errs))
	}
}

// canStream reports whether c can stream: it is a Streamer and, if it
// wraps another client as [BreakerClient], [Pin] and [Fallback] do (and
// have a ChatStream method whatever they wrap), what it wraps can stream.
func canStream(c Client) bool {
	s, ok := c.(Streamer)
	if !ok {
		return false
	}
	if w, ok := s.(interface{ canStream() bool }); ok {
		return w.canStream()
	}
	return true
}

// canStream reports whether any target can stream.
func (f *FallbackClient) canStream() bool {
	for _, c := range f.clients {
		if canStream(c) {
			return true
		}
	}
	return false
}

// fallsBack reports whether another target might do better after err.
func fallsBack(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch KindOf(err) {
	case KindBadRequest, KindCanceled:
		return false
	}
	return true
}

func allFailed(errs []error) error {
	if len(errs) == 0 {
		return &FallbackError{Errors: []error{errors.New("llm: no target to try")}}
	}
	// RetryAfter only when every circuit was open: the soonest reopening.
	var soonest time.Duration
	for _, err := range errs {
		var open *CircuitOpenError
		if !errors.As(err, &open) {
			return &FallbackError{Errors: errs}
		}
		if oe, ok := errors.AsType[*engine.OpenError](open); ok && oe.Isolated {
			continue // reopens only when someone resets it
		}
		if soonest == 0 || open.RetryAfter < soonest {
			soonest = max(open.RetryAfter, time.Nanosecond)
		}
	}
	return &FallbackError{Errors: errs, RetryAfter: soonest}
}

// Pin returns a client that always calls client with model, whatever
// model the caller asks for: one target of a [Fallback]. It is a
// [Streamer] if client is one.
func Pin(client Client, model string) Client {
	if s, ok := client.(Streamer); ok {
		return pinnedStreamer{pinned{client, model}, s}
	}
	return pinned{client, model}
}

type pinned struct {
	client Client
	model  string
}

func (p pinned) Chat(ctx context.Context, msgs []Message, opts ...Option) (*Response, error) {
	return p.client.Chat(ctx, msgs, append(opts[:len(opts):len(opts)], WithModel(p.model))...)
}

type pinnedStreamer struct {
	pinned
	s Streamer
}

func (p pinnedStreamer) canStream() bool { return canStream(p.client) }

func (p pinnedStreamer) ChatStream(ctx context.Context, msgs []Message, opts ...Option) iter.Seq2[Chunk, error] {
	return p.s.ChatStream(ctx, msgs, append(opts[:len(opts):len(opts)], WithModel(p.model))...)
}
