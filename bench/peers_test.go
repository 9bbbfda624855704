package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/afex/hystrix-go/hystrix"
	"github.com/benbjohnson/clock"
	"github.com/cenk/backoff"
	"github.com/cep21/circuit/v4"
	cep21hystrix "github.com/cep21/circuit/v4/closers/hystrix"
	"github.com/cep21/circuit/v4/closers/simplelogic"
	"github.com/eapache/go-resiliency/breaker"
	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	rubyist "github.com/rubyist/circuitbreaker"
	"github.com/sony/gobreaker/v2"

	"github.com/nodus/circuitbreaker/engine"
)

// A subject is one library (or one entry point of one) set up for a
// scenario. It returns the function a benchmark calls once per operation:
// run work through the breaker. Every library is configured as close to
// the others as its API allows; where it cannot be, the subject says so.
type subject struct {
	name string
	// closed: a closed breaker that stays closed (consecutive-failure
	// threshold 1000, far above what 10% failures can reach).
	closed func(b *testing.B) func(*work) error
	// open: a breaker tripped before timing, open for an hour.
	open func(b *testing.B) func(*work) error
	// halfOpen: a breaker in half-open whose one probe slot is held by a
	// call that does not finish while timing. nil when the library has no
	// half-open limit.
	halfOpen func(b *testing.B) func(*work) error
	// rate: a closed breaker under a failure-rate policy, 50% of the last
	// 100 calls once there are 100, which 10% failures never reach. nil
	// when the library has no rate policy.
	rate func(b *testing.B) func(*work) error
}

var (
	errWork = errors.New("upstream failed")
	errOpen = errors.New("open")
	ok      = &work{run: func() error { return nil }, value: func(context.Context) (int, error) { return 1, nil }}
	bad     = &work{run: func() error { return errWork }, value: func(context.Context) (int, error) { return 1, errWork }}
	hour    = time.Hour
)

// work is what a benchmark runs through each breaker, in the two shapes
// the libraries take. Both are made once: an entry point that hands its
// function to a goroutine (Async, Go) would otherwise count the closure
// a call wraps the work in, the caller's allocation rather than the
// library's.
type work struct {
	run   func() error
	value func(context.Context) (int, error)
}

const (
	threshold = 1000
	rateCalls = 100 // the rate policies' window and minimum
)

// ours builds subjects for this project's entry points.
func ours(name string, call func(*engine.Breaker) func(*work) error) subject {
	newB := func(b *testing.B, cfg engine.Config) *engine.Breaker {
		br, err := engine.NewBreaker("bench", cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = br.Close() })
		return br
	}
	return subject{
		name: "circuitbreaker-" + name,
		closed: func(b *testing.B) func(*work) error {
			return call(newB(b, engine.Config{FailureThreshold: threshold}))
		},
		open: func(b *testing.B) func(*work) error {
			br := newB(b, engine.Config{RecoveryTimeout: hour})
			br.Trip()
			return call(br)
		},
		halfOpen: func(b *testing.B) func(*work) error {
			mock := clock.NewMock()
			br := newB(b, engine.Config{RecoveryTimeout: time.Second, ProbeLease: hour, Clock: mock})
			br.Trip()
			mock.Add(time.Second)
			if _, err := br.Admit(context.Background()); err != nil { // the held probe
				b.Fatal(err)
			}
			return call(br)
		},
		rate: func(b *testing.B) func(*work) error {
			return call(newB(b, engine.Config{FailureRateThreshold: 0.5, WindowSize: rateCalls, MinimumCalls: rateCalls}))
		},
	}
}

// gobreakerRate trips at 50% failures once there are rateCalls calls.
// gobreaker has no sliding window: with Interval 0 its counts run from the
// last change of state, so this is the rate over every call since.
var gobreakerRate = gobreaker.Settings{ReadyToTrip: func(c gobreaker.Counts) bool {
	return c.Requests >= rateCalls && 2*c.TotalFailures >= c.Requests
}}

