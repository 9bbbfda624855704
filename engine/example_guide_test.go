package engine_test

// The examples of docs/guide.md. Each function body appears in the guide
// verbatim, so keep the two in step (the docs module's test checks it).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/nodus/circuitbreaker/engine"
)

// rateLimitedError is what an upstream client might return for an HTTP 429
// with a Retry-After header: any error with a RetryAfter method opens the
// circuit at once.
type rateLimitedError struct{ wait time.Duration }

func (e *rateLimitedError) Error() string             { return "429 Too Many Requests" }
func (e *rateLimitedError) RetryAfter() time.Duration { return e.wait }

func Example_consecutiveFailures() {
	b, err := engine.NewBreaker("payments", engine.Config{
		FailureThreshold: 3,
		RecoveryTimeout:  30 * time.Second,
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	fail := func() error { return errors.New("connection refused") }
	ok := func() error { return nil }

	// A success in between starts the count again.
	for _, call := range []func() error{fail, fail, ok, fail, fail, fail} {
		_ = b.Call(call)
		fmt.Println(b.State(), b.Counts().ConsecutiveFailures)
	}
	fmt.Println(b.Call(ok))
	// Output:
	// closed 1
	// closed 2
	// closed 0
	// closed 1
	// closed 2
	// open 3
	// engine: circuit "payments" open, retry after 30s
}

func Example_failureRateCountWindow() {
	b, _ := engine.NewBreaker("search", engine.Config{
		FailureRateThreshold: 0.5, // open when half the calls failed...
		WindowSize:           10,  // ...of the last 10...
		MinimumCalls:         10,  // ...once there are 10 of them
	})
	defer b.Close()

	// Every other call fails: never two failures in a row, but half the traffic.
	for i := range 10 {
		_ = b.Call(func() error {
			if i%2 == 0 {
				return errors.New("503 Service Unavailable")
			}
			return nil
		})
		if i >= 8 {
			c := b.Counts()
			fmt.Printf("%d calls: %s, failure rate %.0f%%\n", c.WindowCalls, b.State(), 100*c.FailureRate)
		}
	}
	// Output:
	// 9 calls: closed, failure rate 56%
	// 10 calls: open, failure rate 50%
}

func Example_failureRateTimeWindow() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("geo", engine.Config{
		FailureRateThreshold: 0.5,
		WindowDuration:       10 * time.Second, // ten buckets of one second
		MinimumCalls:         4,
		Clock:                mock,
	})
	defer b.Close()

	call := func(fail bool) {
		_ = b.Call(func() error {
			if fail {
				return errors.New("timeout")
			}
			return nil
		})
	}
	call(true) // three failures, but too few calls to judge
	call(true)
	call(true)
	mock.Add(10 * time.Second) // ...and now they have left the window

	call(false)
	call(false)
	call(true)
	c := b.Counts()
	fmt.Println(b.State(), c.WindowCalls, c.WindowFailures)
	call(true) // 2 of 4
	fmt.Println(b.State())
	// Output:
	// closed 3 1
	// open
}

func Example_slowCalls() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("reports", engine.Config{
		SlowCallThreshold:     2 * time.Second, // a call taking 2s or more is slow
		SlowCallRateThreshold: 0.5,             // open when half the window is slow
		WindowSize:            4,
		FailureThreshold:      5, // errors still count: keep this policy on
		Clock:                 mock,
	})
	defer b.Close()

	for _, took := range []time.Duration{100 * time.Millisecond, 3 * time.Second, 200 * time.Millisecond, 2500 * time.Millisecond} {
		err := b.Call(func() error {
			mock.Add(took) // the call takes this long on the breaker's clock
			return nil     // slow, but a success
		})
		fmt.Println(took, err, b.State())
	}
	c := b.Counts()
	fmt.Println(c.SlowCalls, c.SlowCallRate)
	// Output:
	// 100ms <nil> closed
	// 3s <nil> closed
	// 200ms <nil> closed
	// 2.5s <nil> open
	// 2 0.5
}

func Example_backoffWithJitter() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("search", engine.Config{
		FailureThreshold:   1,
		RecoveryTimeout:    10 * time.Second,
		BackoffMultiplier:  2,           // 10s, 20s, 40s...
		MaxRecoveryTimeout: time.Minute, // ...up to a minute
		Jitter:             0.1,         // each ±10%
		Seed:               42,          // only so that this output repeats
		Clock:              mock,
	})
	defer b.Close()

	for range 5 {
		_ = b.Call(func() error { return errors.New("down") }) // trips, or fails the probe
		var open *engine.OpenError
		if errors.As(b.Call(func() error { return nil }), &open) {
			fmt.Println("open for", open.RetryAfter.Round(time.Millisecond))
			mock.Add(open.RetryAfter) // now half-open: the next call is a probe
		}
	}
	// Output:
	// open for 9.338s
	// open for 18.754s
	// open for 41.639s
	// open for 57.617s
	// open for 1m0s
}

