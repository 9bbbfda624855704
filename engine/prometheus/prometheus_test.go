package prometheus

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/nodus/circuitbreaker/engine"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var errDown = errors.New("down")

func setup(t *testing.T) (*engine.Engine, *Collector) {
	t.Helper()
	e, err := engine.New(engine.Config{FailureThreshold: 2})
	require.NoError(t, err)
	c := New(e)
	t.Cleanup(func() {
		_ = e.Close()
		_ = c.Close()
	})
	return e, c
}

func TestCollectAndCompare(t *testing.T) {
	synctest.Test(t, testCollectAndCompare)
}

func testCollectAndCompare(t *testing.T) {
	e, c := setup(t)
	db := e.Breaker("db")
	require.NoError(t, db.Call(func() error { return nil }))
	require.Error(t, db.Call(func() error { return errDown }))
	require.Error(t, db.Call(func() error { return errDown }))
	require.ErrorIs(t, db.Call(func() error { return nil }), engine.ErrOpen)
	// The collector counts transitions from the engine's stream, which is
	// asynchronous: wait until every goroutine in the bubble is idle.
	synctest.Wait()

	want := `
# HELP circuitbreaker_calls_total Calls by outcome: success, failure, ignored (neither), rejected (not run).
# TYPE circuitbreaker_calls_total counter
circuitbreaker_calls_total{breaker="db",outcome="failure"} 2
circuitbreaker_calls_total{breaker="db",outcome="ignored"} 0
circuitbreaker_calls_total{breaker="db",outcome="rejected"} 1
circuitbreaker_calls_total{breaker="db",outcome="success"} 1
# HELP circuitbreaker_in_state 1 if the breaker is in this state, 0 otherwise.
# TYPE circuitbreaker_in_state gauge
circuitbreaker_in_state{breaker="db",state="closed"} 0
circuitbreaker_in_state{breaker="db",state="half_open"} 0
circuitbreaker_in_state{breaker="db",state="open"} 1
# HELP circuitbreaker_state Breaker state: 0 closed, 1 half_open, 2 open.
# TYPE circuitbreaker_state gauge
circuitbreaker_state{breaker="db"} 2
# HELP circuitbreaker_transitions_total State transitions seen since the collector started.
# TYPE circuitbreaker_transitions_total counter
circuitbreaker_transitions_total{breaker="db",from="closed",to="open"} 1
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"circuitbreaker_calls_total", "circuitbreaker_in_state", "circuitbreaker_state", "circuitbreaker_transitions_total"))
	problems, err := testutil.CollectAndLint(c)
	require.NoError(t, err)
	assert.Empty(t, problems, "metric names follow Prometheus conventions")
}

// onlyTransitions narrows the collector to the transitions counter, for
// testutil.ToFloat64.
type onlyTransitions struct{ c *Collector }

func (o onlyTransitions) Describe(ch chan<- *prometheus.Desc) { ch <- transDesc }
func (o onlyTransitions) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 1024)
	o.c.Collect(all)
	close(all)
	for m := range all {
		if m.Desc() == transDesc {
			ch <- m
		}
	}
}

func TestClosedBreakersDisappear(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e, c := setup(t)
		b := e.Breaker("gone")
		b.Trip()
		synctest.Wait()
		require.Equal(t, 1.0, testutil.ToFloat64(onlyTransitions{c}))
		require.NoError(t, b.Close())
		assert.Equal(t, 0, testutil.CollectAndCount(c, "circuitbreaker_state", "circuitbreaker_transitions_total"))
	})
}

func TestScrapeOverHTTP(t *testing.T) {
	e, c := setup(t)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	for i := range 3 {
		require.NoError(t, e.Breaker(fmt.Sprintf("host-%d", i)).Call(func() error { return nil }))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err, "the exposition parses")
	calls := families["circuitbreaker_calls_total"]
	require.NotNil(t, calls)
	successes := 0.0
	for _, m := range calls.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outcome" && l.GetValue() == "success" {
				successes += m.GetCounter().GetValue()
			}
		}
	}
	assert.Equal(t, 3.0, successes)
	assert.Len(t, families["circuitbreaker_state"].GetMetric(), 3)
}

// BenchmarkScrape10k measures one scrape of an engine with 10,000 breakers.
func BenchmarkScrape10k(b *testing.B) {
	e, err := engine.New(engine.Config{})
	require.NoError(b, err)
	defer e.Close()
	for i := range 10_000 {
		e.Breaker(fmt.Sprintf("upstream-%d", i))
	}
	c := New(e)
	defer c.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// A collector closed while still registered exports nothing, and a scrape
// neither panics nor blocks.
func TestCollectAfterClose(t *testing.T) {
	e, err := engine.New(engine.Config{})
	require.NoError(t, err)
	defer e.Close()
	e.Breaker("api")
	c := New(e)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	assert.Zero(t, testutil.CollectAndCount(c))
}
