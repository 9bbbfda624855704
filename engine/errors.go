package engine

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrOpen matches, with errors.Is, every error returned for a call the
	// breaker refused to run; errors.As finds the [*OpenError] with the
	// details.
	ErrOpen = errors.New("engine: circuit open")
	// ErrClosed is returned by a breaker or engine that has been closed.
	ErrClosed = errors.New("engine: breaker closed")
	// ErrInvalidConfig matches, with errors.Is, every [*ConfigError].
	ErrInvalidConfig = errors.New("engine: invalid config")
	// ErrDuplicate is returned by [Engine.NewBreaker] for a name in use.
	ErrDuplicate = errors.New("engine: duplicate breaker name")
)

// OpenError is the error for a refused call. It matches [ErrOpen].
type OpenError struct {
	// Name is the breaker's name.
	Name string
	// State is Open, or HalfOpen when every probe slot was taken.
	State State
	// Until is when the open circuit lets a probe through. It is zero in
	// half-open and while the circuit is isolated.
	Until time.Time
	// RetryAfter is the length of the open period, as chosen when the
	// circuit opened: a conservative hint for a Retry-After header. For
	// the exact time left, use Until. It is zero in half-open, where the
	// probes in flight decide soon, and while the circuit is isolated,
	// where only a Reset ends the wait.
	RetryAfter time.Duration
	// Isolated reports that the circuit was isolated by hand and stays
	// open until reset.
	Isolated bool
	// Cause is the failure that opened the circuit, if one did.
	Cause error
}

// Error says which circuit refused the call, and why.
func (e *OpenError) Error() string {
	switch {
	case e.Isolated:
		return fmt.Sprintf("engine: circuit %q isolated", e.Name)
	case e.State == HalfOpen:
		return fmt.Sprintf("engine: circuit %q half-open, all probe slots taken", e.Name)
	}
	return fmt.Sprintf("engine: circuit %q open, retry after %s", e.Name, e.RetryAfter)
}

// Is reports whether target is [ErrOpen].
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// ConfigError reports a [Config] field with a bad value. It matches
// [ErrInvalidConfig].
type ConfigError struct {
	Field string // e.g. "FailureThreshold"
	Value any    // the value given
	Rule  string // what the value must be, e.g. "must be >= 0"
}

// Error names the field, the rule and the value given.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("engine: %s %s, got %v", e.Field, e.Rule, e.Value)
}

// Is reports whether target is [ErrInvalidConfig].
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// PanicError is the error [Async] delivers when the function panicked or
// called runtime.Goexit. (The synchronous calls re-panic instead.)
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack; nil after runtime.Goexit
}

// Error returns the panic value, formatted.
func (e *PanicError) Error() string { return fmt.Sprintf("engine: panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// retryAfterError is implemented by errors that know how long the upstream
// asked callers to stay away, such as an HTTP 429 with a Retry-After header.
type retryAfterError interface {
	error
	RetryAfter() time.Duration
}

// retryAfter returns the wait the first error in err's chain asks for.
func retryAfter(err error) time.Duration {
	if ra, ok := errors.AsType[retryAfterError](err); ok {
		return ra.RetryAfter()
	}
	return 0
}