func Example_retryAfter() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("llm", engine.Config{
		RecoveryTimeout:    5 * time.Second,
		MaxRecoveryTimeout: 2 * time.Minute, // caps Retry-After hints too
		Clock:              mock,
	})
	defer b.Close()

	for _, wait := range []time.Duration{30 * time.Second, time.Hour, time.Second} {
		// One failure is enough; the hint may be wrapped.
		_ = b.Call(func() error { return fmt.Errorf("chat: %w", &rateLimitedError{wait}) })

		var open *engine.OpenError
		if errors.As(b.Call(func() error { return nil }), &open) {
			fmt.Printf("asked %s, open %s: %v\n", wait, open.RetryAfter, open.Cause)
		}
		b.Reset()
	}
	// Output:
	// asked 30s, open 30s: chat: 429 Too Many Requests
	// asked 1h0m0s, open 2m0s: chat: 429 Too Many Requests
	// asked 1s, open 5s: chat: 429 Too Many Requests
}

func Example_halfOpenProbes() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("inventory", engine.Config{
		FailureThreshold: 1,
		RecoveryTimeout:  10 * time.Second,
		HalfOpenProbes:   2, // two trial calls at a time...
		SuccessThreshold: 2, // ...and two successes to close
		Clock:            mock,
	})
	defer b.Close()
	ctx := context.Background()

	_ = b.Call(func() error { return errors.New("connection reset") })
	mock.Add(10 * time.Second)
	fmt.Println(b.State())

	p1, _ := b.Admit(ctx)
	p2, _ := b.Admit(ctx)
	_, err := b.Admit(ctx) // a third caller is turned away
	fmt.Println(err)

	p1.Report(nil)
	fmt.Println(b.State(), b.Counts().ProbesInFlight)
	p2.Report(nil)
	fmt.Println(b.State())
	// Output:
	// half_open
	// engine: circuit "inventory" half-open, all probe slots taken
	// half_open 1
	// closed
}

func Example_probeLease() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("stream", engine.Config{
		FailureThreshold: 2,
		RecoveryTimeout:  10 * time.Second,
		ProbeLease:       30 * time.Second,
		Clock:            mock,
	})
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	transitions := b.Subscribe(ctx)

	_ = b.Call(func() error { return errors.New("stream reset") })
	_ = b.Call(func() error { return errors.New("stream reset") })
	mock.Add(10 * time.Second)
	probe, _ := b.Admit(ctx) // a probe whose owner never reports
	mock.Add(30 * time.Second)

	for range 3 {
		t := <-transitions
		fmt.Printf("%s -> %s: %s\n", t.From, t.To, t.Reason)
	}
	probe.Report(nil) // too late: dropped as stale
	c := b.Counts()
	fmt.Println(c.Reclaimed, c.Stale)
	// Output:
	// closed -> open: 2 consecutive failures
	// open -> half_open: recovery timeout elapsed
	// half_open -> open: probe lease expired after 30s
	// 1 1
}

func Example_manualControl() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("billing", engine.Config{RecoveryTimeout: 30 * time.Second, Clock: mock})
	defer b.Close()
	ok := func() error { return nil }

	b.Trip() // open now; recovery follows as after any trip
	mock.Add(30 * time.Second)
	fmt.Println(b.State())

	b.Isolate() // open until Reset, whatever the clock says
	mock.Add(time.Hour)
	fmt.Println(b.Call(ok))

	b.Reset() // closed, with the consecutive and window counts cleared
	fmt.Println(b.State())

	b.ForceOpen(mock.Now().Add(5*time.Minute), "maintenance window")
	fmt.Println(b.Call(ok))
	// Output:
	// half_open
	// engine: circuit "billing" isolated
	// closed
	// engine: circuit "billing" open, retry after 5m0s
}

func Example_classify() {
	errNotFound := errors.New("404 Not Found")
	b, _ := engine.NewBreaker("catalog", engine.Config{
		Classify: func(err error) engine.Outcome {
			if errors.Is(err, errNotFound) {
				return engine.Success // the upstream answered; the item is just not there
			}
			return engine.DefaultClassify(err) // nil, context.Canceled, everything else
		},
	})
	defer b.Close()

	_ = b.Call(func() error { return fmt.Errorf("item 42: %w", errNotFound) })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = b.Do(ctx, func(ctx context.Context) error {
		cancel() // the caller gives up mid-call: ignored
		return ctx.Err()
	})

	_ = b.Call(func() error { return context.DeadlineExceeded }) // a timeout: a failure

	c := b.Counts()
	fmt.Println(c.Successes, c.Ignored, c.Failures)
	// Output:
	// 1 1 1
}

