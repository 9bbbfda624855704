package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/nodus/circuitbreaker/engine"
	"github.com/nodus/circuitbreaker/llm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server speaks OpenAI's wire format with a scripted answer.
type server struct {
	*httptest.Server
	hits atomic.Int64
}

func newServer(t *testing.T, h http.HandlerFunc) (*server, *Client) {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	c := New(openai.NewClient(option.WithBaseURL(s.URL), option.WithAPIKey("test-key")), WithModel("gpt-4o-mini"))
	return s, c
}

const completion = `{"id":"c1","object":"chat.completion","created":1,"model":"gpt-4o-mini",
"choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],
"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`

func apiError(status int, code string, headers map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"message":"scripted %d","type":"scripted","param":null,"code":%q}}`, status, code)
	}
}

var msgs = []llm.Message{{Role: llm.RoleSystem, Content: "be brief"}, {Role: llm.RoleUser, Content: "hi"}}

func TestChat(t *testing.T) {
	_, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, completion)
	})
	resp, err := c.Chat(t.Context(), msgs, llm.WithMaxTokens(10), llm.WithTemperature(0.2))
	require.NoError(t, err)
	assert.Equal(t, "hello there", resp.Content)
	assert.Equal(t, "stop", resp.FinishReason)
	assert.Equal(t, llm.Usage{InputTokens: 5, OutputTokens: 2}, resp.Usage)
}

func TestErrors(t *testing.T) {
	date := time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		kind    llm.Kind
		status  int
		ra      time.Duration
		raDelta time.Duration
	}{
		{"429 with Retry-After seconds", apiError(429, "rate_limit_exceeded", map[string]string{"Retry-After": "7", "x-request-id": "req_1"}), llm.KindRateLimited, 429, 7 * time.Second, 0},
		{"429 with Retry-After date", apiError(429, "rate_limit_exceeded", map[string]string{"Retry-After": date}), llm.KindRateLimited, 429, 30 * time.Second, 2 * time.Second},
		{"429 with retry-after-ms", apiError(429, "rate_limit_exceeded", map[string]string{"retry-after-ms": "1500", "Retry-After": "9"}), llm.KindRateLimited, 429, 1500 * time.Millisecond, 0},
		{"quota", apiError(429, "insufficient_quota", nil), llm.KindQuotaExhausted, 429, 0, 0},
		{"500", apiError(500, "", nil), llm.KindServerError, 500, 0, 0},
		{"503", apiError(503, "", nil), llm.KindOverloaded, 503, 0, 0},
		{"400", apiError(400, "invalid_request_error", nil), llm.KindBadRequest, 400, 0, 0},
		{"401", apiError(401, "invalid_api_key", nil), llm.KindAuth, 401, 0, 0},
		{"404", apiError(404, "model_not_found", nil), llm.KindNotFound, 404, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newServer(t, tc.h)
			_, err := c.Chat(t.Context(), msgs)
			var ce *llm.CallError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.kind, ce.Kind)
			assert.Equal(t, tc.status, ce.StatusCode)
			assert.InDelta(t, float64(tc.ra), float64(ce.RetryAfter), float64(tc.raDelta))
			var apiErr *openai.Error
			assert.ErrorAs(t, err, &apiErr, "the SDK's error is still there")
			assert.Equal(t, int64(1), s.hits.Load(), "the SDK did not retry")
		})
	}
}

func TestRequestID(t *testing.T) {
	_, c := newServer(t, apiError(500, "", map[string]string{"x-request-id": "req_42"}))
	_, err := c.Chat(t.Context(), msgs)
	var ce *llm.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "req_42", ce.RequestID)
}

func TestTransportAndCancel(t *testing.T) {
	s, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	s.Close()
	_, err := c.Chat(t.Context(), msgs)
	assert.Equal(t, llm.KindTransport, llm.KindOf(err))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, c = newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	_, err = c.Chat(ctx, msgs)
	assert.Equal(t, llm.KindCanceled, llm.KindOf(err))
}

func sse(events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range events {
			fmt.Fprintf(w, "data: %s\n\n", e)
		}
	}
}

func chunk(content, finish string) string {
	fr := "null"
	if finish != "" {
		fr = fmt.Sprintf("%q", finish)
	}
	return fmt.Sprintf(`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":%q},"finish_reason":%s}]}`, content, fr)
}

func readAll(seq func(func(llm.Chunk, error) bool)) (string, error) {
	var b strings.Builder
	for c, err := range seq {
		if err != nil {
			return b.String(), err
		}
		b.WriteString(c.Content)
	}
	return b.String(), nil
}

func TestStream(t *testing.T) {
	_, c := newServer(t, sse(chunk("hel", ""), chunk("lo", ""), chunk("", "stop"), "[DONE]"))
	text, err := readAll(c.ChatStream(t.Context(), msgs))
	require.NoError(t, err)
	assert.Equal(t, "hello", text)
}

func TestStreamCutOffIsTruncated(t *testing.T) {
	_, c := newServer(t, sse(chunk("hel", "")))
	text, err := readAll(c.ChatStream(t.Context(), msgs))
	assert.Equal(t, "hel", text)
	assert.Equal(t, llm.KindTruncated, llm.KindOf(err))
	assert.ErrorIs(t, err, ErrNoFinishReason)
}

