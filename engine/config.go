package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/benbjohnson/clock"
)

// Config sets a breaker's policies. The zero value is a working breaker:
// it opens after 5 consecutive failures, stays open for 60 seconds, then
// lets one probe through. Every field documents its zero value; a value out
// of range makes [NewBreaker], [New] and [Config.Validate] return a
// [*ConfigError] naming the field.
type Config struct {
	// FailureThreshold is the number of consecutive failures that opens
	// the circuit. 0 means 5, unless another trip policy
	// (FailureRateThreshold, SlowCallThreshold or ShouldTrip) is set, in
	// which case 0 turns this policy off.
	FailureThreshold int

	// RecoveryTimeout is how long the circuit stays open before it lets a
	// probe through. 0 means 60s.
	RecoveryTimeout time.Duration
	// BackoffMultiplier grows the open period each time a probe fails
	// without the circuit having closed in between: the n-th consecutive
	// open period lasts RecoveryTimeout × BackoffMultiplier^(n-1), capped
	// at MaxRecoveryTimeout. 0 means 1 (a fixed period); otherwise it must
	// be in [1, 1e6].
	BackoffMultiplier float64
	// MaxRecoveryTimeout caps every open period: backoff growth and
	// upstream Retry-After hints alike. 0 means 10 minutes, or
	// RecoveryTimeout if that is longer; any other value must be at least
	// RecoveryTimeout.
	MaxRecoveryTimeout time.Duration
	// Jitter spreads each open period at random by up to this fraction
	// either way (0.1 means ±10%), so a fleet of breakers does not probe
	// an upstream in lockstep. 0 means none; it must be in [0, 1].
	Jitter float64
	// Seed seeds the jitter. 0 means a random seed; set it for runs that
	// must repeat exactly, such as simulations.
	Seed uint64

	// HalfOpenProbes is how many probe calls may run at once in
	// half-open; further calls are rejected at once. 0 means 1.
	HalfOpenProbes int
	// SuccessThreshold is how many probes must succeed for the circuit to
	// close; any failed probe opens it again. 0 means 1.
	SuccessThreshold int
	// ProbeLease is how long an admitted probe may run without reporting.
	// A probe that overstays is counted as a failure and the circuit opens
	// again, so half-open can never get stuck on a lost probe. 0 means 60s.
	ProbeLease time.Duration

	// FailureRateThreshold opens the circuit when the share of failures in
	// the sliding window reaches it, once the window holds MinimumCalls
	// calls; it is checked after every call. 0 turns the policy off;
	// otherwise it must be in (0, 1].
	FailureRateThreshold float64
	// SlowCallThreshold marks a call that takes at least this long as
	// slow, whether it succeeded or failed (an Ignored call is never slow).
	// 0 turns slow-call detection off. A slow probe counts as a failed
	// probe.
	SlowCallThreshold time.Duration
	// SlowCallRateThreshold opens the circuit when the share of slow calls
	// in the sliding window reaches it, once the window holds MinimumCalls
	// calls. 0 means 1 (every call slow) when SlowCallThreshold is set;
	// setting it without SlowCallThreshold is an error.
	SlowCallRateThreshold float64
	// WindowSize makes the sliding window count-based: the last WindowSize
	// calls, at most 1,000,000. 0 means 100 when a rate policy is set and
	// WindowDuration is not.
	WindowSize int
	// WindowDuration makes the sliding window time-based: the calls of the
	// last WindowDuration, kept in WindowBuckets buckets. It cannot be
	// combined with WindowSize. 0 leaves the window, if any, count-based.
	WindowDuration time.Duration
	// WindowBuckets is the number of buckets of a time-based window, at
	// most 10,000; the window slides one bucket at a time. 0 means 10.
	WindowBuckets int
	// MinimumCalls is how many calls the window must hold before the rate
	// policies may open the circuit. 0 means 20, or WindowSize if smaller;
	// it must not exceed WindowSize.
	MinimumCalls int

	// ShouldTrip, if set, is asked after every failure or slow call in the
	// closed state and opens the circuit when it returns true. It runs on
	// whichever goroutine is running the breaker (its own, or a caller
	// that found it idle, which may be handling another caller's failure):
	// keep it quick, do not call the breaker from it (nor report an
	// outcome to it: the breaker would wait on itself), and do not let it
	// panic: the panic reaches the caller whose failure it was asked about
	// if that caller runs the breaker, and crashes the program otherwise.
	// Since the breaker cannot tell beforehand what it will say, every
	// failure or slow call is then handled as one that may open the
	// circuit: its caller waits, and calls ending meanwhile wait with it.
	// The built-in policies tell, and cost less.
	ShouldTrip func(Counts) bool

	// Classify sorts a call's error into Success, Failure or Ignored.
	// nil means [DefaultClassify]. Ticket.ReportAs bypasses it. Any other
	// Outcome it returns counts as a Failure.
	Classify func(error) Outcome
	// plainClassify records that Classify is DefaultClassify, under
	// which a nil error is a success without a call.
	plainClassify bool

	// Clock is the breaker's time source. nil means real time; a
	// *clock.Mock lets tests and simulations drive time by hand. A nil
	// pointer of a clock type is an error, not real time.
	Clock clock.Clock

	// OnStateChange, if set, is called for every transition, in order,
	// exactly once each, on a goroutine of the breaker's own: never on a
	// caller's goroutine and never while anything waits for it, so it may
	// be slow and may call State or Counts. It must not call Close.
	OnStateChange func(name string, from, to State)

	// SubscriberBuffer is the channel buffer of each subscription. 0 means
	// 64; at most 1 << 20 (1,048,576).
	SubscriberBuffer int
}

