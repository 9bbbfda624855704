package prometheus_test

import (
	"log"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nodus/circuitbreaker/engine"
	cbprom "github.com/nodus/circuitbreaker/engine/prometheus"
)

// An HTTP server exposing every breaker of an engine at /metrics.
func Example() {
	e, err := engine.New(engine.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	collector := cbprom.New(e)
	defer collector.Close()
	registry := prometheus.NewRegistry()
	registry.MustRegister(collector)

	http.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	// log.Fatal(http.ListenAndServe("127.0.0.1:9090", nil))
}
