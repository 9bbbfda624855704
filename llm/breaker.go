package llm

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

// BreakerClient is a [Client] whose calls go through two breakers:
// "llm/<provider>" and "llm/<provider>/<model>". [Kind] says how each
// failure counts on each. It always has a ChatStream method, which streams
// only if the client it wraps is a [Streamer]; [Fallback] skips it for
// streams when that client is not. Create one with [NewBreakerClient]; it
// is safe for concurrent use.
type BreakerClient struct {
	client   Client
	provider string
	engine   *engine.Engine
	own      bool // the engine was made here, and is closed by Close
	model    string
	raMin    time.Duration
	raMax    time.Duration
	quota    time.Duration
}

// BreakerOption configures a BreakerClient.
type BreakerOption func(*BreakerClient)

// WithEngine takes the breakers from e (and their defaults from its
// Config) instead of an engine of the client's own, so that clients can
// share breakers, a transition stream and metrics.
func WithEngine(e *engine.Engine) BreakerOption {
	return func(c *BreakerClient) { c.engine = e }
}

// WithDefaultModel names the model of calls that do not pick one with
// [WithModel], so that they get the model's breaker too. It only names the
// breaker: the wrapped client picks its own default model.
func WithDefaultModel(model string) BreakerOption {
	return func(c *BreakerClient) { c.model = model }
}

// WithRetryAfterLimits clamps how long a provider's Retry-After may hold a
// model's circuit open. The default is [1s, 2m]; the breaker's own
// Config.MaxRecoveryTimeout caps it too. The circuit stays open for the
// longer of the clamped wait and the breaker's own recovery period.
func WithRetryAfterLimits(least, most time.Duration) BreakerOption {
	return func(c *BreakerClient) { c.raMin, c.raMax = least, most }
}

// WithQuotaOpen sets how long an exhausted quota holds the provider's
// circuit open. The default is 10 minutes; the breaker's own
// Config.MaxRecoveryTimeout caps it too.
func WithQuotaOpen(d time.Duration) BreakerOption {
	return func(c *BreakerClient) { c.quota = d }
}

// NewBreakerClient wraps client, which calls provider, with breakers. By
// default it makes an engine of its own with the zero [engine.Config];
// Close stops it. Use [WithEngine] to choose the breakers' settings.
func NewBreakerClient(client Client, provider string, opts ...BreakerOption) *BreakerClient {
	c := &BreakerClient{client: client, provider: provider, raMin: time.Second, raMax: 2 * time.Minute, quota: 10 * time.Minute}
	for _, o := range opts {
		o(c)
	}
	if c.engine == nil {
		c.engine, _ = engine.New(engine.Config{}) // the zero Config is valid
		c.own = true
	}
	return c
}

// Close stops the client's own engine; an engine given with WithEngine is
// left to its owner.
func (c *BreakerClient) Close() error {
	if c.own {
		return c.engine.Close()
	}
	return nil
}

// Provider returns the provider's name.
func (c *BreakerClient) Provider() string { return c.provider }

// Breakers returns the provider's breaker and the model's (nil when model
// is empty), creating them if need be, for callers that watch or reset
// them.
func (c *BreakerClient) Breakers(model string) (provider, perModel *engine.Breaker) {
	provider = c.engine.Breaker("llm/" + c.provider)
	if model != "" {
		perModel = c.engine.Breaker("llm/" + c.provider + "/" + model)
	}
	return provider, perModel
}

// Chat sends the conversation if both breakers admit it. It returns a
// [*CircuitOpenError] without calling the provider if either refuses (or
// ctx.Err(), or [engine.ErrClosed] once the engine is closed), and
// otherwise the client's answer, with any error as a [*CallError].
func (c *BreakerClient) Chat(ctx context.Context, msgs []Message, opts ...Option) (*Response, error) {
	model := c.modelOf(opts)
	g, err := c.admit(ctx, model)
	if err != nil {
		return nil, err
	}
	resp, err := c.call(ctx, g, msgs, opts)
	if err != nil {
		return nil, c.callError(model, err)
	}
	return resp, nil
}

// call calls the wrapped client and reports how it went, as a failure if
// it panics (the panic carries on), so that no probe slot waits out its
// lease for a call that is over.
func (c *BreakerClient) call(ctx context.Context, g guard, msgs []Message, opts []Option) (resp *Response, err error) {
	err = errPanicked
	defer func() { g.report(err) }()
	return c.client.Chat(ctx, msgs, opts...)
}

// errPanicked stands for the outcome of a provider call that panicked.
var errPanicked = errors.New("llm: provider client panicked")

