package llm

import (
	"context"
	"errors"
	"iter"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/nodus/circuitbreaker/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake is a scripted Client and Streamer.
type fake struct {
	calls  atomic.Int64
	err    error
	chunks []Chunk
	cutAt  int // stream: fail with err after this many chunks (when err != nil)
}

func (f *fake) Chat(ctx context.Context, msgs []Message, opts ...Option) (*Response, error) {
	f.calls.Add(1)
	if f.err != nil {
		return nil, f.err
	}
	return &Response{Content: "hi", Model: NewRequest(opts...).Model, FinishReason: "stop"}, nil
}

func (f *fake) ChatStream(ctx context.Context, msgs []Message, opts ...Option) iter.Seq2[Chunk, error] {
	return func(yield func(Chunk, error) bool) {
		f.calls.Add(1)
		for i, c := range f.chunks {
			if f.err != nil && i == f.cutAt {
				yield(Chunk{}, f.err)
				return
			}
			if !yield(c, nil) {
				return
			}
		}
		if f.err != nil && f.cutAt >= len(f.chunks) {
			yield(Chunk{}, f.err)
		}
	}
}

var msgs = []Message{{Role: RoleUser, Content: "hello"}}

type harness struct {
	mock *clock.Mock
	e    *engine.Engine
}

func newHarness(t *testing.T) harness {
	t.Helper()
	mock := clock.NewMock()
	e, err := engine.New(engine.Config{Clock: mock, FailureThreshold: 2, RecoveryTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return harness{mock, e}
}

func (h harness) client(inner Client) *BreakerClient {
	return NewBreakerClient(inner, "acme", WithEngine(h.e), WithDefaultModel("m1"))
}

func (h harness) failures(name string) uint64 {
	b, ok := h.e.Lookup(name)
	if !ok {
		return 0
	}
	return b.Counts().Failures
}

func TestChatSuccess(t *testing.T) {
	h := newHarness(t)
	c := h.client(&fake{})
	resp, err := c.Chat(t.Context(), msgs, WithModel("m2"))
	require.NoError(t, err)
	assert.Equal(t, "m2", resp.Model)
	pb, mb := c.Breakers("m2")
	assert.Equal(t, uint64(1), pb.Counts().Successes)
	assert.Equal(t, uint64(1), mb.Counts().Successes)
}

func TestClassification(t *testing.T) {
	for _, tc := range []struct {
		err               error
		provider, model   uint64 // failures counted
		providerIgnoredOK bool
	}{
		{&CallError{Kind: KindRateLimited, StatusCode: 429}, 0, 1, false},
		{&CallError{Kind: KindOverloaded, StatusCode: 529}, 0, 1, false},
		{&CallError{Kind: KindServerError, StatusCode: 500}, 0, 1, false},
		{&CallError{Kind: KindTimeout}, 0, 1, true},
		{&CallError{Kind: KindNotFound, StatusCode: 404}, 0, 1, true},
		{&CallError{Kind: KindTruncated}, 0, 1, true},
		{&CallError{Kind: KindTransport}, 1, 0, true},
		{&CallError{Kind: KindAuth, StatusCode: 401}, 1, 0, true},
		{&CallError{Kind: KindBadRequest, StatusCode: 400}, 0, 0, true},
		{&CallError{Kind: KindCanceled}, 0, 0, true},
		{context.Canceled, 0, 0, true},
		{context.DeadlineExceeded, 0, 1, true},
		{errors.New("connection reset by peer"), 1, 0, true},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			h := newHarness(t)
			inner := &fake{err: tc.err}
			c := h.client(inner)
			_, err := c.Chat(t.Context(), msgs)
			var ce *CallError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "acme", ce.Provider)
			assert.Equal(t, "m1", ce.Model)
			assert.ErrorIs(t, err, tc.err, "the provider's error is still there")
			assert.Equal(t, tc.provider, h.failures("llm/acme"))
			assert.Equal(t, tc.model, h.failures("llm/acme/m1"))
		})
	}
}

