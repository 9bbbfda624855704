// Package bench compares this project's breaker with its peers, side by
// side in one run. It holds only benchmarks; see docs/benchmarks.md for the
// latest numbers and run.sh to regenerate them.
package bench
