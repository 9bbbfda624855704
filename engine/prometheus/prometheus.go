package prometheus

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nodus/circuitbreaker/engine"
)

const ns = "circuitbreaker"

var (
	stateDesc                        = prometheus.NewDesc(ns+"_state", "Breaker state: 0 closed, 1 half_open, 2 open.", []string{"breaker"}, nil)
	inStateDesc                      = prometheus.NewDesc(ns+"_in_state", "1 if the breaker is in this state, 0 otherwise.", []string{"breaker", "state"}, nil)
	callsDesc                        = prometheus.NewDesc(ns+"_calls_total", "Calls by outcome: success, failure, ignored (neither), rejected (not run).", []string{"breaker", "outcome"}, nil)
	slowDesc                         = prometheus.NewDesc(ns+"_slow_calls_total", "Calls that took at least the slow-call threshold.", []string{"breaker"}, nil)
	staleDesc                        = prometheus.NewDesc(ns+"_stale_reports_total", "Outcomes dropped because the breaker had changed state since the call was admitted.", []string{"breaker"}, nil)
	transDesc                        = prometheus.NewDesc(ns+"_transitions_total", "State transitions seen since the collector started.", []string{"breaker", "from", "to"}, nil)
	probesDesc                       = prometheus.NewDesc(ns+"_probes_in_flight", "Half-open probes admitted and not yet reported.", []string{"breaker"}, nil)
	missedDesc                       = prometheus.NewDesc(ns+"_stream_missed_total", "Transitions the collector's subscription lost to a full buffer.", nil, nil)
	states                           = []engine.State{engine.Closed, engine.HalfOpen, engine.Open}
	allDescs                         = []*prometheus.Desc{stateDesc, inStateDesc, callsDesc, slowDesc, staleDesc, transDesc, probesDesc, missedDesc}
	_           prometheus.Collector = (*Collector)(nil)
)

type edge struct{ breaker, from, to string }

// Collector is a [prometheus.Collector] for every breaker of an
// [engine.Engine], including ones created after it, and dropping ones that
// are closed or evicted.
type Collector struct {
	e      *engine.Engine
	cancel context.CancelFunc
	quit   <-chan struct{} // closed by Close
	done   chan struct{}
	asks   chan chan tally // to the goroutine that owns the transition counts
}

// tally is the counting goroutine's answer: a copy of what it owns.
type tally struct {
	edges  map[edge]uint64
	missed uint64
}

// New returns a collector for e. It subscribes to e's transitions on a
// goroutine of its own; Close stops it.
func New(e *engine.Engine) *Collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Collector{e: e, cancel: cancel, quit: ctx.Done(), done: make(chan struct{}), asks: make(chan chan tally)}
	stream := e.Subscribe(ctx)
	go c.count(stream)
	return c
}

// count owns the transition counts: it adds up the stream and answers
// scrapes with a copy.
func (c *Collector) count(stream <-chan engine.Transition) {
	defer close(c.done)
	t := tally{edges: map[edge]uint64{}}
	for {
		select {
		case tr, ok := <-stream:
			if !ok {
				// The engine or the collector is closing; keep answering
				// scrapes until Close.
				stream = nil
				continue
			}
			t.missed += tr.Missed
			t.edges[edge{tr.Name, tr.From.String(), tr.To.String()}]++
		case <-c.quit:
			return
		case reply := <-c.asks:
			cp := tally{edges: make(map[edge]uint64, len(t.edges)), missed: t.missed}
			for k, v := range t.edges {
				if _, live := c.e.Lookup(k.breaker); live {
					cp.edges[k] = v
				} else {
					delete(t.edges, k) // evicted or closed: stop exporting it
				}
			}
			reply <- cp
		}
	}
}

// Close stops the collector's subscription and goroutine. A Collect after
// Close exports nothing, so a collector still registered when it closes
// does no harm. Close is idempotent and always returns nil.
func (c *Collector) Close() error {
	c.cancel()
	<-c.done
	return nil
}

// Describe sends every metric's description, for [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect sends the current metrics of every breaker, for
// [prometheus.Collector].
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	reply := make(chan tally, 1)
	select {
	case c.asks <- reply:
	case <-c.done:
		return
	}
	t := <-reply
	c.e.Range(func(b *engine.Breaker) bool {
		name := b.Name()
		s := b.State()
		n := b.Counts()
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, float64(s), name)
		for _, st := range states {
			v := 0.0
			if st == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(inStateDesc, prometheus.GaugeValue, v, name, st.String())
		}
		for outcome, v := range map[string]uint64{"success": n.Successes, "failure": n.Failures, "ignored": n.Ignored, "rejected": n.Rejected} {
			ch <- prometheus.MustNewConstMetric(callsDesc, prometheus.CounterValue, float64(v), name, outcome)
		}
		ch <- prometheus.MustNewConstMetric(slowDesc, prometheus.CounterValue, float64(n.SlowCalls), name)
		ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.CounterValue, float64(n.Stale), name)
		ch <- prometheus.MustNewConstMetric(probesDesc, prometheus.GaugeValue, float64(n.ProbesInFlight), name)
		return true
	})
	for k, v := range t.edges {
		ch <- prometheus.MustNewConstMetric(transDesc, prometheus.CounterValue, float64(v), k.breaker, k.from, k.to)
	}
	ch <- prometheus.MustNewConstMetric(missedDesc, prometheus.CounterValue, float64(t.missed))
}