func TestRetryAfterOpensTheModelAtOnce(t *testing.T) {
	h := newHarness(t)
	inner := &fake{err: &CallError{Kind: KindRateLimited, StatusCode: 429, RetryAfter: 30 * time.Second}}
	c := h.client(inner)
	_, err := c.Chat(t.Context(), msgs)
	require.Error(t, err)

	inner.err = nil
	_, err = c.Chat(t.Context(), msgs)
	var open *CircuitOpenError
	require.ErrorAs(t, err, &open)
	assert.ErrorIs(t, err, engine.ErrOpen)
	assert.Equal(t, "m1", open.Model)
	assert.Equal(t, 30*time.Second, open.RetryAfter)
	assert.Equal(t, int64(1), inner.calls.Load(), "rejected without calling the provider")

	_, err = c.Chat(t.Context(), msgs, WithModel("m2"))
	require.NoError(t, err, "other models of the provider are fine")

	h.mock.Add(30 * time.Second)
	_, err = c.Chat(t.Context(), msgs)
	require.NoError(t, err, "the probe after Retry-After closes it")
}

func TestRetryAfterIsClamped(t *testing.T) {
	h := newHarness(t)
	inner := &fake{err: &CallError{Kind: KindRateLimited, RetryAfter: time.Hour}}
	c := NewBreakerClient(inner, "acme", WithEngine(h.e), WithDefaultModel("m1"), WithRetryAfterLimits(time.Second, time.Minute))
	_, _ = c.Chat(t.Context(), msgs)
	_, err := c.Chat(t.Context(), msgs)
	var open *CircuitOpenError
	require.ErrorAs(t, err, &open)
	assert.Equal(t, time.Minute, open.RetryAfter)
}

func TestQuotaOpensTheProvider(t *testing.T) {
	h := newHarness(t)
	inner := &fake{err: &CallError{Kind: KindQuotaExhausted, StatusCode: 429}}
	c := NewBreakerClient(inner, "acme", WithEngine(h.e), WithDefaultModel("m1"), WithQuotaOpen(5*time.Minute))
	_, _ = c.Chat(t.Context(), msgs)
	_, err := c.Chat(t.Context(), msgs, WithModel("other"))
	var open *CircuitOpenError
	require.ErrorAs(t, err, &open)
	assert.Empty(t, open.Model, "the provider's breaker refused")
	assert.Equal(t, 5*time.Minute, open.RetryAfter)
}

func TestBadRequestsNeverOpen(t *testing.T) {
	h := newHarness(t)
	inner := &fake{err: &CallError{Kind: KindBadRequest, StatusCode: 400}}
	c := h.client(inner)
	for range 10 {
		_, err := c.Chat(t.Context(), msgs)
		require.Equal(t, KindBadRequest, KindOf(err))
	}
	pb, mb := c.Breakers("m1")
	assert.Equal(t, engine.Closed, pb.State())
	assert.Equal(t, engine.Closed, mb.State())
	assert.Equal(t, uint64(10), mb.Counts().Ignored)
}

func TestModelRejectionFreesTheProviderTicket(t *testing.T) {
	h := newHarness(t)
	c := h.client(&fake{})
	_, mb := c.Breakers("m1")
	mb.Trip()
	for range 5 {
		_, err := c.Chat(t.Context(), msgs)
		require.ErrorIs(t, err, engine.ErrOpen)
	}
	pb, _ := c.Breakers("m1")
	assert.Equal(t, uint64(5), pb.Counts().Ignored)
	assert.Zero(t, pb.Counts().Failures)
}

func TestFallbackSkipsOpenCircuits(t *testing.T) {
	h := newHarness(t)
	first, second := &fake{}, &fake{}
	a := NewBreakerClient(first, "a", WithEngine(h.e), WithDefaultModel("m"))
	b := NewBreakerClient(second, "b", WithEngine(h.e), WithDefaultModel("m"))
	pa, _ := a.Breakers("m")
	pa.Trip()
	resp, err := Fallback(a, b).Chat(t.Context(), msgs)
	require.NoError(t, err)
	assert.Equal(t, "hi", resp.Content)
	assert.Zero(t, first.calls.Load(), "no network call to an open circuit")
	assert.Equal(t, int64(1), second.calls.Load())
}