var subjects = []subject{
	{
		name:   "baseline-direct",
		closed: func(*testing.B) func(*work) error { return func(w *work) error { return w.run() } },
		open:   func(*testing.B) func(*work) error { return func(*work) error { return errOpen } },
	},
	{
		// The physical floor: an atomic load to admit, an atomic add to count.
		name: "baseline-atomic",
		closed: func(*testing.B) func(*work) error {
			return atomicBaseline(false)
		},
		open: func(*testing.B) func(*work) error {
			return atomicBaseline(true)
		},
	},
	ours("Call", func(br *engine.Breaker) func(*work) error { return func(w *work) error { return br.Call(w.run) } }),
	ours("Do", func(br *engine.Breaker) func(*work) error {
		ctx := context.Background()
		return func(w *work) error { return br.Do(ctx, func(context.Context) error { return w.run() }) }
	}),
	ours("Execute", func(br *engine.Breaker) func(*work) error {
		ctx := context.Background()
		return func(w *work) error {
			_, err := engine.Execute(ctx, br, w.value)
			return err
		}
	}),
	ours("AdmitReport", func(br *engine.Breaker) func(*work) error {
		ctx := context.Background()
		return func(w *work) error {
			t, err := br.Admit(ctx)
			if err != nil {
				return err
			}
			err = w.run()
			t.Report(err)
			return err
		}
	}),
	ours("Async", func(br *engine.Breaker) func(*work) error {
		ctx := context.Background()
		return func(w *work) error {
			r := <-engine.Async(ctx, br, w.value)
			return r.Err
		}
	}),
	ours("Go", func(br *engine.Breaker) func(*work) error {
		ctx := context.Background()
		// One results channel for every caller, as a fan-out would have;
		// with room for each goroutine of the parallel runs, no send waits.
		results := make(chan engine.Result[int], 64)
		return func(w *work) error {
			if err := engine.Go(ctx, br, results, w.value); err != nil {
				return err
			}
			return (<-results).Err
		}
	}),
	{
		name: "gobreaker-Execute",
		closed: func(*testing.B) func(*work) error {
			return gobreakerExecute(gobreaker.NewCircuitBreaker[int](gobreaker.Settings{
				ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
			}))
		},
		open: func(*testing.B) func(*work) error {
			cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Timeout: hour})
			for range 6 { // the default ReadyToTrip opens after more than 5
				_, _ = cb.Execute(func() (int, error) { return 0, errWork })
			}
			return gobreakerExecute(cb)
		},
		halfOpen: func(b *testing.B) func(*work) error {
			cb := gobreaker.NewCircuitBreaker[int](gobreaker.Settings{Timeout: time.Millisecond, ReadyToTrip: func(gobreaker.Counts) bool { return true }})
			_, _ = cb.Execute(func() (int, error) { return 0, errWork })
			time.Sleep(2 * time.Millisecond) // setup only: gobreaker has no clock to drive
			hold(b, func(wait func() error) { _, _ = cb.Execute(func() (int, error) { return 0, wait() }) })
			return gobreakerExecute(cb)
		},
		rate: func(*testing.B) func(*work) error {
			return gobreakerExecute(gobreaker.NewCircuitBreaker[int](gobreakerRate))
		},
	},
	{
		name: "gobreaker-TwoStep",
		closed: func(*testing.B) func(*work) error {
			return gobreakerTwoStep(gobreaker.NewTwoStepCircuitBreaker[int](gobreaker.Settings{
				ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
			}))
		},
		open: func(*testing.B) func(*work) error {
			cb := gobreaker.NewTwoStepCircuitBreaker[int](gobreaker.Settings{Timeout: hour})
			for range 6 {
				done, _ := cb.Allow()
				done(errWork)
			}
			return gobreakerTwoStep(cb)
		},
		halfOpen: func(b *testing.B) func(*work) error {
			cb := gobreaker.NewTwoStepCircuitBreaker[int](gobreaker.Settings{Timeout: time.Millisecond, ReadyToTrip: func(gobreaker.Counts) bool { return true }})
			done, _ := cb.Allow()
			done(errWork)
			time.Sleep(2 * time.Millisecond)
			if _, err := cb.Allow(); err != nil { // the held probe, never reported
				b.Fatal(err)
			}
			return gobreakerTwoStep(cb)
		},
		rate: func(*testing.B) func(*work) error {
			return gobreakerTwoStep(gobreaker.NewTwoStepCircuitBreaker[int](gobreakerRate))
		},
	},
	{
		name: "failsafe-Run",
		closed: func(*testing.B) func(*work) error {
			return failsafeRun(circuitbreaker.NewBuilder[any]().WithFailureThreshold(threshold).Build())
		},
		open: func(*testing.B) func(*work) error {
			cb := circuitbreaker.NewBuilder[any]().WithDelay(hour).Build()
			cb.Open()
			return failsafeRun(cb)
		},
		halfOpen: func(b *testing.B) func(*work) error {
			cb := failsafeHalfOpen(b)
			return failsafeRun(cb)
		},
		rate: func(*testing.B) func(*work) error {
			return failsafeRun(circuitbreaker.NewBuilder[any]().WithFailureThresholdRatio(rateCalls/2, rateCalls).Build())
		},
	},
	{
		name: "failsafe-Permit",
		closed: func(*testing.B) func(*work) error {
			return failsafePermit(circuitbreaker.NewBuilder[any]().WithFailureThreshold(threshold).Build())
		},
		open: func(*testing.B) func(*work) error {
			cb := circuitbreaker.NewBuilder[any]().WithDelay(hour).Build()
			cb.Open()
			return failsafePermit(cb)
		},
		halfOpen: func(b *testing.B) func(*work) error {
			return failsafePermit(failsafeHalfOpen(b))
		},
		rate: func(*testing.B) func(*work) error {
			return failsafePermit(circuitbreaker.NewBuilder[any]().WithFailureThresholdRatio(rateCalls/2, rateCalls).Build())
		},
	},
	{
		// eapache counts errors within its timeout rather than in a row,
		// and has no half-open limit (every call in half-open runs), so
		// it has no half-open subject.
		name: "eapache",
		closed: func(*testing.B) func(*work) error {
			return eapacheRun(breaker.New(1<<30, 1, hour))
		},
		open: func(*testing.B) func(*work) error {
			br := breaker.New(1, 1, hour)
			_ = br.Run(bad.run)
			return eapacheRun(br)
		},
	},
	{
		// cep21/circuit v4.1.0 (v4.2.0 is not benchmarked: the module
		// proxy this builds against does not serve it). Its execution
		// timeout and concurrency limit are off and it has no fallback,
		// so it does what the others do. It has no half-open state:
		// after its sleep window it lets HalfOpenAttempts calls through
		// per window, so it has no half-open subject. Its rate is
		// hystrix's, over a rolling 10 s.
		name: "cep21",
		closed: func(*testing.B) func(*work) error {
			return cep21Execute(cep21Circuit(simplelogic.ConsecutiveErrOpenerFactory(simplelogic.ConfigConsecutiveErrOpener{ErrorThreshold: threshold}), time.Second))
		},
		open: func(b *testing.B) func(*work) error {
			c := cep21Circuit(simplelogic.ConsecutiveErrOpenerFactory(simplelogic.ConfigConsecutiveErrOpener{ErrorThreshold: 1}), hour)
			c.OpenCircuit(context.Background())
			if !c.IsOpen() {
				b.Fatal("cep21: not open")
			}
			return cep21Execute(c)
		},
		rate: func(*testing.B) func(*work) error {
			return cep21Execute(cep21Circuit(cep21hystrix.OpenerFactory(cep21hystrix.ConfigureOpener{ErrorThresholdPercentage: 50, RequestVolumeThreshold: rateCalls}), time.Second))
		},
	},
	{
		// hystrix-go trips on an error percentage (set to 100%, which 10%
		// failures never reach) rather than consecutive failures, and runs
		// every call on goroutines of its own. Its rate is over a rolling
		// 10 s, not the last 100 calls.
		name: "hystrix",
		closed: func(*testing.B) func(*work) error {
			return hystrixDo(hystrixCommand(hystrix.CommandConfig{Timeout: 60_000, MaxConcurrentRequests: 1 << 20, ErrorPercentThreshold: 100, RequestVolumeThreshold: threshold}))
		},
		open: func(b *testing.B) func(*work) error {
			name := hystrixCommand(hystrix.CommandConfig{Timeout: 60_000, MaxConcurrentRequests: 1 << 20, ErrorPercentThreshold: 1, RequestVolumeThreshold: 1, SleepWindow: int(hour / time.Millisecond)})
			hystrixTrip(b, name)
			return hystrixDo(name)
		},
		halfOpen: func(b *testing.B) func(*work) error {
			name := hystrixCommand(hystrix.CommandConfig{Timeout: 60_000, MaxConcurrentRequests: 1 << 20, ErrorPercentThreshold: 1, RequestVolumeThreshold: 1, SleepWindow: 1})
			hystrixTrip(b, name)
			time.Sleep(2 * time.Millisecond)
			hold(b, func(wait func() error) { _ = hystrix.Do(name, wait, nil) })
			return hystrixDo(name)
		},
		rate: func(*testing.B) func(*work) error {
			return hystrixDo(hystrixCommand(hystrix.CommandConfig{Timeout: 60_000, MaxConcurrentRequests: 1 << 20, ErrorPercentThreshold: 50, RequestVolumeThreshold: rateCalls}))
		},
	},
	{
		// rubyist's half-open admits one call per backoff interval; its
		// rate is over a rolling 10 s, not the last 100 calls.
		name: "rubyist",
		closed: func(*testing.B) func(*work) error {
			return rubyistCall(rubyist.NewConsecutiveBreaker(threshold))
		},
		open: func(*testing.B) func(*work) error {
			cb := rubyist.NewBreakerWithOptions(&rubyist.Options{BackOff: backoff.NewConstantBackOff(hour)})
			cb.Trip()
			return rubyistCall(cb)
		},
		halfOpen: func(b *testing.B) func(*work) error {
			cb := rubyist.NewBreakerWithOptions(&rubyist.Options{BackOff: backoff.NewConstantBackOff(time.Millisecond)})
			cb.Trip()
			time.Sleep(2 * time.Millisecond)
			hold(b, func(wait func() error) { _ = cb.Call(wait, 0) })
			return rubyistCall(cb)
		},
		rate: func(*testing.B) func(*work) error {
			return rubyistCall(rubyist.NewRateBreaker(0.5, rateCalls))
		},
	},
}