func Example_shouldTrip() {
	b, _ := engine.NewBreaker("ledger", engine.Config{
		WindowSize: 10, // keep the last 10 outcomes in Counts
		// Open on 3 failures among the last 10 calls, however many succeeded.
		ShouldTrip: func(c engine.Counts) bool { return c.WindowFailures >= 3 },
	})
	defer b.Close()

	for _, failed := range []bool{false, true, false, false, true, false, false, false, true} {
		_ = b.Call(func() error {
			if failed {
				return errors.New("deadlock detected")
			}
			return nil
		})
	}
	c := b.Counts()
	fmt.Println(b.State(), c.WindowCalls, c.WindowFailures, c.ConsecutiveFailures)
	// Output:
	// open 9 3 1
}

func Example_engineDefaults() {
	e, err := engine.New(engine.Config{FailureThreshold: 5, RecoveryTimeout: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	defer e.Close()

	// Breaker gets or creates: one name, one breaker.
	api := e.Breaker("api.example.com")
	fmt.Println(api == e.Breaker("api.example.com"))

	// A breaker with a Config of its own; its zero fields mean the package
	// defaults, not the engine's (only the engine's Clock carries over).
	db, err := e.NewBreaker("db", engine.Config{FailureThreshold: 1, RecoveryTimeout: 5 * time.Second})
	fmt.Println(db.Name(), err)
	_, err = e.NewBreaker("db", engine.Config{})
	fmt.Println(errors.Is(err, engine.ErrDuplicate))

	_, ok := e.Lookup("cache") // Lookup never creates
	fmt.Println(ok)

	var names []string
	e.Range(func(b *engine.Breaker) bool {
		names = append(names, b.Name())
		return true
	})
	slices.Sort(names)
	fmt.Println(names)
	// Output:
	// true
	// db <nil>
	// true
	// false
	// [api.example.com db]
}

func Example_subscribe() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("queue", engine.Config{
		FailureThreshold: 2,
		RecoveryTimeout:  10 * time.Second,
		SubscriberBuffer: 2, // tiny, to show what a reader that falls behind misses
		Clock:            mock,
	})
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	transitions := b.Subscribe(ctx)

	fail := func() error { return errors.New("broker unreachable") }
	_ = b.Call(fail)
	_ = b.Call(fail) // #1 closed -> open
	mock.Add(10 * time.Second)
	_ = b.Call(fail) // #2 open -> half_open, #3 half_open -> open: the buffer is full
	mock.Add(10 * time.Second)
	fmt.Println(b.State()) // #4 open -> half_open: lost too

	for range 2 {
		t := <-transitions
		fmt.Printf("#%d %s -> %s (%s), missed %d\n", t.Seq, t.From, t.To, t.Reason, t.Missed)
	}
	_ = b.Call(func() error { return nil }) // #5 half_open -> closed
	t := <-transitions
	fmt.Printf("#%d %s -> %s (%s), missed %d\n", t.Seq, t.From, t.To, t.Reason, t.Missed)
	// Output:
	// half_open
	// #1 closed -> open (2 consecutive failures), missed 0
	// #2 open -> half_open (recovery timeout elapsed), missed 0
	// #5 half_open -> closed (probe succeeded), missed 2
}

func Example_onStateChange() {
	b, _ := engine.NewBreaker("mail", engine.Config{
		FailureThreshold: 1,
		OnStateChange: func(name string, from, to engine.State) {
			// On a goroutine of the breaker's own, in order, once per transition.
			fmt.Printf("%s: %s -> %s\n", name, from, to)
		},
	})
	defer b.Close()

	_ = b.Call(func() error { return errors.New("421 try again later") })
	b.Reset()

	b.Close() // waits until OnStateChange has seen every transition
	// Output:
	// mail: closed -> open
	// mail: open -> closed
}

func Example_logTransitions() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("payments", engine.Config{FailureThreshold: 2, RecoveryTimeout: 30 * time.Second, Clock: mock})
	defer b.Close()

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // no timestamps, so the output repeats
			}
			return a
		},
	}))
	ctx := context.Background()
	transitions := b.Subscribe(ctx) // subscribe first: a subscription sees later transitions only
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		engine.LogTransitions(ctx, logger, transitions)
	}()

	for range 2 {
		_ = b.Call(func() error { return errors.New("card network down") })
	}
	mock.Add(30 * time.Second)
	_ = b.Call(func() error { return nil })

	b.Close() // closes the subscription; LogTransitions returns once it has logged everything
	<-logged
	// Output:
	// level=WARN msg="circuit breaker open" breaker=payments from=closed to=open reason="2 consecutive failures" seq=1 failures=2 consecutive_failures=2 rejected=0 open_for=30s
	// level=INFO msg="circuit breaker half_open" breaker=payments from=open to=half_open reason="recovery timeout elapsed" seq=2 failures=2 consecutive_failures=2 rejected=0
	// level=INFO msg="circuit breaker closed" breaker=payments from=half_open to=closed reason="probe succeeded" seq=3 failures=2 consecutive_failures=0 rejected=0
}