func TestFallbackOnFailure(t *testing.T) {
	h := newHarness(t)
	first := &fake{err: &CallError{Kind: KindOverloaded, StatusCode: 529}}
	second := &fake{}
	f := Fallback(NewBreakerClient(first, "a", WithEngine(h.e)), NewBreakerClient(second, "b", WithEngine(h.e)))
	_, err := f.Chat(t.Context(), msgs)
	require.NoError(t, err)
	assert.Equal(t, int64(1), first.calls.Load())
}

func TestFallbackStopsOnBadRequest(t *testing.T) {
	first := &fake{err: &CallError{Kind: KindBadRequest, StatusCode: 400}}
	second := &fake{}
	_, err := Fallback(first, second).Chat(t.Context(), msgs)
	require.Equal(t, KindBadRequest, KindOf(err))
	assert.Zero(t, second.calls.Load())
}

func TestFallbackAllOpen(t *testing.T) {
	h := newHarness(t)
	a := NewBreakerClient(&fake{}, "a", WithEngine(h.e))
	b := NewBreakerClient(&fake{}, "b", WithEngine(h.e))
	pa, _ := a.Breakers("")
	pb, _ := b.Breakers("")
	pa.Trip()
	h.mock.Add(4 * time.Second)
	pb.Trip()
	_, err := Fallback(a, b).Chat(t.Context(), msgs)
	var fe *FallbackError
	require.ErrorAs(t, err, &fe)
	assert.ErrorIs(t, err, engine.ErrOpen)
	assert.Equal(t, 6*time.Second, fe.RetryAfter, "a reopens first")
	assert.Contains(t, err.Error(), "the soonest reopens in 6s")
}

// RetryAfter promises a time only when every target's circuit was open.
func TestFallbackOpenThenFailedHasNoRetryAfter(t *testing.T) {
	h := newHarness(t)
	a := NewBreakerClient(&fake{}, "a", WithEngine(h.e))
	b := &fake{err: &CallError{Kind: KindServerError, StatusCode: 500}}
	pa, _ := a.Breakers("")
	pa.Trip()
	_, err := Fallback(a, b).Chat(t.Context(), msgs)
	var fe *FallbackError
	require.ErrorAs(t, err, &fe)
	assert.Zero(t, fe.RetryAfter)
}

func TestPin(t *testing.T) {
	inner := &fake{}
	resp, err := Pin(inner, "big").Chat(t.Context(), msgs, WithModel("small"))
	require.NoError(t, err)
	assert.Equal(t, "big", resp.Model)
	_, ok := Pin(inner, "big").(Streamer)
	assert.True(t, ok, "a pinned Streamer still streams")
}

func collectStream(seq iter.Seq2[Chunk, error]) (string, error) {
	var text string
	for c, err := range seq {
		if err != nil {
			return text, err
		}
		text += c.Content
	}
	return text, nil
}

func TestStream(t *testing.T) {
	h := newHarness(t)
	inner := &fake{chunks: []Chunk{{Content: "a"}, {Content: "b"}, {Content: "c", FinishReason: "stop"}}}
	c := h.client(inner)
	text, err := collectStream(c.ChatStream(t.Context(), msgs))
	require.NoError(t, err)
	assert.Equal(t, "abc", text)
	_, mb := c.Breakers("m1")
	assert.Equal(t, uint64(1), mb.Counts().Successes, "a stream is one call")
}

func TestStreamFailsMidway(t *testing.T) {
	h := newHarness(t)
	inner := &fake{chunks: []Chunk{{Content: "a"}, {Content: "b"}}, err: &CallError{Kind: KindTruncated}, cutAt: 1}
	c := h.client(inner)
	text, err := collectStream(c.ChatStream(t.Context(), msgs))
	assert.Equal(t, "a", text)
	assert.Equal(t, KindTruncated, KindOf(err))
	assert.Equal(t, uint64(1), h.failures("llm/acme/m1"))
}

