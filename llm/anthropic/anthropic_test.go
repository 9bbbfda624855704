package anthropic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/nodus/circuitbreaker/engine"
	"github.com/nodus/circuitbreaker/llm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type server struct {
	*httptest.Server
	hits atomic.Int64
}

// newServer speaks Anthropic's wire format with a scripted answer.
func newServer(t *testing.T, h http.HandlerFunc) (*server, *Client) {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	c := New(anthropic.NewClient(option.WithBaseURL(s.URL), option.WithAPIKey("test-key")), WithModel("claude-sonnet"))
	return s, c
}

const message = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet",
"content":[{"type":"text","text":"hello there"}],"stop_reason":"end_turn","stop_sequence":null,
"usage":{"input_tokens":5,"output_tokens":2}}`

func apiError(status int, typ, code string, headers map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("request-id", "req_hdr") // every response carries one
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		details := ""
		if code != "" {
			details = fmt.Sprintf(`,"details":{"error_code":%q}`, code)
		}
		fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":"scripted"%s},"request_id":"req_body"}`, typ, details)
	}
}

var msgs = []llm.Message{{Role: llm.RoleSystem, Content: "be brief"}, {Role: llm.RoleUser, Content: "hi"}}

func TestChat(t *testing.T) {
	_, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, message)
	})
	resp, err := c.Chat(t.Context(), msgs, llm.WithMaxTokens(10))
	require.NoError(t, err)
	assert.Equal(t, "hello there", resp.Content)
	assert.Equal(t, "end_turn", resp.FinishReason)
	assert.Equal(t, llm.Usage{InputTokens: 5, OutputTokens: 2}, resp.Usage)
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		h      http.HandlerFunc
		kind   llm.Kind
		status int
		ra     time.Duration
	}{
		{"429 rate limit with retry-after", apiError(429, "rate_limit_error", "", map[string]string{"retry-after": "12", "request-id": "req_7"}), llm.KindRateLimited, 429, 12 * time.Second},
		{"429 spend limit", apiError(429, "rate_limit_error", "enforced_spend_limit_reached", nil), llm.KindQuotaExhausted, 429, 0},
		{"529 overloaded", apiError(529, "overloaded_error", "", nil), llm.KindOverloaded, 529, 0},
		{"500 api error", apiError(500, "api_error", "", nil), llm.KindServerError, 500, 0},
		{"400 invalid request", apiError(400, "invalid_request_error", "", nil), llm.KindBadRequest, 400, 0},
		{"401 authentication", apiError(401, "authentication_error", "", nil), llm.KindAuth, 401, 0},
		{"404 not found", apiError(404, "not_found_error", "", nil), llm.KindNotFound, 404, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newServer(t, tc.h)
			_, err := c.Chat(t.Context(), msgs)
			var ce *llm.CallError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.kind, ce.Kind)
			assert.Equal(t, tc.status, ce.StatusCode)
			assert.Equal(t, tc.ra, ce.RetryAfter)
			assert.NotEmpty(t, ce.RequestID)
			var apiErr *anthropic.Error
			assert.ErrorAs(t, err, &apiErr, "the SDK's error is still there")
			assert.Equal(t, int64(1), s.hits.Load(), "the SDK did not retry")
		})
	}
}

func TestLocalErrorIsABadRequest(t *testing.T) {
	s, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	// The SDK refuses a non-streaming call this large before sending it.
	_, err := c.Chat(t.Context(), msgs, llm.WithMaxTokens(1_000_000))
	assert.Equal(t, llm.KindBadRequest, llm.KindOf(err))
	assert.Zero(t, s.hits.Load())
}

func sse(events ...[2]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range events {
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e[0], e[1])
		}
	}
}

var (
	start = [2]string{"message_start", `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}`}
	block = [2]string{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`}
	ping  = [2]string{"ping", `{"type":"ping"}`}
	delta = func(text string) [2]string {
		return [2]string{"content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, text)}
	}
	blockStop = [2]string{"content_block_stop", `{"type":"content_block_stop","index":0}`}
	msgDelta  = [2]string{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}`}
	msgStop   = [2]string{"message_stop", `{"type":"message_stop"}`}
	overload  = [2]string{"error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`}
)

func readAll(seq func(func(llm.Chunk, error) bool)) (text, finish string, err error) {
	var b strings.Builder
	for c, e := range seq {
		if e != nil {
			return b.String(), finish, e
		}
		b.WriteString(c.Content)
		if c.FinishReason != "" {
			finish = c.FinishReason
		}
	}
	return b.String(), finish, nil
}

func TestStream(t *testing.T) {
	_, c := newServer(t, sse(start, block, ping, delta("hel"), delta("lo"), blockStop, msgDelta, msgStop))
	text, finish, err := readAll(c.ChatStream(t.Context(), msgs))
	require.NoError(t, err)
	assert.Equal(t, "hello", text)
	assert.Equal(t, "end_turn", finish)
}

// Usage arrives in two parts; the last chunk carries both.
func TestStreamUsage(t *testing.T) {
	_, c := newServer(t, sse(start, block, delta("hi"), blockStop, msgDelta, msgStop))
	var last llm.Chunk
	for chunk, err := range c.ChatStream(t.Context(), msgs) {
		require.NoError(t, err)
		last = chunk
	}
	require.NotNil(t, last.Usage)
	assert.Equal(t, llm.Usage{InputTokens: 5, OutputTokens: 2}, *last.Usage)
	assert.Equal(t, "end_turn", last.FinishReason)
}

func TestStreamErrorInsideA200(t *testing.T) {
	_, c := newServer(t, sse(start, block, delta("hel"), overload))
	text, _, err := readAll(c.ChatStream(t.Context(), msgs))
	assert.Equal(t, "hel", text)
	var ce *llm.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, llm.KindOverloaded, ce.Kind, "classified by type: the status is the stream's 200")
}

