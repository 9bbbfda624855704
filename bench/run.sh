#!/usr/bin/env bash
# Regenerates docs/benchmarks.md from a fresh run of the peer benchmarks.
# COUNT passes (default 6) are interleaved: each pass runs every benchmark
# once, so drift on a shared machine hits every library alike.
set -euo pipefail
cd "$(dirname "$0")"
count=${COUNT:-6}
benchtime=${BENCHTIME:-200ms}
benchstat=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmd="go test -run '^\$' -bench . -benchtime $benchtime -count 1 -cpu $(nproc) ./bench"
for i in $(seq "$count"); do
  echo "pass $i/$count" >&2
  go test -run '^$' -bench . -benchtime "$benchtime" -count 1 -cpu "$(nproc)" . >>"$work/raw.txt"
done
echo "engine benchmarks" >&2
(
  cd ..
  go test -run '^$' -bench 'EngineIdle' -benchtime 100000x -count 3 -cpu "$(nproc)" ./engine/
  go test -run '^$' -bench 'EngineLookup|FailureStorm|PoliciesParallel' -benchtime "$benchtime" -count 3 -cpu "$(nproc)" ./engine/
) >"$work/engine.txt"
go run "$benchstat" "$work/raw.txt" >"$work/stat.txt"
machine="$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3-)"
go run ./cmd/benchdoc -raw "$work/raw.txt" -benchstat "$work/stat.txt" -engine "$work/engine.txt" \
  -machine "$machine" -command "$cmd, $count interleaved passes" >../docs/benchmarks.md
echo "wrote docs/benchmarks.md" >&2
