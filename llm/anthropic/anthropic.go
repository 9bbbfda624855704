package anthropic

import (
	"context"
	"errors"
	"iter"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/nodus/circuitbreaker/llm"
)

// Provider is the provider name the adapter's errors carry.
const Provider = "anthropic"

// ErrNoMessageStop is the cause of a stream that ended without
// message_stop.
var ErrNoMessageStop = errors.New("anthropic: stream ended without message_stop")

// DefaultMaxTokens is the reply cap of calls that do not set one with
// llm.WithMaxTokens: the API requires one.
const DefaultMaxTokens = 1024

// Client is an [llm.Client] and [llm.Streamer] backed by an [anthropic.Client].
// Create one with [New]; it is safe for concurrent use, as the SDK's
// client is.
type Client struct {
	client  anthropic.Client
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
func New(client anthropic.Client, opts ...Option) *Client {
	c := &Client{client: client}
	for _, o := range opts {
		o(c)
	}
	return c
}

// params builds the request. System messages go to the system prompt;
// llm.WithTemperature is not sent, as this API version has no such field.
func (c *Client) params(msgs []llm.Message, opts []llm.Option) (anthropic.MessageNewParams, string) {
	r := llm.NewRequest(opts...)
	model := r.Model
	if model == "" {
		model = c.model
	}
	p := anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: DefaultMaxTokens}
	if r.MaxTokens > 0 {
		p.MaxTokens = int64(r.MaxTokens)
	}
	for _, m := range msgs {
		switch m.Role {
		case llm.RoleSystem:
			p.System = append(p.System, anthropic.TextBlockParam{Text: m.Content})
		case llm.RoleAssistant:
			p.Messages = append(p.Messages, anthropic.NewAssistantMessage(anthropic.NewTextBlock(m.Content)))
		default:
			p.Messages = append(p.Messages, anthropic.NewUserMessage(anthropic.NewTextBlock(m.Content)))
		}
	}
	return p, model
}

// requestOptions returns the options of one request. They record in
// answered whether the server's answer arrived, so that classify can tell
// an error the SDK raised before sending from one about the answer.
func (c *Client) requestOptions(answered *atomic.Bool) []option.RequestOption {
	opts := c.extra[:len(c.extra):len(c.extra)]
	if !c.retries {
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

// Chat sends a messages request and returns the text of the reply. Its
// errors are of type [*llm.CallError].
func (c *Client) Chat(ctx context.Context, msgs []llm.Message, opts ...llm.Option) (*llm.Response, error) {
	p, model := c.params(msgs, opts)
	var answered atomic.Bool
	msg, err := c.client.Messages.New(ctx, p, c.requestOptions(&answered)...)
	if err != nil {
		return nil, classify(err, model, answered.Load(), false)
	}
	resp := &llm.Response{
		Model:        string(msg.Model),
		FinishReason: string(msg.StopReason),
		Usage:        llm.Usage{InputTokens: int(msg.Usage.InputTokens), OutputTokens: int(msg.Usage.OutputTokens)},
	}
	for _, b := range msg.Content {
		if b.Type == "text" {
			resp.Content += b.Text
		}
	}
	return resp, nil
}

// ChatStream streams a messages request. A stream is finished only at
// message_stop; one that ends before is reported as [llm.KindTruncated]
// with [ErrNoMessageStop].
func (c *Client) ChatStream(ctx context.Context, msgs []llm.Message, opts ...llm.Option) iter.Seq2[llm.Chunk, error] {
	return func(yield func(llm.Chunk, error) bool) {
		p, model := c.params(msgs, opts)
		var answered atomic.Bool
		stream := c.client.Messages.NewStreaming(ctx, p, c.requestOptions(&answered)...)
		defer stream.Close()
		finished := false
		var stop string
		var usage llm.Usage // input tokens come first, output tokens near the end
		for stream.Next() {
			ev := stream.Current()
			var out llm.Chunk
			switch ev.Type {
			case "message_start":
				usage.InputTokens = int(ev.Message.Usage.InputTokens)
			case "content_block_delta":
				out.Content = ev.Delta.Text
			case "message_delta":
				stop = string(ev.Delta.StopReason)
				usage.OutputTokens = int(ev.Usage.OutputTokens) // cumulative
			case "message_stop":
				finished = true
				out.FinishReason = stop
				if out.FinishReason == "" {
					out.FinishReason = "end_turn"
				}
				out.Usage = &usage
			}
			if out.Content == "" && out.FinishReason == "" {
				continue
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
			yield(llm.Chunk{}, &llm.CallError{Provider: Provider, Model: model, Kind: llm.KindTruncated, Err: ErrNoMessageStop})
		}
	}
}

// kindOfType maps Anthropic's error types, which also arrive inside 200
// streams, to kinds.
var kindOfType = map[string]llm.Kind{
	"invalid_request_error": llm.KindBadRequest,
	"authentication_error":  llm.KindAuth,
	"permission_error":      llm.KindAuth,
	"billing_error":         llm.KindQuotaExhausted,
	"not_found_error":       llm.KindNotFound,
	"rate_limit_error":      llm.KindRateLimited,
	"timeout_error":         llm.KindTimeout,
	"api_error":             llm.KindServerError,
	"overloaded_error":      llm.KindOverloaded,
}

// lowCredit starts the message of the 400 invalid_request_error Anthropic
// answers an account out of credit with.
const lowCredit = "your credit balance is too low"

// classify maps an SDK error to a *llm.CallError. answered says whether
// the server's answer arrived, streaming whether err ended a stream.
func classify(err error, model string, answered, streaming bool) error {
	ce := &llm.CallError{Provider: Provider, Model: model, Err: err}
	var apiErr *anthropic.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &apiErr):
		ce.StatusCode = apiErr.StatusCode
		ce.RequestID = apiErr.RequestID
		ce.Kind = llm.KindForStatus(apiErr.StatusCode)
		if k, ok := kindOfType[string(apiErr.Type())]; ok {
			ce.Kind = k
		}
		switch apiErr.ErrorCode() {
		case anthropic.ErrorCodeEnforcedSpendLimitReached, anthropic.ErrorCodeContractSpendLimitReached:
			ce.Kind = llm.KindQuotaExhausted // sent as a 429, but no wait will fix it
		}
		if ce.Kind == llm.KindBadRequest && strings.HasPrefix(strings.ToLower(apiErr.Message), lowCredit) {
			// Out of credit comes as a 400 invalid_request_error, with only
			// the message to tell it from a bad request.
			ce.Kind = llm.KindQuotaExhausted
		}
		if res := apiErr.Response; res != nil {
			if ce.RequestID == "" {
				ce.RequestID = res.Header.Get("request-id")
			}
			if d, ok := llm.ParseRetryAfter(res.Header, time.Now()); ok {
				ce.RetryAfter = d
			}
		}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.As(err, &urlErr):
		ce.Kind = llm.KindOf(err)
	case !answered:
		// Raised by the SDK before any request went out, such as "streaming
		// is required" for a large max_tokens.
		ce.Kind = llm.KindBadRequest
	default:
		ce.Kind = llm.KindOfBrokenAnswer(err, streaming)
	}
	return ce
}
