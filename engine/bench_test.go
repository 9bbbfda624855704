package engine

import (
	"context"
	"sync/atomic"
	"testing"
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

func BenchmarkCallTenPercentFailuresParallel(b *testing.B) {
	br := benchBreaker(b, Config{FailureThreshold: 1 << 30})
	var n atomic.Uint64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = br.Call(func() error {
				if n.Add(1)%10 == 0 {
					return errBoom
				}
				return nil
			})
		}
	})
}

func BenchmarkAsyncClosed(b *testing.B) {
	br := benchBreaker(b, Config{})
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	for b.Loop() {
		<-Async(ctx, br, fn)
	}
}