func TestStreamAbandonedAndUnread(t *testing.T) {
	h := newHarness(t)
	inner := &fake{chunks: []Chunk{{Content: "a"}, {Content: "b"}}}
	c := h.client(inner)
	_ = c.ChatStream(t.Context(), msgs) // never read
	_, mb := c.Breakers("m1")
	assert.Zero(t, mb.Counts().Requests, "an unread stream is no call")
	assert.Zero(t, inner.calls.Load())

	for range c.ChatStream(t.Context(), msgs) {
		break // the caller stops reading
	}
	cn := mb.Counts()
	assert.Equal(t, uint64(1), cn.Ignored, "abandoned: neither way")
	assert.Zero(t, cn.Failures)
}

func TestStreamFallbackBeforeFirstChunk(t *testing.T) {
	h := newHarness(t)
	broken := &fake{chunks: []Chunk{{Content: "x"}}, err: &CallError{Kind: KindOverloaded}, cutAt: 0}
	good := &fake{chunks: []Chunk{{Content: "ok", FinishReason: "stop"}}}
	f := Fallback(NewBreakerClient(broken, "a", WithEngine(h.e)), NewBreakerClient(good, "b", WithEngine(h.e)))
	text, err := collectStream(f.ChatStream(t.Context(), msgs))
	require.NoError(t, err)
	assert.Equal(t, "ok", text)

	midway := &fake{chunks: []Chunk{{Content: "x"}, {Content: "y"}}, err: &CallError{Kind: KindOverloaded}, cutAt: 1}
	f = Fallback(NewBreakerClient(midway, "c", WithEngine(h.e)), NewBreakerClient(good, "d", WithEngine(h.e)))
	text, err = collectStream(f.ChatStream(t.Context(), msgs))
	assert.Equal(t, "x", text, "after the first chunk there is no falling back")
	assert.Equal(t, KindOverloaded, KindOf(err))
}