func atomicBaseline(open bool) func(*work) error {
	var state, successes, failures atomic.Int64
	if open {
		state.Store(1)
	}
	return func(w *work) error {
		if state.Load() != 0 {
			return errOpen
		}
		err := w.run()
		if err != nil {
			failures.Add(1)
		} else {
			successes.Add(1)
		}
		return err
	}
}

func gobreakerExecute(cb *gobreaker.CircuitBreaker[int]) func(*work) error {
	return func(w *work) error {
		_, err := cb.Execute(func() (int, error) { return 1, w.run() })
		return err
	}
}

func gobreakerTwoStep(cb *gobreaker.TwoStepCircuitBreaker[int]) func(*work) error {
	return func(w *work) error {
		done, err := cb.Allow()
		if err != nil {
			return err
		}
		err = w.run()
		done(err)
		return err
	}
}

func failsafeRun(cb circuitbreaker.CircuitBreaker[any]) func(*work) error {
	ex := failsafe.With[any](cb)
	return func(w *work) error { return ex.Run(w.run) }
}

func failsafePermit(cb circuitbreaker.CircuitBreaker[any]) func(*work) error {
	return func(w *work) error {
		if !cb.TryAcquirePermit() {
			return circuitbreaker.ErrOpen
		}
		err := w.run()
		if err != nil {
			cb.RecordError(err)
		} else {
			cb.RecordSuccess()
		}
		return err
	}
}

