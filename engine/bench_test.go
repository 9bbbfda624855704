package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func benchBreaker(b *testing.B, cfg Config) *Breaker {
	br, err := NewBreaker("bench", cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = br.Close() })
	b.ReportAllocs()
	return br
}

func BenchmarkCallClosed(b *testing.B) {
	br := benchBreaker(b, Config{})
	for b.Loop() {
		_ = br.Call(succeed)
	}
}

func BenchmarkDoClosedParallel(b *testing.B) {
	br := benchBreaker(b, Config{})
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = br.Do(ctx, fn)
		}
	})
}

func BenchmarkExecuteClosed(b *testing.B) {
	br := benchBreaker(b, Config{})
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	for b.Loop() {
		_, _ = Execute(ctx, br, fn)
	}
}

func BenchmarkAdmitReportClosed(b *testing.B) {
	br := benchBreaker(b, Config{})
	ctx := context.Background()
	for b.Loop() {
		t, _ := br.Admit(ctx)
		t.Report(nil)
	}
}

func BenchmarkCallOpenParallel(b *testing.B) {
	br := benchBreaker(b, Config{})
	br.Trip()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = br.Call(succeed)
		}
	})
}

// BenchmarkPoliciesParallel is closed-state calls, 8 goroutines per core,
// under each kind of policy: all succeeding (the path that matters most),
// and one in ten failing, the circuit staying closed. A failure waits for
// the breaker's goroutine only if it might open the circuit, but under
// ShouldTrip, which must see every failure.
func BenchmarkPoliciesParallel(b *testing.B) {
	for _, p := range []struct {
		name string
		cfg  Config
	}{
		{"consecutive", Config{FailureThreshold: 1 << 30}},
		{"count-window", Config{FailureRateThreshold: 0.5, WindowSize: 100}},
		{"time-window", Config{FailureRateThreshold: 0.5, WindowDuration: 10 * time.Second}},
		{"slow-calls", Config{SlowCallThreshold: time.Second}},
		{"should-trip", Config{ShouldTrip: func(Counts) bool { return false }}},
	} {
		for _, every := range []uint64{0, 10} {
			name := p.name + "/all-succeed"
			if every > 0 {
				name = p.name + "/one-in-10-fails"
			}
			b.Run(name, func(b *testing.B) {
				br := benchBreaker(b, p.cfg)
				var n atomic.Uint64
				work := succeed
				if every > 0 {
					work = func() error {
						if n.Add(1)%every == 0 {
							return errBoom
						}
						return nil
					}
				}
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						_ = br.Call(work)
					}
				})
				require.Equal(b, Closed, br.State(), "the failures must not open the circuit")
			})
		}
	}
}

func BenchmarkAsyncClosed(b *testing.B) {
	br := benchBreaker(b, Config{})
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	for b.Loop() {
		<-Async(ctx, br, fn)
	}
}

func BenchmarkGoClosed(b *testing.B) {
	br := benchBreaker(b, Config{})
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	results := make(chan Result[int], 1)
	for b.Loop() {
		_ = Go(ctx, br, results, fn)
		<-results
	}
}

func BenchmarkCallOpen(b *testing.B) {
	br := benchBreaker(b, Config{})
	br.Trip()
	for b.Loop() {
		_ = br.Call(succeed)
	}
}

// BenchmarkFailureStorm measures what one breaker absorbs when failures
// pour in, and what each caller waits (p50, p99 and p99.9), as senders
// multiply, under four policies that keep the circuit closed:
//
//   - consecutive: every call fails, the threshold is out of reach. The
//     breaker is lean, so failures are tallied without a message.
//   - rate: every other call fails, under a 90% failure-rate threshold
//     over a count window. The failures are tallied with their place
//     among the successes.
//   - time-rate: the same over a time window of ten 1 s buckets. The
//     first outcomes of each bucket wait for the owner to publish it.
//   - should-trip: every other call fails, under a ShouldTrip, which
//     makes every failure wait for the breaker's goroutine: what it absorbs.
func BenchmarkFailureStorm(b *testing.B) {
	policies := []struct {
		name  string
		cfg   Config
		every int // one call in every fails, the last of each run of every
	}{
		{"consecutive", Config{FailureThreshold: 1 << 30}, 1},
		{"rate", Config{FailureRateThreshold: 0.9, WindowSize: 10_000}, 2},
		{"time-rate", Config{FailureRateThreshold: 0.9, WindowDuration: 10 * time.Second}, 2},
		{"should-trip", Config{ShouldTrip: func(Counts) bool { return false }}, 2},
	}
	for _, p := range policies {
		for _, g := range []int{2, 16, 64} {
			b.Run(fmt.Sprintf("%s/senders=%d", p.name, g), func(b *testing.B) {
				br := benchBreaker(b, p.cfg)
				var next atomic.Int32 // index of the next latency slice
				all := make([][]time.Duration, g*runtime.GOMAXPROCS(0))
				b.SetParallelism(max(1, g/runtime.GOMAXPROCS(0)))
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					mine := make([]time.Duration, 0, 1024)
					for i := 0; pb.Next(); i++ {
						work := succeed
						if i%p.every == p.every-1 { // fail last: with every > 1, no burst of failures up front
							work = fail
						}
						t0 := time.Now()
						_ = br.Call(work)
						mine = append(mine, time.Since(t0))
					}
					all[next.Add(1)-1] = mine
				})
				elapsed := time.Since(start)
				require.Equal(b, Closed, br.State(), "the storm must not open the circuit")
				flat := slices.Concat(all...)
				slices.Sort(flat)
				if len(flat) > 0 {
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
					b.ReportMetric(float64(flat[len(flat)/2].Nanoseconds()), "p50-ns")
					b.ReportMetric(float64(flat[len(flat)*99/100].Nanoseconds()), "p99-ns")
					b.ReportMetric(float64(flat[len(flat)*999/1000].Nanoseconds()), "p999-ns")
				}
			})
		}
	}
}

// BenchmarkEngineIdle creates breakers and leaves them idle, reporting
// memory and goroutines per breaker; ns/op is the creation time.
func BenchmarkEngineIdle(b *testing.B) {
	e, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	names := make([]string, b.N)
	for i := range names {
		names[i] = fmt.Sprintf("upstream-%d", i)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	b.ResetTimer()
	for _, n := range names {
		e.Breaker(n)
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse))/float64(b.N), "B/breaker")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/float64(b.N), "goroutines/breaker")
}

// BenchmarkEngineLookup looks up existing names among 100k breakers.
func BenchmarkEngineLookup(b *testing.B) {
	e, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const n = 100_000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("upstream-%d", i)
		e.Breaker(names[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		_ = e.Breaker(names[i])
		if i++; i == n {
			i = 0
		}
	}
}

// BenchmarkCountsIdle is Counts on a breaker with nothing queued, as a
// metrics scrape or fleet mode asks every breaker of an Engine: the asking
// goroutine handles the request itself.
func BenchmarkCountsIdle(b *testing.B) {
	br := benchBreaker(b, Config{})
	for b.Loop() {
		_ = br.Counts()
	}
}
