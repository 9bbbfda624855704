package openai

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	"github.com/nodus/circuitbreaker/llm"
)

// Provider is the provider name the adapter's errors carry.
const Provider = "openai"

// ErrNoFinishReason is the cause of a stream that ended without saying why.
var ErrNoFinishReason = errors.New("openai: stream ended without a finish reason")

// Client is an [llm.Client] and [llm.Streamer] backed by an [openai.Client].
// Create one with [New]; it is safe for concurrent use, as the SDK's
// client is.
type Client struct {
	client  openai.Client
	model   string
	retries bool
	extra   []option.RequestOption
}

// Option configures a Client.
type Option func(*Client)

// WithModel sets the model of calls that do not pick one with
// [llm.WithModel].
func WithModel(model string) Option { return func(c *Client) { c.model = model } }

// WithSDKRetries leaves the SDK's own retries on. The breaker then sees
// only the last attempt of each call.
func WithSDKRetries() Option { return func(c *Client) { c.retries = true } }

// WithRequestOptions adds SDK options to every request, on top of those
// of the SDK client.
func WithRequestOptions(opts ...option.RequestOption) Option {
	return func(c *Client) { c.extra = append(c.extra, opts...) }
}

// New adapts client. Calls need a model, from [WithModel] or
// [llm.WithModel]. Wrap the result with [llm.NewBreakerClient], with
// [Provider] as the provider's name.
func New(client openai.Client, opts ...Option) *Client {
	c := &Client{client: client}
	for _, o := range opts {
		o(c)
	}
	return c
}

func (c *Client) params(msgs []llm.Message, opts []llm.Option) (openai.ChatCompletionNewParams, string) {
	r := llm.NewRequest(opts...)
	model := r.Model
	if model == "" {
		model = c.model
	}
	p := openai.ChatCompletionNewParams{Model: model}
	for _, m := range msgs {
		switch m.Role {
		case llm.RoleSystem:
			p.Messages = append(p.Messages, openai.SystemMessage(m.Content))
		case llm.RoleAssistant:
			p.Messages = append(p.Messages, openai.AssistantMessage(m.Content))
		default:
			p.Messages = append(p.Messages, openai.UserMessage(m.Content))
		}
	}
	if r.MaxTokens > 0 {
		p.MaxCompletionTokens = openai.Int(int64(r.MaxTokens))
	}
	if r.Temperature != nil {
		p.Temperature = openai.Float(*r.Temperature)
	}
	return p, model
}

// requestOptions returns the options of one request. They record in
// answered whether the server's answer arrived, so that classify can tell
// an error the SDK raised before sending from one about the answer.
func (c *Client) requestOptions(answered *atomic.Bool) []option.RequestOption {
	opts := c.extra[:len(c.extra):len(c.extra)]
	if !c.retries {
		// Per-request options override the client's, so the user's client
		// is left as it is.
		opts = append(opts, option.WithMaxRetries(0))
	}
	return append(opts, option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		res, err := next(r)
		if err == nil {
			answered.Store(true)
		}
		return res, err
	}))
}

// Chat sends a chat completion request and returns the first choice. Its
// errors are of type [*llm.CallError].
func (c *Client) Chat(ctx context.Context, msgs []llm.Message, opts ...llm.Option) (*llm.Response, error) {
	p, model := c.params(msgs, opts)
	var answered atomic.Bool
	resp, err := c.client.Chat.Completions.New(ctx, p, c.requestOptions(&answered)...)
	if err != nil {
		return nil, classify(err, model, answered.Load(), false)
	}
	if len(resp.Choices) == 0 {
		return nil, &llm.CallError{Provider: Provider, Model: model, Kind: llm.KindTruncated, Err: errors.New("openai: response without choices")}
	}
	ch := resp.Choices[0]
	return &llm.Response{
		Content:      ch.Message.Content,
		Model:        resp.Model,
		FinishReason: ch.FinishReason,
		Usage:        llm.Usage{InputTokens: int(resp.Usage.PromptTokens), OutputTokens: int(resp.Usage.CompletionTokens)},
	}, nil
}

// ChatStream streams a chat completion. A stream is finished only when a
// chunk carries a finish reason; one that ends without is reported as
// [llm.KindTruncated] with [ErrNoFinishReason].
func (c *Client) ChatStream(ctx context.Context, msgs []llm.Message, opts ...llm.Option) iter.Seq2[llm.Chunk, error] {
	return func(yield func(llm.Chunk, error) bool) {
		p, model := c.params(msgs, opts)
		var answered atomic.Bool
		stream := c.client.Chat.Completions.NewStreaming(ctx, p, c.requestOptions(&answered)...)
		defer stream.Close()
		finished := false
		for stream.Next() {
			cur := stream.Current()
			var out llm.Chunk
			if len(cur.Choices) > 0 {
				out.Content = cur.Choices[0].Delta.Content
				out.FinishReason = cur.Choices[0].FinishReason
			}
			if cur.Usage.TotalTokens > 0 {
				out.Usage = &llm.Usage{InputTokens: int(cur.Usage.PromptTokens), OutputTokens: int(cur.Usage.CompletionTokens)}
			}
			finished = finished || out.FinishReason != ""
			if out.Content == "" && out.FinishReason == "" && out.Usage == nil {
				continue // a role-only or empty delta
			}
			if !yield(out, nil) {
				return
			}
		}
		if err := stream.Err(); err != nil {
			yield(llm.Chunk{}, classify(err, model, answered.Load(), true))
			return
		}
		if !finished {
			yield(llm.Chunk{}, &llm.CallError{Provider: Provider, Model: model, Kind: llm.KindTruncated, Err: ErrNoFinishReason})
		}
	}
}

// classify maps an SDK error to a *llm.CallError. answered says whether
// the server's answer arrived, streaming whether err ended a stream.
func classify(err error, model string, answered, streaming bool) error {
	ce := &llm.CallError{Provider: Provider, Model: model, Err: err}
	var apiErr *openai.Error
	var streamErr *ssestream.StreamError
	var urlErr *url.Error
	switch {
	case errors.As(err, &apiErr):
		ce.StatusCode = apiErr.StatusCode
		ce.Kind = llm.KindForStatus(apiErr.StatusCode)
		if apiErr.Code == "insufficient_quota" || apiErr.Type == "insufficient_quota" {
			ce.Kind = llm.KindQuotaExhausted
		}
		if res := apiErr.Response; res != nil {
			ce.RequestID = res.Header.Get("x-request-id")
			if d, ok := llm.ParseRetryAfter(res.Header, time.Now()); ok {
				ce.RetryAfter = d
			}
		}
	case errors.As(err, &streamErr):
		ce.Kind = llm.KindServerError // an error event inside a started stream
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.As(err, &urlErr):
		ce.Kind = llm.KindOf(err)
	case !answered:
		// Raised by the SDK before any request went out, such as a request
		// it could not build.
		ce.Kind = llm.KindBadRequest
	default:
		ce.Kind = llm.KindOfBrokenAnswer(err, streaming)
	}
	return ce
}