func failsafeHalfOpen(b *testing.B) circuitbreaker.CircuitBreaker[any] {
	cb := circuitbreaker.NewBuilder[any]().WithDelay(time.Millisecond).Build()
	cb.Open()
	time.Sleep(2 * time.Millisecond)
	if !cb.TryAcquirePermit() { // the held probe, never recorded
		b.Fatal("failsafe: no half-open permit")
	}
	return cb
}

// cep21Circuit makes a circuit that opens by opener and lets a probe
// through after each sleep window. A timeout and a concurrency limit of -1
// are off: with them, every call would make a context with a deadline
// and count itself in, which no other subject does.
func cep21Circuit(opener func() circuit.ClosedToOpen, sleep time.Duration) *circuit.Circuit {
	return circuit.NewCircuitFromConfig("bench", circuit.Config{
		General: circuit.GeneralConfig{
			ClosedToOpenFactory: opener,
			OpenToClosedFactory: cep21hystrix.CloserFactory(cep21hystrix.ConfigureCloser{SleepWindow: sleep}),
		},
		Execution: circuit.ExecutionConfig{Timeout: -1, MaxConcurrentRequests: -1},
		Fallback:  circuit.FallbackConfig{Disabled: true},
	})
}

// cep21Execute runs work through c with no fallback.
func cep21Execute(c *circuit.Circuit) func(*work) error {
	return func(w *work) error {
		return c.Execute(context.Background(), func(context.Context) error { return w.run() }, nil)
	}
}