func TestOwnEngine(t *testing.T) {
	c := NewBreakerClient(&fake{}, "acme")
	_, err := c.Chat(t.Context(), msgs)
	require.NoError(t, err)
	require.NoError(t, c.Close())
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		h    http.Header
		want time.Duration
		ok   bool
	}{
		{"seconds", http.Header{"Retry-After": {"7"}}, 7 * time.Second, true},
		{"seconds with spaces", http.Header{"Retry-After": {"  20 "}}, 20 * time.Second, true},
		{"zero", http.Header{"Retry-After": {"0"}}, 0, true},
		{"ms wins", http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"7"}}, 250 * time.Millisecond, true},
		{"lower-case ms header", http.Header{http.CanonicalHeaderKey("retry-after-ms"): {"250"}}, 250 * time.Millisecond, true},
		{"IMF-fixdate", http.Header{"Retry-After": {"Fri, 27 Nov 2026 12:00:30 GMT"}}, 30 * time.Second, true},
		{"RFC 850 date", http.Header{"Retry-After": {"Friday, 27-Nov-26 12:00:30 GMT"}}, 30 * time.Second, true},
		{"asctime date", http.Header{"Retry-After": {"Fri Nov 27 12:00:30 2026"}}, 30 * time.Second, true},
		{"past date", http.Header{"Retry-After": {"Fri, 27 Nov 2026 11:00:00 GMT"}}, 0, true},
		{"junk ms falls back", http.Header{"Retry-After-Ms": {"soon"}, "Retry-After": {"9"}}, 9 * time.Second, true},
		{"negative ms falls back", http.Header{"Retry-After-Ms": {"-5"}, "Retry-After": {"9"}}, 9 * time.Second, true},
		// A valid delay too long for a time.Duration saturates, for the
		// caller's limits to clamp.
		{"huge seconds", http.Header{"Retry-After": {"99999999999"}}, math.MaxInt64, true},
		{"huge ms", http.Header{"Retry-After-Ms": {"99999999999999999"}}, math.MaxInt64, true},
		{"beyond uint64", http.Header{"Retry-After": {"999999999999999999999999"}}, math.MaxInt64, true},
		// delay-seconds is 1*DIGIT (RFC 9110 10.2.3).
		{"fraction", http.Header{"Retry-After": {"1.5"}}, 0, false},
		{"exponent", http.Header{"Retry-After": {"1e3"}}, 0, false},
		{"huge exponent", http.Header{"Retry-After": {"1e300"}}, 0, false},
		{"plus sign", http.Header{"Retry-After": {"+5"}}, 0, false},
		{"hex float", http.Header{"Retry-After": {"0x1p4"}}, 0, false},
		{"negative", http.Header{"Retry-After": {"-3"}}, 0, false},
		{"junk", http.Header{"Retry-After": {"soon"}}, 0, false},
		{"NaN ms", http.Header{"Retry-After-Ms": {"NaN"}}, 0, false},
		{"Inf", http.Header{"Retry-After": {"Inf"}}, 0, false},
		{"bad date", http.Header{"Retry-After": {"Fri, 32 Nov 2026 12:00:30 GMT"}}, 0, false},
		{"absent", http.Header{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tc.h, now)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "1.5", "-1", "+5", "0x1p4", "NaN", "Inf", "1e308", "99999999999", "Fri, 27 Nov 2026 12:00:30 GMT", ""} {
		f.Add(s, s)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, ms, s string) {
		h := http.Header{}
		if ms != "" {
			h.Set("Retry-After-Ms", ms)
		}
		if s != "" {
			h.Set("Retry-After", s)
		}
		d, ok := ParseRetryAfter(h, now)
		if !ok && d != 0 {
			t.Fatalf("not ok but %s", d)
		}
		if d < 0 {
			t.Fatalf("negative wait %s for %q / %q", d, ms, s)
		}
		// Every HTTP date has a space; anything else must be digits only.
		if v := strings.TrimSpace(h.Get("Retry-After")); ok && ms == "" && !strings.Contains(v, " ") && strings.Trim(v, "0123456789") != "" {
			t.Fatalf("accepted %q, which is neither digits nor a date", v)
		}
	})
}

// A huge Retry-After opens the model's circuit at once, for the limit.
func TestHugeRetryAfterOpensForTheLimit(t *testing.T) {
	h := newHarness(t)
	d, ok := ParseRetryAfter(http.Header{"Retry-After": {"99999999999"}}, time.Now())
	require.True(t, ok)
	f := &fake{err: &CallError{Kind: KindRateLimited, StatusCode: 429, RetryAfter: d}}
	c := NewBreakerClient(f, "acme", WithEngine(h.e), WithDefaultModel("m1"), WithRetryAfterLimits(time.Second, 30*time.Second))
	_, _ = c.Chat(t.Context(), msgs)
	_, err := c.Chat(t.Context(), msgs)
	var open *CircuitOpenError
	require.ErrorAs(t, err, &open)
	assert.Equal(t, 30*time.Second, open.RetryAfter)
	assert.Equal(t, int64(1), f.calls.Load())
}

// A Retry-After shorter than the breaker's recovery period opens the
// circuit for the recovery period: the Retry-After is a floor.
func TestRetryAfterIsAFloor(t *testing.T) {
	h := newHarness(t) // RecoveryTimeout 10s
	f := &fake{err: &CallError{Kind: KindRateLimited, StatusCode: 429, RetryAfter: 5 * time.Second}}
	c := h.client(f)
	_, _ = c.Chat(t.Context(), msgs)
	_, err := c.Chat(t.Context(), msgs)
	var open *CircuitOpenError
	require.ErrorAs(t, err, &open)
	assert.Equal(t, 10*time.Second, open.RetryAfter)
}

