package redisfleet

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nodus/circuitbreaker/engine"
)

// BenchmarkReportIdle is the fleet-wide failure rate's sweep over an
// engine's breakers when none has news: what every BatchInterval costs a
// replica with many idle breakers. No Redis is needed, as a sweep with no
// news sends nothing.
func BenchmarkReportIdle(b *testing.B) {
	const n = 100_000
	e, err := engine.New(engine.Config{})
	require.NoError(b, err)
	defer e.Close()
	for i := range n {
		e.Breaker(fmt.Sprintf("upstream-%d", i))
	}
	o, err := Options{FailureRate: 0.5}.withDefaults()
	require.NoError(b, err)
	f := &Fleet{e: e, o: o, gens: map[string]int64{}, sent: map[*engine.Breaker]counts{}}
	ctx := context.Background()
	f.report(ctx) // every breaker seen once...
	f.report(ctx) // ...and both maps of counts sent made
	b.ReportAllocs()
	for b.Loop() {
		f.report(ctx)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/breaker")
	require.Len(b, f.sent, n)
}
