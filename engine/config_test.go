package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/benbjohnson/clock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// configSameValue compares a ConfigError's Value with the field's value,
// NaN equal to NaN.
func configSameValue(want, got any) bool {
	if w, ok := want.(float64); ok {
		if g, ok := got.(float64); ok && math.IsNaN(w) && math.IsNaN(g) {
			return true
		}
	}
	return reflect.DeepEqual(want, got)
}

func TestConfigRejectsBadValues(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name  string
		cfg   Config
		field string
		value any
		msg   string
	}{
		{"negative FailureThreshold", Config{FailureThreshold: -1}, "FailureThreshold", -1,
			"engine: FailureThreshold must be >= 0, got -1"},
		{"negative RecoveryTimeout", Config{RecoveryTimeout: -time.Second}, "RecoveryTimeout", -time.Second,
			"engine: RecoveryTimeout must be >= 0, got -1s"},
		{"BackoffMultiplier below 1", Config{BackoffMultiplier: 0.5}, "BackoffMultiplier", 0.5,
			"engine: BackoffMultiplier must be 0 or in [1, 1e6], got 0.5"},
		{"negative BackoffMultiplier", Config{BackoffMultiplier: -2}, "BackoffMultiplier", -2.0,
			"engine: BackoffMultiplier must be 0 or in [1, 1e6], got -2"},
		{"BackoffMultiplier above 1e6", Config{BackoffMultiplier: 2e6}, "BackoffMultiplier", 2e6,
			"engine: BackoffMultiplier must be 0 or in [1, 1e6], got 2e+06"},
		{"infinite BackoffMultiplier", Config{BackoffMultiplier: inf}, "BackoffMultiplier", inf,
			"engine: BackoffMultiplier must be 0 or in [1, 1e6], got +Inf"},
		{"NaN BackoffMultiplier", Config{BackoffMultiplier: nan}, "BackoffMultiplier", nan,
			"engine: BackoffMultiplier must be 0 or in [1, 1e6], got NaN"},
		{"negative MaxRecoveryTimeout", Config{MaxRecoveryTimeout: -1}, "MaxRecoveryTimeout", time.Duration(-1),
			"engine: MaxRecoveryTimeout must be >= 0, got -1ns"},
		{"MaxRecoveryTimeout below the default RecoveryTimeout", Config{MaxRecoveryTimeout: 30 * time.Second},
			"MaxRecoveryTimeout", 30 * time.Second,
			"engine: MaxRecoveryTimeout must be >= RecoveryTimeout (1m0s), got 30s"},
		{"MaxRecoveryTimeout below RecoveryTimeout", Config{RecoveryTimeout: 10 * time.Second, MaxRecoveryTimeout: 10*time.Second - 1},
			"MaxRecoveryTimeout", 10*time.Second - 1,
			"engine: MaxRecoveryTimeout must be >= RecoveryTimeout (10s), got 9.999999999s"},
		{"negative Jitter", Config{Jitter: -0.1}, "Jitter", -0.1,
			"engine: Jitter must be in [0, 1], got -0.1"},
		{"Jitter above 1", Config{Jitter: 1.5}, "Jitter", 1.5,
			"engine: Jitter must be in [0, 1], got 1.5"},
		{"NaN Jitter", Config{Jitter: nan}, "Jitter", nan,
			"engine: Jitter must be in [0, 1], got NaN"},
		{"infinite Jitter", Config{Jitter: inf}, "Jitter", inf,
			"engine: Jitter must be in [0, 1], got +Inf"},
		{"negative HalfOpenProbes", Config{HalfOpenProbes: -1}, "HalfOpenProbes", -1,
			"engine: HalfOpenProbes must be >= 0, got -1"},
		{"negative SuccessThreshold", Config{SuccessThreshold: -2}, "SuccessThreshold", -2,
			"engine: SuccessThreshold must be >= 0, got -2"},
		{"negative ProbeLease", Config{ProbeLease: -time.Millisecond}, "ProbeLease", -time.Millisecond,
			"engine: ProbeLease must be >= 0, got -1ms"},
		{"negative FailureRateThreshold", Config{FailureRateThreshold: -0.1}, "FailureRateThreshold", -0.1,
			"engine: FailureRateThreshold must be in [0, 1], got -0.1"},
		{"FailureRateThreshold above 1", Config{FailureRateThreshold: 1.01}, "FailureRateThreshold", 1.01,
			"engine: FailureRateThreshold must be in [0, 1], got 1.01"},
		{"NaN FailureRateThreshold", Config{FailureRateThreshold: nan}, "FailureRateThreshold", nan,
			"engine: FailureRateThreshold must be in [0, 1], got NaN"},
		{"negative SlowCallThreshold", Config{SlowCallThreshold: -time.Second}, "SlowCallThreshold", -time.Second,
			"engine: SlowCallThreshold must be >= 0, got -1s"},
		{"negative SlowCallRateThreshold", Config{SlowCallThreshold: time.Second, SlowCallRateThreshold: -0.5},
			"SlowCallRateThreshold", -0.5, "engine: SlowCallRateThreshold must be in [0, 1], got -0.5"},
		{"SlowCallRateThreshold above 1", Config{SlowCallThreshold: time.Second, SlowCallRateThreshold: 2},
			"SlowCallRateThreshold", 2.0, "engine: SlowCallRateThreshold must be in [0, 1], got 2"},
		{"NaN SlowCallRateThreshold", Config{SlowCallThreshold: time.Second, SlowCallRateThreshold: nan},
			"SlowCallRateThreshold", nan, "engine: SlowCallRateThreshold must be in [0, 1], got NaN"},
		{"SlowCallRateThreshold without SlowCallThreshold", Config{SlowCallRateThreshold: 0.5},
			"SlowCallThreshold", time.Duration(0),
			"engine: SlowCallThreshold must be > 0 when SlowCallRateThreshold is set, got 0s"},
		{"negative WindowSize", Config{WindowSize: -1}, "WindowSize", -1,
			"engine: WindowSize must be in [0, 1000000], got -1"},
		{"negative WindowDuration", Config{WindowDuration: -time.Second}, "WindowDuration", -time.Second,
			"engine: WindowDuration must be >= 0, got -1s"},
		{"WindowSize and WindowDuration", Config{WindowSize: 10, WindowDuration: time.Second}, "WindowDuration", time.Second,
			"engine: WindowDuration must be 0 when WindowSize is set, got 1s"},
		{"negative WindowBuckets", Config{WindowBuckets: -1}, "WindowBuckets", -1,
			"engine: WindowBuckets must be in [0, 10000], got -1"},
		{"WindowDuration shorter than the default buckets", Config{WindowDuration: 5}, "WindowDuration", time.Duration(5),
			"engine: WindowDuration must be at least WindowBuckets nanoseconds, got 5ns"},
		{"WindowDuration shorter than the buckets", Config{WindowDuration: 99, WindowBuckets: 100}, "WindowDuration", time.Duration(99),
			"engine: WindowDuration must be at least WindowBuckets nanoseconds, got 99ns"},
		{"negative MinimumCalls", Config{MinimumCalls: -1}, "MinimumCalls", -1,
			"engine: MinimumCalls must be >= 0, got -1"},
		{"MinimumCalls above WindowSize", Config{FailureRateThreshold: 0.5, WindowSize: 10, MinimumCalls: 11},
			"MinimumCalls", 11, "engine: MinimumCalls must be <= WindowSize, got 11"},
		{"MinimumCalls above WindowSize without a rate policy", Config{WindowSize: 10, MinimumCalls: 11},
			"MinimumCalls", 11, "engine: MinimumCalls must be <= WindowSize, got 11"},
		{"negative SubscriberBuffer", Config{SubscriberBuffer: -1}, "SubscriberBuffer", -1,
			"engine: SubscriberBuffer must be in [0, 1048576], got -1"},
		// Meant as "unbounded", it would make every Subscribe panic in make.
		{"huge SubscriberBuffer", Config{SubscriberBuffer: math.MaxInt}, "SubscriberBuffer", math.MaxInt,
			fmt.Sprintf("engine: SubscriberBuffer must be in [0, 1048576], got %d", math.MaxInt)},
		// A *clock.Mock field never assigned, the typed nil of Go lore.
		{"nil *clock.Mock as Clock", Config{Clock: (*clock.Mock)(nil)}, "Clock", "(*clock.Mock)(nil)",
			"engine: Clock must not be a nil pointer (leave Clock nil for real time), got (*clock.Mock)(nil)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := map[string]error{"Validate": tc.cfg.Validate()}
			_, errs["normalize"] = tc.cfg.normalize()
			m, err := NewMachine("x", tc.cfg)
			assert.Nil(t, m)
			errs["NewMachine"] = err
			b, err := NewBreaker("x", tc.cfg)
			assert.Nil(t, b)
			errs["NewBreaker"] = err
			for from, err := range errs {
				require.Error(t, err, from)
				assert.ErrorIs(t, err, ErrInvalidConfig, from)
				assert.NotErrorIs(t, err, ErrOpen, from)
				var ce *ConfigError
				require.ErrorAs(t, err, &ce, from)
				assert.Equal(t, tc.field, ce.Field, from)
				assert.True(t, configSameValue(tc.value, ce.Value), "%s: Value %#v, want %#v", from, ce.Value, tc.value)
				assert.Equal(t, tc.msg, err.Error(), from)
				assert.Contains(t, err.Error(), tc.field, from)
				assert.Contains(t, err.Error(), fmt.Sprint(tc.value), from)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	always := func(t *testing.T, c Config) {
		t.Helper()
		assert.NotNil(t, c.Classify)
		assert.Positive(t, c.RecoveryTimeout)
		assert.GreaterOrEqual(t, c.MaxRecoveryTimeout, c.RecoveryTimeout)
		assert.GreaterOrEqual(t, c.BackoffMultiplier, 1.0)
		assert.Positive(t, c.HalfOpenProbes)
		assert.Positive(t, c.SuccessThreshold)
		assert.Positive(t, c.ProbeLease)
		assert.Positive(t, c.WindowBuckets)
		assert.Positive(t, c.SubscriberBuffer)
	}
	shouldTrip := func(Counts) bool { return false }
	tests := []struct {
		name string
		in   Config
		want func(t *testing.T, c Config)
	}{
		{"zero value", Config{}, func(t *testing.T, c Config) {
			assert.Equal(t, 5, c.FailureThreshold)
			assert.Equal(t, 60*time.Second, c.RecoveryTimeout)
			assert.Equal(t, 1.0, c.BackoffMultiplier)
			assert.Equal(t, 10*time.Minute, c.MaxRecoveryTimeout)
			assert.Zero(t, c.Jitter)
			assert.Zero(t, c.Seed)
			assert.Equal(t, 1, c.HalfOpenProbes)
			assert.Equal(t, 1, c.SuccessThreshold)
			assert.Equal(t, 60*time.Second, c.ProbeLease)
			assert.Zero(t, c.FailureRateThreshold)
			assert.Zero(t, c.SlowCallThreshold)
			assert.Zero(t, c.SlowCallRateThreshold)
			assert.Zero(t, c.WindowSize, "no rate policy, no window")
			assert.Zero(t, c.WindowDuration)
			assert.Equal(t, 10, c.WindowBuckets)
			assert.Zero(t, c.MinimumCalls)
			assert.Nil(t, c.ShouldTrip)
			assert.Nil(t, c.Clock)
			assert.Nil(t, c.OnStateChange)
			assert.Equal(t, 64, c.SubscriberBuffer)
			assert.Equal(t, Success, c.Classify(nil))
			assert.Equal(t, Failure, c.Classify(errors.New("x")))
			assert.Equal(t, Ignored, c.Classify(context.Canceled))
		}},
		{"long RecoveryTimeout raises the default cap", Config{RecoveryTimeout: 20 * time.Minute}, func(t *testing.T, c Config) {
			assert.Equal(t, 20*time.Minute, c.RecoveryTimeout)
			assert.Equal(t, 20*time.Minute, c.MaxRecoveryTimeout)
		}},
		{"short RecoveryTimeout keeps the 10 minute cap", Config{RecoveryTimeout: 20 * time.Second}, func(t *testing.T, c Config) {
			assert.Equal(t, 10*time.Minute, c.MaxRecoveryTimeout)
		}},
		{"MaxRecoveryTimeout equal to RecoveryTimeout", Config{RecoveryTimeout: time.Second, MaxRecoveryTimeout: time.Second}, func(t *testing.T, c Config) {
			assert.Equal(t, time.Second, c.MaxRecoveryTimeout)
		}},
		{"failure rate: consecutive policy off, window of 100, 20 calls", Config{FailureRateThreshold: 0.5}, func(t *testing.T, c Config) {
			assert.Zero(t, c.FailureThreshold)
			assert.Equal(t, 100, c.WindowSize)
			assert.Zero(t, c.WindowDuration)
			assert.Equal(t, 20, c.MinimumCalls)
		}},
		{"failure rate with a small window: MinimumCalls is the window", Config{FailureRateThreshold: 0.5, WindowSize: 10}, func(t *testing.T, c Config) {
			assert.Equal(t, 10, c.WindowSize)
			assert.Equal(t, 10, c.MinimumCalls)
		}},
		{"failure rate with a time window", Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second}, func(t *testing.T, c Config) {
			assert.Zero(t, c.WindowSize)
			assert.Equal(t, 10*time.Second, c.WindowDuration)
			assert.Equal(t, 10, c.WindowBuckets)
			assert.Equal(t, 20, c.MinimumCalls)
		}},
		{"slow calls: rate 1, consecutive policy off", Config{SlowCallThreshold: time.Second}, func(t *testing.T, c Config) {
			assert.Zero(t, c.FailureThreshold)
			assert.Equal(t, 1.0, c.SlowCallRateThreshold)
			assert.Equal(t, 100, c.WindowSize)
			assert.Equal(t, 20, c.MinimumCalls)
		}},
		{"slow calls with a rate", Config{SlowCallThreshold: time.Second, SlowCallRateThreshold: 0.3}, func(t *testing.T, c Config) {
			assert.Equal(t, 0.3, c.SlowCallRateThreshold)
		}},
		{"ShouldTrip turns the consecutive policy off", Config{ShouldTrip: shouldTrip}, func(t *testing.T, c Config) {
			assert.Zero(t, c.FailureThreshold)
			assert.Zero(t, c.WindowSize, "ShouldTrip alone needs no window")
			assert.NotNil(t, c.ShouldTrip)
		}},
		{"a window alone keeps the consecutive policy", Config{WindowSize: 50}, func(t *testing.T, c Config) {
			assert.Equal(t, 5, c.FailureThreshold)
			assert.Equal(t, 50, c.WindowSize)
			assert.Equal(t, 20, c.MinimumCalls)
		}},
		{"a time window alone", Config{WindowDuration: time.Minute, WindowBuckets: 6}, func(t *testing.T, c Config) {
			assert.Equal(t, 5, c.FailureThreshold)
			assert.Equal(t, 6, c.WindowBuckets)
			assert.Equal(t, 20, c.MinimumCalls)
		}},
		{"explicit values are kept", Config{
			FailureThreshold: 3, RecoveryTimeout: 5 * time.Second, BackoffMultiplier: 2, MaxRecoveryTimeout: time.Minute,
			Jitter: 0.3, Seed: 99, HalfOpenProbes: 4, SuccessThreshold: 2, ProbeLease: 2 * time.Second,
			FailureRateThreshold: 0.4, SlowCallThreshold: time.Second, SlowCallRateThreshold: 0.7,
			WindowSize: 7, WindowBuckets: 3, MinimumCalls: 7, SubscriberBuffer: 8,
			Classify: func(error) Outcome { return Ignored },
		}, func(t *testing.T, c Config) {
			assert.Equal(t, 3, c.FailureThreshold)
			assert.Equal(t, 5*time.Second, c.RecoveryTimeout)
			assert.Equal(t, 2.0, c.BackoffMultiplier)
			assert.Equal(t, time.Minute, c.MaxRecoveryTimeout)
			assert.Equal(t, 0.3, c.Jitter)
			assert.Equal(t, uint64(99), c.Seed)
			assert.Equal(t, 4, c.HalfOpenProbes)
			assert.Equal(t, 2, c.SuccessThreshold)
			assert.Equal(t, 2*time.Second, c.ProbeLease)
			assert.Equal(t, 0.4, c.FailureRateThreshold)
			assert.Equal(t, time.Second, c.SlowCallThreshold)
			assert.Equal(t, 0.7, c.SlowCallRateThreshold)
			assert.Equal(t, 7, c.WindowSize)
			assert.Equal(t, 3, c.WindowBuckets)
			assert.Equal(t, 7, c.MinimumCalls)
			assert.Equal(t, 8, c.SubscriberBuffer)
			assert.Equal(t, Ignored, c.Classify(nil), "custom Classify kept")
		}},
		{"boundaries are valid", Config{
			BackoffMultiplier: 1e6, Jitter: 1, FailureRateThreshold: 1, SlowCallThreshold: 1, SlowCallRateThreshold: 1,
			WindowDuration: 10, WindowBuckets: 10, MinimumCalls: 1,
		}, func(t *testing.T, c Config) {
			assert.Equal(t, 1e6, c.BackoffMultiplier)
			assert.Equal(t, 1.0, c.Jitter)
			assert.Equal(t, time.Duration(10), c.WindowDuration)
			assert.Equal(t, 1, c.MinimumCalls)
		}},
		{"MinimumCalls equal to WindowSize", Config{FailureRateThreshold: 0.5, WindowSize: 5, MinimumCalls: 5}, func(t *testing.T, c Config) {
			assert.Equal(t, 5, c.MinimumCalls)
		}},
		{"multiplier 1 and jitter 0 are valid", Config{BackoffMultiplier: 1, Jitter: 0}, func(t *testing.T, c Config) {
			assert.Equal(t, 1.0, c.BackoffMultiplier)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.in.Validate())
			c, err := tc.in.normalize()
			require.NoError(t, err)
			always(t, c)
			tc.want(t, c)

			// Normalizing is idempotent.
			c2, err := c.normalize()
			require.NoError(t, err)
			assert.Equal(t, configComparable(c), configComparable(c2))

			m, err := NewMachine("x", tc.in)
			require.NoError(t, err)
			assert.Equal(t, configComparable(c), configComparable(*m.cfg))
		})
	}
}

