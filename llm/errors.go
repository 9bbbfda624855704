package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

// Kind is the class of a failed call, which decides how a [BreakerClient]'s
// two breakers count it:
//
//	kind                                        provider breaker  model breaker
//	rate_limited, overloaded, server_error      success           failure
//	timeout, not_found, truncated               neither           failure
//	transport, auth, quota_exhausted            failure           neither
//	bad_request, canceled                       neither           neither
//
// A call with no model breaker (no model named) counts model failures on
// the provider's breaker. A Retry-After on a rate limit, overload or server
// error opens the model's breaker at once, for at least that long (see
// [WithRetryAfterLimits]), and an exhausted quota opens the provider's (see
// [WithQuotaOpen]).
type Kind string

// The kinds of failed call.
const (
	KindRateLimited    Kind = "rate_limited"    // 429: too many requests for now
	KindQuotaExhausted Kind = "quota_exhausted" // 402: out of credit or over a spend limit
	KindOverloaded     Kind = "overloaded"      // 529 / 503: the provider is overloaded
	KindServerError    Kind = "server_error"    // other 5xx, or an answer that is not what the API sends
	KindTimeout        Kind = "timeout"         // the call or the caller's deadline timed out
	KindTransport      Kind = "transport"       // no HTTP answer, or one cut off: connection refused, reset, DNS...
	KindAuth           Kind = "auth"            // 401, 403: the key is not good
	KindNotFound       Kind = "not_found"       // 404: no such model
	KindBadRequest     Kind = "bad_request"     // 400, 413, 422, or refused before any network call
	KindCanceled       Kind = "canceled"        // the caller gave up
	KindTruncated      Kind = "truncated"       // a stream that ended before it finished, or was cut off
)

// CallError is a failed call, classified. It unwraps to the provider's
// own error, so errors.As finds the SDK's error type through it. Adapters
// return one for every failure, and [BreakerClient] returns every error of
// the client it wraps as one, filling in Provider and Model where the
// client did not.
type CallError struct {
	Provider   string        // the provider's name, as given to NewBreakerClient or the adapter
	Model      string        // the model called, if known
	Kind       Kind          // what went wrong, which decides how the breakers count it
	StatusCode int           // the HTTP status, if there was one
	RetryAfter time.Duration // how long the provider asked callers to wait, if it said
	RequestID  string        // the provider's request id, for support tickets
	Err        error         // the provider's or SDK's own error
}

// Error gives the provider, model, kind and status, then the cause.
func (e *CallError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "llm: %s", e.Provider)
	if e.Model != "" {
		fmt.Fprintf(&b, "/%s", e.Model)
	}
	fmt.Fprintf(&b, ": %s", e.Kind)
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, ", request id %s", e.RequestID)
	}
	cause := e.Err
	if inner, ok := cause.(*CallError); ok {
		cause = inner.Err // a CallError completed by BreakerClient: say it once
	}
	if cause != nil {
		fmt.Fprintf(&b, ": %v", cause)
	}
	return b.String()
}

// Unwrap returns the provider's or SDK's own error.
func (e *CallError) Unwrap() error { return e.Err }

// CircuitOpenError is returned, without a network call, while a breaker
// refuses calls to the provider or model. It matches [engine.ErrOpen].
type CircuitOpenError struct {
	Provider   string            // the provider's name
	Model      string            // empty when the provider's own breaker is open
	RetryAfter time.Duration     // until the circuit lets a probe through, as best known
	Err        *engine.OpenError // the refusing breaker's error
}

// Error names the provider (and model) and says when to retry.
func (e *CircuitOpenError) Error() string {
	target := e.Provider
	if e.Model != "" {
		target += "/" + e.Model
	}
	return fmt.Sprintf("llm: circuit open for %s, retry after %s", target, e.RetryAfter.Round(time.Millisecond))
}

// Is reports whether target is [engine.ErrOpen].
func (e *CircuitOpenError) Is(target error) bool { return target == engine.ErrOpen }

// Unwrap returns the refusing breaker's [*engine.OpenError].
func (e *CircuitOpenError) Unwrap() error { return e.Err }

// KindOf returns the kind of err: a *CallError's own, or one inferred from
// a plain error (cancellation, a deadline, a network timeout, or else a
// transport failure).
func KindOf(err error) Kind {
	var ce *CallError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return ce.Kind
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	}
	return KindTransport
}

// KindOfBrokenAnswer sorts, for adapters, an error about an answer that
// arrived but could not be read: the far end failed, not the request, so
// it is never KindBadRequest. A body cut off is KindTruncated in a stream
// (streaming) and KindTransport otherwise; a network error is KindOf's;
// anything else (a body or an event that is not the JSON the API sends)
// is KindServerError.
func KindOfBrokenAnswer(err error, streaming bool) Kind {
	var ne net.Error
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		if streaming {
			return KindTruncated
		}
		return KindTransport
	case errors.As(err, &ne):
		return KindOf(err)
	}
	return KindServerError
}

// KindForStatus maps an HTTP status to a kind, for adapters. Quota
// exhaustion travels as a 402 Payment Required, or as a 429, 403 or 400
// with a provider-specific code, so adapters check for it first.
func KindForStatus(status int) Kind {
	switch {
	case status == http.StatusPaymentRequired:
		return KindQuotaExhausted
	case status == http.StatusTooManyRequests:
		return KindRateLimited
	case status == 529, status == http.StatusServiceUnavailable:
		return KindOverloaded
	case status == http.StatusRequestTimeout, status == http.StatusGatewayTimeout:
		return KindTimeout
	case status >= 500:
		return KindServerError
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return KindAuth
	case status == http.StatusNotFound:
		return KindNotFound
	}
	return KindBadRequest
}

// ParseRetryAfter reads how long a response asks the caller to wait, for
// adapters: the retry-after-ms header (milliseconds) if present and valid,
// else Retry-After, in seconds or as an HTTP date relative to now. Numbers
// must be digits only, as RFC 9110's delay-seconds are; a delay too long
// for a time.Duration is reported as the longest one, for the caller's
// limits to clamp. It returns false if neither is present and valid.
func ParseRetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if d, ok := parseDelay(v, time.Millisecond); ok {
			return d, true
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if d, ok := parseDelay(v, time.Second); ok {
		return d, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// parseDelay reads v, a count of unit made of digits only, saturating at
// the longest time.Duration.
func parseDelay(v string, unit time.Duration) (time.Duration, bool) {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > uint64(math.MaxInt64/unit) {
		return math.MaxInt64, true // out of range: far too long anyway
	}
	return time.Duration(n) * unit, true
}
