package llm

import (
	"context"
	"iter"
)

// Roles of a Message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string
	Content string
}

// Usage is what a call cost, in tokens.
type Usage struct {
	InputTokens, OutputTokens int
}

// Response is a finished reply.
type Response struct {
	Content      string
	Model        string
	FinishReason string // as the provider says it: "stop", "end_turn", "length"...
	Usage        Usage
}

// Chunk is one piece of a streamed reply. The last one carries the finish
// reason (and usage, if the provider sends it).
type Chunk struct {
	Content      string
	FinishReason string
	Usage        *Usage
}

// Client is anything that can answer a conversation.
type Client interface {
	Chat(ctx context.Context, msgs []Message, opts ...Option) (*Response, error)
}

// Streamer is a Client that can also stream its reply. The sequence yields
// chunks, and at most one error, after which it ends.
type Streamer interface {
	Client
	ChatStream(ctx context.Context, msgs []Message, opts ...Option) iter.Seq2[Chunk, error]
}

// Request is what a call's options add up to.
type Request struct {
	Model       string
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
