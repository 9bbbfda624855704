// Command demo shows circuit breakers at work on a flaky upstream.
//
// Usage:
//
//	demo [flags]
//
// By default it simulates three minutes of traffic on a mock clock in about
// a second, deterministically for a given --seed, and prints a timeline,
// every transition, and a summary set against the same run without a
// breaker. --real runs the story on the wall clock against an HTTP server
// on 127.0.0.1. --svg writes the timeline as a picture, and --json writes
// the transitions as JSON lines.
//
//	go run ./cmd/demo
//	go run ./cmd/demo --scenario slow --svg slow.svg
//	go run ./cmd/demo --real --duration 10s
//
// # Scenarios
//
// --scenario picks the story:
//
//	outage    an upstream that goes down, limps back, and recovers (the default)
//	flapping  an upstream that keeps failing and recovering
//	slow      latency climbs long before errors; the slow-call policy trips first
//	many      a gateway with one breaker per upstream host; a few hosts fail
//	llm       two LLM providers behind llm.Fallback; the primary rate-limits
//	          with Retry-After (mock clock only)
//
// # Flags
//
// The traffic: --duration, --rps, --clients (with --real) and --seed. The
// breaker's policy: --threshold, --recovery, --failure-rate, --window and
// --probes, checked as an engine.Config would be. The output: --width,
// --no-color (color is used only on a terminal, and never with NO_COLOR
// set), --svg FILE and --json FILE. demo --help lists every flag with its
// default.
//
// The exit status is 0 on success, 2 for bad flags, and 1 for any other
// error.
package main