func TestStreamErrorMidway(t *testing.T) {
	_, c := newServer(t, sse(chunk("hel", ""), `{"error":{"message":"overloaded","type":"server_error"}}`))
	text, err := readAll(c.ChatStream(t.Context(), msgs))
	assert.Equal(t, "hel", text)
	assert.Equal(t, llm.KindServerError, llm.KindOf(err))
}

func TestStreamErrorAtStart(t *testing.T) {
	_, c := newServer(t, apiError(503, "", map[string]string{"Retry-After": "3"}))
	_, err := readAll(c.ChatStream(t.Context(), msgs))
	var ce *llm.CallError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, llm.KindOverloaded, ce.Kind)
	assert.Equal(t, 3*time.Second, ce.RetryAfter)
}

// Through the breaker: a 429 with Retry-After opens the model's circuit,
// and the next call never reaches the server.
func TestBehindABreaker(t *testing.T) {
	s, c := newServer(t, apiError(429, "rate_limit_exceeded", map[string]string{"Retry-After": "20"}))
	e, err := engine.New(engine.Config{})
	require.NoError(t, err)
	defer e.Close()
	guarded := llm.NewBreakerClient(c, Provider, llm.WithEngine(e), llm.WithDefaultModel("gpt-4o-mini"))
	_, err = guarded.Chat(t.Context(), msgs)
	assert.Equal(t, llm.KindRateLimited, llm.KindOf(err))
	_, err = guarded.Chat(t.Context(), msgs)
	require.ErrorIs(t, err, engine.ErrOpen)
	var open *llm.CircuitOpenError
	require.True(t, errors.As(err, &open))
	assert.Equal(t, "gpt-4o-mini", open.Model)
	assert.Equal(t, int64(1), s.hits.Load())
}

// okClient always answers: the next target of a Fallback.
type okClient struct{}

func (okClient) Chat(context.Context, []llm.Message, ...llm.Option) (*llm.Response, error) {
	return &llm.Response{Content: "ok"}, nil
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
			_, _ = io.WriteString(w, completion[:40])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection drops mid-body
		}, llm.KindTransport},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newServer(t, tc.h)
			_, err := c.Chat(t.Context(), msgs)
			assert.Equal(t, tc.kind, llm.KindOf(err), "%v", err)

			e, err := engine.New(engine.Config{})
			require.NoError(t, err)
			defer e.Close()
			guarded := llm.NewBreakerClient(c, Provider, llm.WithEngine(e), llm.WithDefaultModel("gpt-4o-mini"))
			_, err = llm.Fallback(guarded, okClient{}).Chat(t.Context(), msgs)
			assert.NoError(t, err, "Fallback moves on")
		})
	}
}

// A stream the network cuts off is truncated, a failure of the model.
func TestStreamConnectionDropIsTruncated(t *testing.T) {
	_, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: %s\n\n", chunk("hel", ""))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	e, err := engine.New(engine.Config{})
	require.NoError(t, err)
	defer e.Close()
	guarded := llm.NewBreakerClient(c, Provider, llm.WithEngine(e), llm.WithDefaultModel("gpt-4o-mini"))
	text, err := readAll(guarded.ChatStream(t.Context(), msgs))
	assert.Equal(t, "hel", text)
	assert.Equal(t, llm.KindTruncated, llm.KindOf(err), "%v", err)
	_, mb := guarded.Breakers("gpt-4o-mini")
	assert.Equal(t, uint64(1), mb.Counts().Failures)
}

// A malformed event in a 200 stream is the server's failure.
func TestStreamMalformedEventIsAServerError(t *testing.T) {
	_, c := newServer(t, sse(chunk("hel", ""), `{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo`))
	_, err := readAll(c.ChatStream(t.Context(), msgs))
	assert.Equal(t, llm.KindServerError, llm.KindOf(err), "%v", err)
}

// A request the SDK cannot build never goes out, and is a bad request.
func TestLocalErrorIsABadRequest(t *testing.T) {
	s, c := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	_, err := c.Chat(t.Context(), msgs, llm.WithTemperature(math.NaN()))
	assert.Equal(t, llm.KindBadRequest, llm.KindOf(err), "%v", err)
	_, err = readAll(c.ChatStream(t.Context(), msgs, llm.WithTemperature(math.NaN())))
	assert.Equal(t, llm.KindBadRequest, llm.KindOf(err), "%v", err)
	assert.Zero(t, s.hits.Load())
}

// A Retry-After too long to represent opens the model's circuit at once,
// for the WithRetryAfterLimits maximum.
func TestHugeRetryAfterOpensAtOnce(t *testing.T) {
	s, c := newServer(t, apiError(429, "rate_limit_exceeded", map[string]string{"Retry-After": "99999999999"}))
	e, err := engine.New(engine.Config{RecoveryTimeout: time.Second})
	require.NoError(t, err)
	defer e.Close()
	guarded := llm.NewBreakerClient(c, Provider, llm.WithEngine(e), llm.WithDefaultModel("gpt-4o-mini"))
	_, _ = guarded.Chat(t.Context(), msgs)
	_, err = guarded.Chat(t.Context(), msgs)
	var open *llm.CircuitOpenError
	require.ErrorAs(t, err, &open)
	assert.InDelta(t, float64(2*time.Minute), float64(open.RetryAfter), float64(time.Second))
	assert.Equal(t, int64(1), s.hits.Load())
}