func Example_engineSubscribe() {
	mock := clock.NewMock()
	e, _ := engine.New(engine.Config{FailureThreshold: 1, RecoveryTimeout: time.Minute, Clock: mock})
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	all := e.Subscribe(ctx) // every breaker of the engine, present and future

	for _, host := range []string{"eu.example", "us.example"} {
		_ = e.Breaker(host).Call(func() error { return errors.New("no route to host") })
	}
	for range 2 {
		t := <-all
		fmt.Printf("%s #%d %s -> %s, open for %s\n", t.Name, t.Seq, t.From, t.To, t.OpenUntil.Sub(t.At))
	}
	// Output:
	// eu.example #1 closed -> open, open for 1m0s
	// us.example #1 closed -> open, open for 1m0s
}

func Example_twoStep() {
	b, _ := engine.NewBreaker("webhooks", engine.Config{FailureThreshold: 2})
	defer b.Close()

	// The request starts here; its response arrives later, in a callback.
	ticket, err := b.Admit(context.Background())
	if err != nil {
		fmt.Println("not sending:", err)
		return
	}
	onResponse := func(status int, err error) {
		switch {
		case err != nil:
			ticket.Report(err) // classified by Config.Classify
		case status >= 500:
			ticket.ReportAs(engine.Failure, fmt.Errorf("status %d", status))
		case status >= 400:
			ticket.ReportAs(engine.Ignored, nil) // our request was bad, not the upstream
		default:
			ticket.Report(nil)
		}
	}
	onResponse(503, nil)
	onResponse(200, nil) // a duplicate callback: only the first report counts

	c := b.Counts()
	fmt.Println(c.Failures, c.Successes)
	// Output:
	// 1 0
}

func Example_async() {
	b, _ := engine.NewBreaker("thumbnails", engine.Config{FailureThreshold: 1})
	defer b.Close()
	ctx := context.Background()

	// fn runs on a goroutine of its own; the channel gets exactly one Result.
	r := <-engine.Async(ctx, b, func(ctx context.Context) ([]byte, error) {
		panic("decoder bug") // delivered as a *engine.PanicError, counted as a failure
	})
	var pe *engine.PanicError
	fmt.Println(errors.As(r.Err, &pe), pe.Value)

	// The circuit is open now: the rejection arrives at once and fn never runs.
	r = <-engine.Async(ctx, b, func(ctx context.Context) ([]byte, error) {
		return []byte("thumbnail"), nil
	})
	fmt.Println(errors.Is(r.Err, engine.ErrOpen))
	// Output:
	// true decoder bug
	// true
}

func Example_fanOut() {
	mirrors := map[string]string{"mirror-a": "v1.4.2", "mirror-b": "v1.4.2", "mirror-c": ""}
	results := make(chan engine.Result[string], len(mirrors)) // room for every call: none waits
	ctx := context.Background()

	started := 0
	for name, version := range mirrors {
		b, _ := engine.NewBreaker(name, engine.Config{})
		defer b.Close()
		err := engine.Go(ctx, b, results, func(ctx context.Context) (string, error) {
			if version == "" {
				return "", errors.New(name + " is down")
			}
			return name + " has " + version, nil
		})
		if err == nil { // a rejected call starts nothing and sends nothing
			started++
		}
	}
	var answers []string
	for range started {
		if r := <-results; r.Err == nil {
			answers = append(answers, r.Value)
		}
	}
	slices.Sort(answers)
	fmt.Println(answers)
	// Output:
	// [mirror-a has v1.4.2 mirror-b has v1.4.2]
}

func Example_mockClock() {
	mock := clock.NewMock() // starts at the Unix epoch; time moves only when told
	b, _ := engine.NewBreaker("prices", engine.Config{
		FailureThreshold: 2,
		RecoveryTimeout:  time.Minute,
		Clock:            mock,
	})
	defer b.Close()

	down := func() error { return errors.New("connection refused") }
	_ = b.Call(down)
	_ = b.Call(down)
	fmt.Println(b.State())

	mock.Add(59 * time.Second)
	fmt.Println(b.State())
	mock.Add(time.Second) // the recovery timeout has passed
	fmt.Println(b.State())

	_ = b.Call(func() error { return nil }) // the probe succeeds
	fmt.Println(b.State())
	// Output:
	// open
	// open
	// half_open
	// closed
}