// ChatStream streams the reply if the wrapped client is a Streamer. The
// breakers are asked when the caller starts ranging over the sequence, so
// a stream nobody reads holds no probe slot, and the outcome is reported
// when it ends: finished, failed (including cut off), or abandoned by the
// caller, which counts neither way. If the wrapped client is not a
// Streamer, the sequence yields one [*CallError] of [KindBadRequest]
// wrapping [errors.ErrUnsupported].
func (c *BreakerClient) ChatStream(ctx context.Context, msgs []Message, opts ...Option) iter.Seq2[Chunk, error] {
	return func(yield func(Chunk, error) bool) {
		model := c.modelOf(opts)
		s, ok := c.client.(Streamer)
		if !ok {
			yield(Chunk{}, &CallError{Provider: c.provider, Model: model, Kind: KindBadRequest, Err: errors.ErrUnsupported})
			return
		}
		g, err := c.admit(ctx, model)
		if err != nil {
			yield(Chunk{}, err)
			return
		}
		// Reported once, however the range ends: a panic or break in the
		// caller's loop body says nothing about the provider, a panic in
		// the provider's stream is a failure.
		outcome := errPanicked
		defer func() { g.report(outcome) }()
		for chunk, err := range s.ChatStream(ctx, msgs, opts...) {
			if err != nil {
				outcome = err
				yield(Chunk{}, c.callError(model, err))
				return
			}
			outcome = errAbandoned
			if !yield(chunk, nil) {
				return
			}
			outcome = errPanicked
		}
		outcome = nil
	}
}

// canStream reports whether the wrapped client can stream, so that
// [Fallback] skips a BreakerClient whose ChatStream could only fail.
func (c *BreakerClient) canStream() bool { return canStream(c.client) }

// errAbandoned marks a stream its caller stopped reading.
var errAbandoned = errors.New("llm: stream abandoned by the caller")

func (c *BreakerClient) modelOf(opts []Option) string {
	if m := NewRequest(opts...).Model; m != "" {
		return m
	}
	return c.model
}

// guard holds a call's tickets, one per breaker.
type guard struct {
	c               *BreakerClient
	provider, model *engine.Ticket
}

func (c *BreakerClient) admit(ctx context.Context, model string) (guard, error) {
	g := guard{c: c}
	pb, mb := c.Breakers(model)
	var err error
	if g.provider, err = pb.Admit(ctx); err != nil {
		return g, c.openError("", err)
	}
	if mb != nil {
		if g.model, err = mb.Admit(ctx); err != nil {
			g.provider.ReportAs(engine.Ignored, nil)
			return g, c.openError(model, err)
		}
	}
	return g, nil
}

func (c *BreakerClient) openError(model string, err error) error {
	var oe *engine.OpenError
	if !errors.As(err, &oe) {
		return err // the caller's context, or a closed engine
	}
	ra := oe.RetryAfter
	if !oe.Until.IsZero() {
		ra = max(oe.Until.Sub(c.engine.Clock().Now()), 0)
	}
	return &CircuitOpenError{Provider: c.provider, Model: model, RetryAfter: ra, Err: oe}
}

// report tells each breaker how the call went for it. A rate limit or an
// overloaded model is the model's problem, not the provider's; transport,
// auth and quota failures are the provider's; bad requests and callers
// that gave up are nobody's.
func (g guard) report(err error) {
	if err == nil {
		g.provider.ReportAs(engine.Success, nil)
		g.model.ReportAs(engine.Success, nil)
		return
	}
	if err == errAbandoned {
		g.provider.ReportAs(engine.Ignored, nil)
		g.model.ReportAs(engine.Ignored, nil)
		return
	}
	var ra time.Duration
	var ce *CallError
	if errors.As(err, &ce) {
		ra = ce.RetryAfter
	}
	kind := KindOf(err)
	providerOutcome, modelOutcome := engine.Ignored, engine.Ignored
	var providerErr, modelErr error = err, err
	switch kind {
	case KindRateLimited, KindOverloaded, KindServerError:
		providerOutcome, modelOutcome = engine.Success, engine.Failure
		if ra > 0 {
			modelErr = openFor{err, min(max(ra, g.c.raMin), g.c.raMax)}
		}
	case KindTimeout, KindNotFound, KindTruncated:
		modelOutcome = engine.Failure
	case KindTransport, KindAuth:
		providerOutcome = engine.Failure
	case KindQuotaExhausted:
		providerOutcome, providerErr = engine.Failure, openFor{err, g.c.quota}
	}
	if g.model == nil && modelOutcome == engine.Failure {
		// No model breaker: the provider's takes the model's failures.
		providerOutcome, providerErr = engine.Failure, modelErr
	}
	g.provider.ReportAs(providerOutcome, providerErr)
	g.model.ReportAs(modelOutcome, modelErr)
}

// openFor carries how long a failure should hold a circuit open; the
// breaker reads it through its RetryAfter method.
type openFor struct {
	err error
	d   time.Duration
}

func (o openFor) Error() string             { return o.err.Error() }
func (o openFor) Unwrap() error             { return o.err }
func (o openFor) RetryAfter() time.Duration { return o.d }

// callError returns err as a *CallError for this provider and model. A
// *CallError from the client that lacks them is wrapped, not changed: the
// client may share it.
func (c *BreakerClient) callError(model string, err error) error {
	var ce *CallError
	if !errors.As(err, &ce) {
		return &CallError{Provider: c.provider, Model: model, Kind: KindOf(err), Err: err}
	}
	if ce.Provider != "" && ce.Model != "" {
		return err
	}
	w := *ce
	w.Err = err
	if w.Provider == "" {
		w.Provider = c.provider
	}
	if w.Model == "" {
		w.Model = model
	}
	return &w
}