// configComparable drops a config's funcs, which cannot be compared.
func configComparable(c Config) Config {
	c.ShouldTrip, c.Classify, c.OnStateChange = nil, nil, nil
	return c
}

func TestConfigDefaultClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Outcome
	}{
		{"nil", nil, Success},
		{"an error", errors.New("x"), Failure},
		{"canceled", context.Canceled, Ignored},
		{"wrapped canceled", fmt.Errorf("get: %w", context.Canceled), Ignored},
		{"deadline exceeded", context.DeadlineExceeded, Failure},
		{"open", ErrOpen, Failure},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, DefaultClassify(tc.err), tc.name)
	}
}

// TestConfigHugeWindow: a window too large to allocate must be refused by
// validation, not crash NewMachine.
func TestConfigHugeWindow(t *testing.T) {
	tests := []Config{
		{WindowSize: math.MaxInt},
		{FailureRateThreshold: 0.5, WindowSize: math.MaxInt, MinimumCalls: 1},
		{WindowDuration: math.MaxInt64, WindowBuckets: math.MaxInt},
	}
	for _, cfg := range tests {
		err := cfg.Validate()
		if err != nil {
			var ce *ConfigError
			assert.ErrorAs(t, err, &ce)
			continue
		}
		assert.NotPanics(t, func() { _, _ = NewMachine("x", cfg) }, "%+v", configComparable(cfg))
	}
}

