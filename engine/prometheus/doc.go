// Package prometheus exports the breakers of an [engine.Engine] as
// Prometheus metrics. It is a module of its own, so the core never depends
// on the Prometheus client. Start with [New], and register the [Collector]
// it returns:
//
//	c := prometheus.New(e)
//	defer c.Close()
//	registry.MustRegister(c)
//
// Metrics (every one labeled breaker="<name>"):
//
//	circuitbreaker_state                       gauge: 0 closed, 1 half_open, 2 open
//	circuitbreaker_in_state{state}             gauge: 1 for the current state, 0 for the others
//	circuitbreaker_calls_total{outcome}        counter: success, failure, ignored, rejected
//	circuitbreaker_slow_calls_total            counter
//	circuitbreaker_stale_reports_total         counter: outcomes dropped as stale
//	circuitbreaker_transitions_total{from,to}  counter, since the collector started
//	circuitbreaker_probes_in_flight            gauge
//
// and, without the breaker label, circuitbreaker_stream_missed_total: the
// transitions the collector's own subscription lost to a full buffer.
//
// A scrape reads each breaker's counts through its mailbox, the way any
// caller's Counts does; it never holds up calls, which admit and reject
// from the breaker's snapshot.
package prometheus
