package llm

import (
	"context"
	"iter"
)

// Roles of a [Message].
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one turn of a conversation.
type Message struct {
	// Role is RoleSystem, RoleUser or RoleAssistant; adapters send any
	// other role as a user turn.
	Role string
	// Content is the turn's text.
	Content string
}

// Usage is what a call cost, in tokens.
type Usage struct {
	// InputTokens and OutputTokens count the prompt and the reply, as the
	// provider reports them.
	InputTokens, OutputTokens int
}

// Response is a finished reply.
type Response struct {
	// Content is the reply's text.
	Content string
	// Model is the model that answered, as the provider names it (which
	// may be more specific than the one asked for).
	Model string
	// FinishReason is why the reply ended, as the provider says it:
	// "stop", "end_turn", "length"...
	FinishReason string
	// Usage is what the call cost.
	Usage Usage
}

// Chunk is one piece of a streamed reply. The chunks at its end carry the
// finish reason and, if the provider sends it, the usage.
type Chunk struct {
	// Content is the next piece of the reply's text; it may be empty.
	Content string
	// FinishReason is set on the chunk that ends the reply, empty on the
	// others.
	FinishReason string
	// Usage is nil unless the provider reported usage with this chunk.
	Usage *Usage
}

// Client is anything that can answer a conversation: a provider's adapter,
// a [BreakerClient] wrapping one, or a [FallbackClient].
type Client interface {
	// Chat sends the conversation with the options applied (see
	// [NewRequest]) and returns the whole reply. Its error should be a
	// [*CallError] when it can tell what went wrong, so that breakers
	// count it right; any other error is sorted by [KindOf].
	Chat(ctx context.Context, msgs []Message, opts ...Option) (*Response, error)
}

// Streamer is a Client that can also stream its reply. The sequence yields
// chunks, and at most one error, after which it ends.
type Streamer interface {
	Client
	// ChatStream is Chat, streamed. It should send nothing until the
	// caller starts ranging over the sequence, which is when a
	// BreakerClient admits the call.
	ChatStream(ctx context.Context, msgs []Message, opts ...Option) iter.Seq2[Chunk, error]
}

// Request is what a call's options add up to.
type Request struct {
	Model       string   // the model to call; empty: the client's default
	MaxTokens   int      // 0: the client's default
	Temperature *float64 // nil: the provider's default
}

// Option sets a field of a call's Request.
type Option func(*Request)

// WithModel picks the model for a call.
func WithModel(model string) Option { return func(r *Request) { r.Model = model } }

// WithMaxTokens caps the reply's length.
func WithMaxTokens(n int) Option { return func(r *Request) { r.MaxTokens = n } }

// WithTemperature sets the sampling temperature.
func WithTemperature(t float64) Option { return func(r *Request) { r.Temperature = &t } }

// NewRequest applies opts in order; later ones win.
func NewRequest(opts ...Option) Request {
	var r Request
	for _, o := range opts {
		o(&r)
	}
	return r
}
