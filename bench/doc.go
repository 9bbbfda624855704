// Package bench compares this project's breaker with its peers
// (sony/gobreaker, failsafe-go, eapache/go-resiliency, cep21/circuit,
// afex/hystrix-go, rubyist/circuitbreaker) side by side in one run. It holds only
// benchmarks, in peers_test.go; start with bench/run.sh, which runs them in
// interleaved passes and writes docs/benchmarks.md through the benchdoc
// command (bench/cmd/benchdoc). It is a module of its own, so the peers
// never become dependencies of the library.
//
//	go test -run '^$' -bench . ./bench   # one pass, from the repository root
//	bench/run.sh                          # regenerate docs/benchmarks.md
//	bench/icount.sh ./engine 'CallClosed$' # instructions per op (valgrind)
//
// Wall time on a shared two-core machine drifts by tens of percent between
// runs; icount.sh counts the instructions one operation executes instead,
// which does not drift, to tell whether a change to a serial path helped.
package bench
