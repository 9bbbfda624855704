package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// passes joins go test runs as bench/run.sh appends them, each with its
// header.
func passes(runs ...string) string {
	var b strings.Builder
	for _, r := range runs {
		b.WriteString("goos: linux\ngoarch: amd64\npkg: x\n" + r + "PASS\nok  \tx\t1.0s\n")
	}
	return b.String()
}

// 475b39b paired the samples by their index: a subject missing from one
// pass shifted every later pass, dividing ours from one pass by the peer
// from the next.
func TestPairedMatchesPasses(t *testing.T) {
	raw := passes(
		"BenchmarkOpenSerial/circuitbreaker-Call-2 1000 10 ns/op 0 B/op 0 allocs/op\n"+
			"BenchmarkOpenSerial/gobreaker-Execute-2 1000 100 ns/op 0 B/op 0 allocs/op\n"+
			"BenchmarkOpenSerial/eapache-2 1000 5 ns/op 0 B/op 0 allocs/op\n",
		"BenchmarkOpenSerial/circuitbreaker-Call-2 1000 40 ns/op 0 B/op 0 allocs/op\n"+ // no gobreaker in this pass
			"BenchmarkOpenSerial/eapache-2 1000 20 ns/op 0 B/op 0 allocs/op\n",
		"BenchmarkOpenSerial/circuitbreaker-Call-2 1000 12 ns/op 0 B/op 0 allocs/op\n"+
			"BenchmarkOpenSerial/gobreaker-Execute-2 1000 100 ns/op 0 B/op 0 allocs/op\n"+
			"BenchmarkOpenSerial/eapache-2 1000 6 ns/op 0 B/op 0 allocs/op\n",
	)
	res, _, _ := parse(strings.NewReader(raw))
	require.Contains(t, res, "OpenSerial")
	worst, xRef, xEa := paired(res["OpenSerial"])
	assert.Equal(t, 12.0, worst, "the median of ours")
	assert.InDelta(t, 0.11, xRef, 1e-9, "passes 1 and 3 only: 10/100 and 12/100")
	assert.InDelta(t, 2.0, xEa, 1e-9, "every pass: 10/5, 40/20, 12/6")
}

// The worst entry point decides each ratio.
func TestPairedTakesTheWorstEntryPoint(t *testing.T) {
	raw := passes(
		"BenchmarkClosedSerial/circuitbreaker-Call-2 1000 10 ns/op 0 B/op 0 allocs/op\n" +
			"BenchmarkClosedSerial/circuitbreaker-Do-2 1000 30 ns/op 0 B/op 0 allocs/op\n" +
			"BenchmarkClosedSerial/gobreaker-Execute-2 1000 100 ns/op 0 B/op 0 allocs/op\n" +
			"BenchmarkClosedSerial/eapache-2 1000 10 ns/op 0 B/op 0 allocs/op\n",
	)
	res, _, _ := parse(strings.NewReader(raw))
	worst, xRef, xEa := paired(res["ClosedSerial"])
	assert.Equal(t, 30.0, worst)
	assert.InDelta(t, 0.3, xRef, 1e-9)
	assert.InDelta(t, 3.0, xEa, 1e-9)
}
