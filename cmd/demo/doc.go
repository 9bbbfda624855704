// Command demo shows circuit breakers at work on a flaky upstream.
//
// By default it simulates a few minutes of traffic on a mock clock in about
// a second, deterministically for a given --seed, and prints a timeline,
// every transition, and a summary set against the same run without a
// breaker. --real runs the story on the wall clock against an HTTP server
// on 127.0.0.1. --svg and --json write the run as a picture and as JSON
// lines.
//
//	go run ./cmd/demo
//	go run ./cmd/demo --scenario slow --svg slow.svg
//	go run ./cmd/demo --real --duration 10s
package main