func TestKindForStatus(t *testing.T) {
	for status, want := range map[int]Kind{
		400: KindBadRequest, 401: KindAuth, 402: KindQuotaExhausted, 403: KindAuth, 404: KindNotFound, 408: KindTimeout,
		413: KindBadRequest, 422: KindBadRequest, 429: KindRateLimited, 500: KindServerError,
		502: KindServerError, 503: KindOverloaded, 504: KindTimeout, 529: KindOverloaded,
	} {
		assert.Equal(t, want, KindForStatus(status), "%d", status)
	}
}

// panicky is a client whose calls and streams panic.
type panicky struct{}

func (panicky) Chat(context.Context, []Message, ...Option) (*Response, error) { panic("bug") }

func (panicky) ChatStream(context.Context, []Message, ...Option) iter.Seq2[Chunk, error] {
	return func(yield func(Chunk, error) bool) {
		if yield(Chunk{Content: "a"}, nil) {
			panic("bug")
		}
	}
}

// A provider client that panics fails its call at once: the panic goes on
// up, and the breaker does not wait out a lease for it.
func TestPanickingClientCountsAsFailure(t *testing.T) {
	h := newHarness(t)
	c := NewBreakerClient(panicky{}, "p", WithEngine(h.e), WithDefaultModel("m"))
	assert.Panics(t, func() { _, _ = c.Chat(t.Context(), msgs) })
	assert.Panics(t, func() {
		for range c.ChatStream(t.Context(), msgs) {
		}
	})
	pb, _ := c.Breakers("m")
	assert.Equal(t, uint64(2), pb.Counts().Failures)
	assert.Equal(t, engine.Open, pb.State(), "two failures open the provider")
}

// chatOnly is a Client that cannot stream.
type chatOnly struct{ f *fake }

func (c chatOnly) Chat(ctx context.Context, msgs []Message, opts ...Option) (*Response, error) {
	return c.f.Chat(ctx, msgs, opts...)
}

// A BreakerClient, or a Pin of one, around a client that cannot stream is
// skipped by a Fallback stream, as a client that is not a Streamer is.
func TestFallbackStreamSkipsBreakerClientOverNonStreamer(t *testing.T) {
	h := newHarness(t)
	inner := &fake{}
	a := NewBreakerClient(chatOnly{inner}, "chat-only", WithEngine(h.e))
	b := NewBreakerClient(&fake{chunks: []Chunk{{Content: "hi", FinishReason: "stop"}}}, "streams", WithEngine(h.e))
	for name, f := range map[string]*FallbackClient{
		"BreakerClient": Fallback(a, b),
		"Pin":           Fallback(Pin(a, "m1"), Pin(b, "m2")),
		"nested":        Fallback(Fallback(a), b),
	} {
		t.Run(name, func(t *testing.T) {
			text, err := collectStream(f.ChatStream(t.Context(), msgs))
			require.NoError(t, err)
			assert.Equal(t, "hi", text)
		})
	}
	assert.Zero(t, inner.calls.Load())

	// Called directly, it still says it cannot stream.
	_, err := collectStream(a.ChatStream(t.Context(), msgs))
	assert.ErrorIs(t, err, errors.ErrUnsupported)
}

// Chat's errors that are not CallErrors, as docs/llm.md and the README's
// example have them: ctx.Err() before admission and engine.ErrClosed.
func TestChatErrorsBeforeAdmission(t *testing.T) {
	c := NewBreakerClient(&fake{}, "openai", WithDefaultModel("gpt-4o-mini"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	resp, err := c.Chat(ctx, msgs)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, context.Canceled)
	var ce *CallError
	var open *CircuitOpenError
	assert.False(t, errors.As(err, &ce))
	assert.False(t, errors.As(err, &open))

	require.NoError(t, c.Close())
	resp, err = c.Chat(t.Context(), msgs)
	assert.Nil(t, resp)
	require.ErrorIs(t, err, engine.ErrClosed)
	assert.False(t, errors.As(err, &ce))
}