// FuzzConfig checks that validation never panics and returns either a
// *ConfigError naming a field and its value, or a valid normalized config.
func FuzzConfig(f *testing.F) {
	type seed struct {
		failureThreshold   int
		recovery           int64
		backoff            float64
		maxRecovery        int64
		jitter             float64
		seed               uint64
		halfOpenProbes     int
		successThreshold   int
		probeLease         int64
		failureRate        float64
		slowCall           int64
		slowRate           float64
		windowSize         int
		windowDuration     int64
		windowBuckets      int
		minimumCalls       int
		subscriberBuffer   int
		shouldTrip, custom bool
	}
	nan := math.NaN()
	for _, s := range []seed{
		{},
		{failureThreshold: -1},
		{recovery: int64(time.Second), backoff: 2, maxRecovery: int64(time.Minute), jitter: 0.1, seed: 7},
		{backoff: nan},
		{jitter: nan},
		{failureRate: nan},
		{slowCall: int64(time.Second), slowRate: nan},
		{slowRate: 0.5},
		{failureRate: 0.5, windowSize: 10, minimumCalls: 11},
		{failureRate: 0.5, windowDuration: 5},
		{windowSize: 10, windowDuration: int64(time.Second)},
		{recovery: int64(time.Hour), maxRecovery: int64(time.Minute)},
		{shouldTrip: true, custom: true},
		{backoff: math.Inf(1), jitter: math.Inf(-1)},
		{failureRate: 1, slowCall: 1, slowRate: 1, windowDuration: 10, windowBuckets: 10, minimumCalls: 1},
		{recovery: math.MaxInt64},
		{recovery: math.MinInt64, maxRecovery: math.MaxInt64},
		{subscriberBuffer: math.MaxInt},
	} {
		f.Add(s.failureThreshold, s.recovery, s.backoff, s.maxRecovery, s.jitter, s.seed, s.halfOpenProbes,
			s.successThreshold, s.probeLease, s.failureRate, s.slowCall, s.slowRate, s.windowSize,
			s.windowDuration, s.windowBuckets, s.minimumCalls, s.subscriberBuffer, s.shouldTrip, s.custom)
	}
	f.Fuzz(func(t *testing.T, failureThreshold int, recovery int64, backoff float64, maxRecovery int64,
		jitter float64, seed uint64, halfOpenProbes int, successThreshold int, probeLease int64,
		failureRate float64, slowCall int64, slowRate float64, windowSize int, windowDuration int64,
		windowBuckets int, minimumCalls int, subscriberBuffer int, shouldTrip, custom bool,
	) {
		in := Config{
			FailureThreshold:      failureThreshold,
			RecoveryTimeout:       time.Duration(recovery),
			BackoffMultiplier:     backoff,
			MaxRecoveryTimeout:    time.Duration(maxRecovery),
			Jitter:                jitter,
			Seed:                  seed,
			HalfOpenProbes:        halfOpenProbes,
			SuccessThreshold:      successThreshold,
			ProbeLease:            time.Duration(probeLease),
			FailureRateThreshold:  failureRate,
			SlowCallThreshold:     time.Duration(slowCall),
			SlowCallRateThreshold: slowRate,
			WindowSize:            windowSize,
			WindowDuration:        time.Duration(windowDuration),
			WindowBuckets:         windowBuckets,
			MinimumCalls:          minimumCalls,
			SubscriberBuffer:      subscriberBuffer,
		}
		if shouldTrip {
			in.ShouldTrip = func(c Counts) bool { return c.ConsecutiveFailures > 3 }
		}
		if custom {
			in.Classify = func(error) Outcome { return Ignored }
		}

		c, err := in.normalize()
		verr := in.Validate()
		if err != nil {
			require.Error(t, verr)
			assert.Equal(t, err.Error(), verr.Error(), "Validate and normalize agree")
			assert.ErrorIs(t, err, ErrInvalidConfig)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			fv := reflect.ValueOf(in).FieldByName(ce.Field)
			require.True(t, fv.IsValid(), "Field %q is a Config field", ce.Field)
			assert.True(t, configSameValue(fv.Interface(), ce.Value), "Value %#v is the field's value %#v", ce.Value, fv.Interface())
			assert.NotEmpty(t, ce.Rule)
			msg := err.Error()
			assert.Equal(t, fmt.Sprintf("engine: %s %s, got %v", ce.Field, ce.Rule, ce.Value), msg)
			assert.True(t, strings.HasPrefix(msg, "engine: "+ce.Field+" "), msg)
			assert.True(t, strings.HasSuffix(msg, ", got "+fmt.Sprint(fv.Interface())), msg)
			assert.Equal(t, configComparable(Config{}), configComparable(c))
			m, merr := NewMachine("x", in)
			assert.Nil(t, m)
			assert.Equal(t, msg, merr.Error())
			return
		}
		require.NoError(t, verr)

		// Valid, and normalized as documented.
		assert.GreaterOrEqual(t, c.FailureThreshold, 0)
		if in.FailureThreshold > 0 {
			assert.Equal(t, in.FailureThreshold, c.FailureThreshold)
		} else if in.FailureRateThreshold > 0 || in.SlowCallThreshold > 0 || in.ShouldTrip != nil {
			assert.Zero(t, c.FailureThreshold)
		} else {
			assert.Equal(t, 5, c.FailureThreshold)
		}
		if in.RecoveryTimeout > 0 {
			assert.Equal(t, in.RecoveryTimeout, c.RecoveryTimeout)
		} else {
			assert.Equal(t, 60*time.Second, c.RecoveryTimeout)
		}
		if in.BackoffMultiplier == 0 {
			assert.Equal(t, 1.0, c.BackoffMultiplier)
		} else {
			assert.Equal(t, in.BackoffMultiplier, c.BackoffMultiplier)
		}
		assert.True(t, c.BackoffMultiplier >= 1 && c.BackoffMultiplier <= 1e6, "BackoffMultiplier %v", c.BackoffMultiplier)
		if in.MaxRecoveryTimeout > 0 {
			assert.Equal(t, in.MaxRecoveryTimeout, c.MaxRecoveryTimeout)
		} else {
			assert.Equal(t, max(10*time.Minute, c.RecoveryTimeout), c.MaxRecoveryTimeout)
		}
		assert.GreaterOrEqual(t, c.MaxRecoveryTimeout, c.RecoveryTimeout)
		assert.True(t, c.Jitter >= 0 && c.Jitter <= 1, "Jitter %v", c.Jitter)
		assert.Equal(t, in.Jitter, c.Jitter)
		assert.Equal(t, in.Seed, c.Seed)
		assert.Equal(t, max(in.HalfOpenProbes, 1), c.HalfOpenProbes)
		assert.Equal(t, max(in.SuccessThreshold, 1), c.SuccessThreshold)
		if in.ProbeLease > 0 {
			assert.Equal(t, in.ProbeLease, c.ProbeLease)
		} else {
			assert.Equal(t, 60*time.Second, c.ProbeLease)
		}
		assert.True(t, c.FailureRateThreshold >= 0 && c.FailureRateThreshold <= 1, "FailureRateThreshold %v", c.FailureRateThreshold)
		assert.Equal(t, in.FailureRateThreshold, c.FailureRateThreshold)
		assert.Equal(t, in.SlowCallThreshold, c.SlowCallThreshold)
		assert.GreaterOrEqual(t, c.SlowCallThreshold, time.Duration(0))
		if c.SlowCallThreshold > 0 {
			assert.True(t, c.SlowCallRateThreshold > 0 && c.SlowCallRateThreshold <= 1, "SlowCallRateThreshold %v", c.SlowCallRateThreshold)
			if in.SlowCallRateThreshold == 0 {
				assert.Equal(t, 1.0, c.SlowCallRateThreshold)
			}
		} else {
			assert.Zero(t, c.SlowCallRateThreshold)
		}
		assert.GreaterOrEqual(t, c.WindowSize, 0)
		assert.GreaterOrEqual(t, c.WindowDuration, time.Duration(0))
		assert.False(t, c.WindowSize > 0 && c.WindowDuration > 0, "one kind of window")
		assert.Equal(t, in.WindowDuration, c.WindowDuration)
		if in.WindowBuckets > 0 {
			assert.Equal(t, in.WindowBuckets, c.WindowBuckets)
		} else {
			assert.Equal(t, 10, c.WindowBuckets)
		}
		if c.WindowDuration > 0 {
			assert.GreaterOrEqual(t, c.WindowDuration, time.Duration(c.WindowBuckets))
		}
		rate := c.FailureRateThreshold > 0 || c.SlowCallThreshold > 0
		window := c.WindowSize > 0 || c.WindowDuration > 0
		if rate {
			assert.True(t, window, "a rate policy has a window")
		}
		if in.WindowSize == 0 && in.WindowDuration == 0 && rate {
			assert.Equal(t, 100, c.WindowSize)
		} else {
			assert.Equal(t, in.WindowSize, c.WindowSize)
		}
		if window {
			assert.Positive(t, c.MinimumCalls)
			if in.MinimumCalls > 0 {
				assert.Equal(t, in.MinimumCalls, c.MinimumCalls)
			} else if c.WindowSize > 0 {
				assert.Equal(t, min(20, c.WindowSize), c.MinimumCalls)
			} else {
				assert.Equal(t, 20, c.MinimumCalls)
			}
			if c.WindowSize > 0 {
				assert.LessOrEqual(t, c.MinimumCalls, c.WindowSize)
			}
		} else {
			assert.Equal(t, in.MinimumCalls, c.MinimumCalls)
		}
		assert.NotNil(t, c.Classify)
		if custom {
			assert.Equal(t, Ignored, c.Classify(nil))
		} else {
			assert.Equal(t, Success, c.Classify(nil))
		}
		assert.Equal(t, in.ShouldTrip != nil, c.ShouldTrip != nil)
		if in.SubscriberBuffer > 0 {
			assert.Equal(t, in.SubscriberBuffer, c.SubscriberBuffer)
		} else {
			assert.Equal(t, 64, c.SubscriberBuffer)
		}

		// A normalized config is a fixed point.
		c2, err := c.normalize()
		require.NoError(t, err)
		assert.Equal(t, configComparable(c), configComparable(c2))

		// It makes a working machine (windows small enough to allocate;
		// TestConfigHugeWindow covers the others).
		if c.WindowSize <= 1<<16 && c.WindowBuckets <= 1<<16 {
			m, err := NewMachine("x", in)
			require.NoError(t, err)
			assert.Equal(t, configComparable(c), configComparable(*m.cfg))
			assert.Equal(t, Closed, m.State())
		}
	})
}