// The largest windows and subscriber buffers a Config may ask for: each
// breaker holds its window, and each subscription its buffer, in memory.
const (
	maxWindow    = 1_000_000
	maxBuckets   = 10_000
	maxSubBuffer = 1 << 20
)

// DefaultClassify is the classifier used when Config.Classify is nil: nil
// is a Success, an error matching context.Canceled is Ignored (the caller
// gave up, which says nothing about the upstream), anything else is a
// Failure.
func DefaultClassify(err error) Outcome {
	switch {
	case err == nil:
		return Success
	case errors.Is(err, context.Canceled):
		return Ignored
	}
	return Failure
}

func (c Config) ratePolicy() bool {
	return c.FailureRateThreshold > 0 || c.SlowCallThreshold > 0
}

// normalize validates c and fills in the defaults.
func (c Config) normalize() (Config, error) {
	bad := func(field string, v any, rule string) (Config, error) {
		return Config{}, &ConfigError{Field: field, Value: v, Rule: rule}
	}
	unit := func(x float64) bool { return x >= 0 && x <= 1 } // false for NaN
	switch {
	case c.FailureThreshold < 0:
		return bad("FailureThreshold", c.FailureThreshold, "must be >= 0")
	case c.RecoveryTimeout < 0:
		return bad("RecoveryTimeout", c.RecoveryTimeout, "must be >= 0")
	case c.BackoffMultiplier != 0 && !(c.BackoffMultiplier >= 1 && c.BackoffMultiplier <= 1e6):
		return bad("BackoffMultiplier", c.BackoffMultiplier, "must be 0 or in [1, 1e6]")
	case c.MaxRecoveryTimeout < 0:
		return bad("MaxRecoveryTimeout", c.MaxRecoveryTimeout, "must be >= 0")
	case !unit(c.Jitter):
		return bad("Jitter", c.Jitter, "must be in [0, 1]")
	case c.HalfOpenProbes < 0:
		return bad("HalfOpenProbes", c.HalfOpenProbes, "must be >= 0")
	case c.SuccessThreshold < 0:
		return bad("SuccessThreshold", c.SuccessThreshold, "must be >= 0")
	case c.ProbeLease < 0:
		return bad("ProbeLease", c.ProbeLease, "must be >= 0")
	case !unit(c.FailureRateThreshold):
		return bad("FailureRateThreshold", c.FailureRateThreshold, "must be in [0, 1]")
	case c.SlowCallThreshold < 0:
		return bad("SlowCallThreshold", c.SlowCallThreshold, "must be >= 0")
	case !unit(c.SlowCallRateThreshold):
		return bad("SlowCallRateThreshold", c.SlowCallRateThreshold, "must be in [0, 1]")
	case c.SlowCallRateThreshold > 0 && c.SlowCallThreshold == 0:
		return bad("SlowCallThreshold", c.SlowCallThreshold, "must be > 0 when SlowCallRateThreshold is set")
	case c.WindowSize < 0 || c.WindowSize > maxWindow:
		return bad("WindowSize", c.WindowSize, "must be in [0, 1000000]")
	case c.WindowDuration < 0:
		return bad("WindowDuration", c.WindowDuration, "must be >= 0")
	case c.WindowSize > 0 && c.WindowDuration > 0:
		return bad("WindowDuration", c.WindowDuration, "must be 0 when WindowSize is set")
	case c.WindowBuckets < 0 || c.WindowBuckets > maxBuckets:
		return bad("WindowBuckets", c.WindowBuckets, "must be in [0, 10000]")
	case c.MinimumCalls < 0:
		return bad("MinimumCalls", c.MinimumCalls, "must be >= 0")
	case c.SubscriberBuffer < 0 || c.SubscriberBuffer > maxSubBuffer:
		return bad("SubscriberBuffer", c.SubscriberBuffer, "must be in [0, 1048576]")
	case nilPointer(c.Clock):
		// A *clock.Mock field never assigned: caught here, not as a nil
		// dereference on the breaker's goroutine.
		return bad("Clock", fmt.Sprintf("(%T)(nil)", c.Clock), "must not be a nil pointer (leave Clock nil for real time)")
	}

	if c.FailureThreshold == 0 && !c.ratePolicy() && c.ShouldTrip == nil {
		c.FailureThreshold = 5
	}
	if c.RecoveryTimeout == 0 {
		c.RecoveryTimeout = 60 * time.Second
	}
	if c.BackoffMultiplier == 0 {
		c.BackoffMultiplier = 1
	}
	if c.MaxRecoveryTimeout == 0 {
		c.MaxRecoveryTimeout = max(10*time.Minute, c.RecoveryTimeout)
	} else if c.MaxRecoveryTimeout < c.RecoveryTimeout {
		return bad("MaxRecoveryTimeout", c.MaxRecoveryTimeout, "must be >= RecoveryTimeout ("+c.RecoveryTimeout.String()+")")
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = 1
	}
	if c.SuccessThreshold == 0 {
		c.SuccessThreshold = 1
	}
	if c.ProbeLease == 0 {
		c.ProbeLease = 60 * time.Second
	}
	if c.SlowCallThreshold > 0 && c.SlowCallRateThreshold == 0 {
		c.SlowCallRateThreshold = 1
	}
	if c.WindowBuckets == 0 {
		c.WindowBuckets = 10
	}
	if c.WindowDuration > 0 && c.WindowDuration < time.Duration(c.WindowBuckets) {
		return bad("WindowDuration", c.WindowDuration, "must be at least WindowBuckets nanoseconds")
	}
	if c.ratePolicy() || c.WindowSize > 0 || c.WindowDuration > 0 {
		if c.WindowSize == 0 && c.WindowDuration == 0 {
			c.WindowSize = 100
		}
		if c.MinimumCalls == 0 {
			c.MinimumCalls = 20
			if c.WindowSize > 0 {
				c.MinimumCalls = min(20, c.WindowSize)
			}
		}
		if c.WindowSize > 0 && c.MinimumCalls > c.WindowSize {
			return bad("MinimumCalls", c.MinimumCalls, "must be <= WindowSize")
		}
	}
	if c.Classify == nil {
		c.Classify, c.plainClassify = DefaultClassify, true
	}

	if c.SubscriberBuffer == 0 {
		c.SubscriberBuffer = 64
	}
	return c, nil
}

// Validate reports the first problem with c as a *ConfigError, or nil.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

// openPeriod is the n-th consecutive open period (n >= 1) before jitter.
func (c Config) openPeriod(n int) time.Duration {
	d := float64(c.RecoveryTimeout) * math.Pow(c.BackoffMultiplier, float64(n-1))
	if d >= float64(c.MaxRecoveryTimeout) {
		return c.MaxRecoveryTimeout
	}
	return time.Duration(d)
}

// nilPointer reports whether v is an interface holding a nil pointer.
func nilPointer(v any) bool {
	r := reflect.ValueOf(v)
	return r.Kind() == reflect.Pointer && r.IsNil()
}