func eapacheRun(br *breaker.Breaker) func(*work) error {
	return func(w *work) error { return br.Run(w.run) }
}

var hystrixSeq atomic.Int64

func hystrixCommand(cfg hystrix.CommandConfig) string {
	name := fmt.Sprintf("bench-%d", hystrixSeq.Add(1))
	hystrix.ConfigureCommand(name, cfg)
	return name
}

func hystrixDo(name string) func(*work) error {
	return func(w *work) error { return hystrix.Do(name, w.run, nil) }
}

// hystrixTrip fails calls until the circuit reports open; hystrix-go
// updates its metrics on a goroutine, so it takes a few.
func hystrixTrip(b *testing.B, name string) {
	cb, _, _ := hystrix.GetCircuit(name)
	for i := 0; !cb.IsOpen(); i++ {
		if i == 10_000 {
			b.Fatal("hystrix: circuit did not open")
		}
		_ = hystrix.Do(name, bad.run, nil)
		time.Sleep(time.Millisecond) // setup only: wait for hystrix's metrics goroutine
	}
}

func rubyistCall(cb *rubyist.Breaker) func(*work) error {
	return func(w *work) error { return cb.Call(w.run, 0) }
}

// hold starts a call through the breaker that does not finish until the
// benchmark ends, so it keeps the half-open probe slot taken.
func hold(b *testing.B, call func(wait func() error)) {
	release, started := make(chan struct{}), make(chan struct{})
	go call(func() error { close(started); <-release; return nil })
	<-started
	b.Cleanup(func() { close(release) })
}

// run times fn for each subject that has a setup for this scenario.
func run(b *testing.B, setup func(subject) func(*testing.B) func(*work) error, fn func(b *testing.B, call func(*work) error)) {
	for _, s := range subjects {
		mk := setup(s)
		if mk == nil {
			continue
		}
		b.Run(s.name, func(b *testing.B) {
			call := mk(b)
			b.ReportAllocs()
			b.ResetTimer()
			fn(b, call)
		})
	}
}

func closed(s subject) func(*testing.B) func(*work) error   { return s.closed }
func open(s subject) func(*testing.B) func(*work) error     { return s.open }
func halfOpen(s subject) func(*testing.B) func(*work) error { return s.halfOpen }
func rate(s subject) func(*testing.B) func(*work) error     { return s.rate }

func serial(w *work) func(*testing.B, func(*work) error) {
	return func(b *testing.B, call func(*work) error) {
		for b.Loop() {
			_ = call(w)
		}
	}
}

// parallel runs calls from p goroutines per core; every tenth call of
// each goroutine fails when failEvery10 is set.
func parallel(p int, steady *work, failEvery10 bool) func(*testing.B, func(*work) error) {
	return func(b *testing.B, call func(*work) error) {
		b.SetParallelism(p)
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				w := steady
				if failEvery10 {
					if i++; i == 10 {
						i, w = 0, bad
					}
				}
				_ = call(w)
			}
		})
	}
}

func BenchmarkClosedSerial(b *testing.B)       { run(b, closed, serial(ok)) }
func BenchmarkClosedParallel1(b *testing.B)    { run(b, closed, parallel(1, ok, false)) }
func BenchmarkClosedParallel8(b *testing.B)    { run(b, closed, parallel(8, ok, false)) }
func BenchmarkOpenSerial(b *testing.B)         { run(b, open, serial(ok)) }
func BenchmarkOpenParallel8(b *testing.B)      { run(b, open, parallel(8, ok, false)) }
func BenchmarkFailures10Pct8(b *testing.B)     { run(b, closed, parallel(8, ok, true)) }
func BenchmarkHalfOpenParallel8(b *testing.B)  { run(b, halfOpen, parallel(8, ok, false)) }
func BenchmarkRateFailures10Pct8(b *testing.B) { run(b, rate, parallel(8, ok, true)) }