func TestStreamCutOffIsTruncated(t *testing.T) {
	_, c := newServer(t, sse(start, block, delta("hel")))
	text, _, err := readAll(c.ChatStream(t.Context(), msgs))
	assert.Equal(t, "hel", text)
	assert.Equal(t, llm.KindTruncated, llm.KindOf(err))
	assert.ErrorIs(t, err, ErrNoMessageStop)
}

// Through the breaker: overload errors, even inside streams, open the
// model's circuit; the provider's stays closed.
func TestBehindABreaker(t *testing.T) {
	s, c := newServer(t, apiError(529, "overloaded_error", "", nil))
	e, err := engine.New(engine.Config{FailureThreshold: 2})
	require.NoError(t, err)
	defer e.Close()
	guarded := llm.NewBreakerClient(c, Provider, llm.WithEngine(e), llm.WithDefaultModel("claude-sonnet"))
	for range 2 {
		_, err = guarded.Chat(t.Context(), msgs)
		assert.Equal(t, llm.KindOverloaded, llm.KindOf(err))
	}
	_, err = guarded.Chat(t.Context(), msgs)
	var open *llm.CircuitOpenError
	require.True(t, errors.As(err, &open))
	assert.Equal(t, "claude-sonnet", open.Model)
	assert.Equal(t, int64(2), s.hits.Load())
	pb, _ := guarded.Breakers("claude-sonnet")
	assert.Equal(t, engine.Closed, pb.State())
}

// okClient always answers: the next target of a Fallback.
type okClient struct{}

func (okClient) Chat(context.Context, []llm.Message, ...llm.Option) (*llm.Response, error) {
	return &llm.Response{Content: "ok"}, nil
}

// guard wraps c with breakers from an engine of the test's own.
func guard(t *testing.T, c llm.Client) *llm.BreakerClient {
	t.Helper()
	e, err := engine.New(engine.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return llm.NewBreakerClient(c, Provider, llm.WithEngine(e), llm.WithDefaultModel("claude-sonnet"))
}

// An answer that arrived but cannot be read is the far end's failure, not
// a bad request: a breaker counts it and Fallback moves on.
func TestBrokenAnswerIsNotABadRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		kind llm.Kind
	}{
		{"200 HTML", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, "<html>maintenance</html>")
		}, llm.KindServerError},
		{"200 cut off", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, message[:40])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection drops mid-body
		}, llm.KindTransport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newServer(t, tc.h)
			_, err := c.Chat(t.Context(), msgs)
			assert.Equal(t, tc.kind, llm.KindOf(err), "%v", err)
			_, err = llm.Fallback(guard(t, c), okClient{}).Chat(t.Context(), msgs)
			assert.NoError(t, err, "Fallback moves on")
		})
	}
}

// A stream the network cuts off is truncated, a failure of the model.
func TestStreamConnectionDropIsTruncated(t *testing.T) {
	_, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range [][2]string{start, block, delta("hel")} {
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e[0], e[1])
		}
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	guarded := guard(t, c)
	text, _, err := readAll(guarded.ChatStream(t.Context(), msgs))
	assert.Equal(t, "hel", text)
	assert.Equal(t, llm.KindTruncated, llm.KindOf(err), "%v", err)
	_, mb := guarded.Breakers("claude-sonnet")
	assert.Equal(t, uint64(1), mb.Counts().Failures)
}

// A malformed event in a 200 stream is the server's failure.
func TestStreamMalformedEventIsAServerError(t *testing.T) {
	_, c := newServer(t, sse(start, block, [2]string{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo`}))
	_, _, err := readAll(c.ChatStream(t.Context(), msgs))
	assert.Equal(t, llm.KindServerError, llm.KindOf(err), "%v", err)
}

// Anthropic answers an account out of credit with a 400
// invalid_request_error: it is an exhausted quota, which opens the
// provider's circuit, and Fallback moves on.
func TestCreditBalanceTooLowIsQuotaExhausted(t *testing.T) {
	s, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("request-id", "req_credit")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."},"request_id":"req_credit"}`)
	})
	_, err := c.Chat(t.Context(), msgs)
	var ce *llm.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, llm.KindQuotaExhausted, ce.Kind)
	assert.Equal(t, 400, ce.StatusCode)

	guarded := guard(t, c)
	resp, err := llm.Fallback(guarded, okClient{}).Chat(t.Context(), msgs)
	require.NoError(t, err)
	assert.Equal(t, "ok", resp.Content)
	_, err = guarded.Chat(t.Context(), msgs, llm.WithModel("claude-haiku"))
	assert.ErrorIs(t, err, engine.ErrOpen, "the provider's circuit is open")
	assert.Equal(t, int64(2), s.hits.Load())
}
