package engine_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/nodus/circuitbreaker/engine"
)

var errUpstream = errors.New("upstream unavailable")

// The seed's quick start: three failures open the circuit, and the next
// call is rejected without running.
func ExampleNewBreaker() {
	b, err := engine.NewBreaker("payments", engine.Config{FailureThreshold: 3, RecoveryTimeout: 30 * time.Second})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	for range 3 {
		err = b.Call(func() error { return errUpstream })
		fmt.Println(err)
	}
	fmt.Println("state:", b.State(), "failures:", b.Counts().ConsecutiveFailures)

	err = b.Call(func() error { return nil })
	fmt.Println(errors.Is(err, engine.ErrOpen), err)
	// Output:
	// upstream unavailable
	// upstream unavailable
	// upstream unavailable
	// state: open failures: 3
	// true engine: circuit "payments" open, retry after 30s
}

func ExampleBreaker_Do() {
	b, _ := engine.NewBreaker("inventory", engine.Config{})
	defer b.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := b.Do(ctx, func(ctx context.Context) error {
		// Call the upstream with ctx, e.g. http.NewRequestWithContext.
		return nil
	})
	fmt.Println(err, b.State())
	// Output: <nil> closed
}

func ExampleExecute() {
	b, _ := engine.NewBreaker("prices", engine.Config{})
	defer b.Close()

	price, err := engine.Execute(context.Background(), b, func(ctx context.Context) (float64, error) {
		return 9.99, nil
	})
	fmt.Println(price, err)
	// Output: 9.99 <nil>
}

func ExampleAsync() {
	b, _ := engine.NewBreaker("search", engine.Config{})
	defer b.Close()

	results := engine.Async(context.Background(), b, func(ctx context.Context) ([]string, error) {
		return []string{"go", "breaker"}, nil
	})
	select {
	case r := <-results:
		fmt.Println(r.Value, r.Err)
	case <-time.After(time.Minute):
		fmt.Println("gave up waiting")
	}
	// Output: [go breaker] <nil>
}

// Admit and Report split a call in two, for work that is not one function
// call: an event loop, a callback API, a stream.
func ExampleBreaker_Admit() {
	b, _ := engine.NewBreaker("events", engine.Config{FailureThreshold: 1})
	defer b.Close()

	ticket, err := b.Admit(context.Background())
	if err != nil {
		fmt.Println("rejected:", err)
		return
	}
	// ... start the work; when it ends, however it ends:
	ticket.Report(errUpstream)

	_, err = b.Admit(context.Background())
	fmt.Println(errors.Is(err, engine.ErrOpen))
	// Output: true
}

// A subscription is an ordered stream of transitions. Here a mock clock
// drives time, as in a test or a simulation.
func ExampleBreaker_Subscribe() {
	mock := clock.NewMock()
	b, _ := engine.NewBreaker("db", engine.Config{FailureThreshold: 2, RecoveryTimeout: 10 * time.Second, Clock: mock})
	defer b.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	transitions := b.Subscribe(ctx)

	_ = b.Call(func() error { return errUpstream })
	_ = b.Call(func() error { return errUpstream })
	mock.Add(10 * time.Second)
	_ = b.Call(func() error { return nil })

	for range 3 {
		t := <-transitions
		fmt.Printf("#%d %s -> %s: %s\n", t.Seq, t.From, t.To, t.Reason)
	}
	// Output:
	// #1 closed -> open: 2 consecutive failures
	// #2 open -> half_open: recovery timeout elapsed
	// #3 half_open -> closed: probe succeeded
}

// OnStateChange runs on the breaker's own goroutine for callbacks, in order,
// so it can feed metrics or logs without slowing callers.
func ExampleConfig_onStateChange() {
	done := make(chan struct{})
	b, _ := engine.NewBreaker("api", engine.Config{
		FailureThreshold: 1,
		OnStateChange: func(name string, from, to engine.State) {
			fmt.Printf("%s: %s -> %s\n", name, from, to)
			close(done)
		},
	})
	defer b.Close()

	_ = b.Call(func() error { return errUpstream })
	<-done
	// Output: api: closed -> open
}

// An Engine hosts one breaker per name, created on first use.
func ExampleEngine() {
	e, _ := engine.New(engine.Config{FailureThreshold: 1})
	defer e.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	all := e.Subscribe(ctx)

	for _, host := range []string{"a.example", "b.example", "a.example"} {
		err := e.Breaker(host).Call(func() error {
			if host == "b.example" {
				return errUpstream
			}
			return nil
		})
		fmt.Println(host, err)
	}
	t := <-all
	fmt.Println(t.Name, "is", t.To)
	// Output:
	// a.example <nil>
	// b.example upstream unavailable
	// a.example <nil>
	// b.example is open
}
