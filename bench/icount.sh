#!/usr/bin/env bash
# Counts the instructions one operation of a benchmark executes, with
# valgrind's cachegrind: a deterministic figure where wall time on a shared
# machine drifts by tens of percent. It runs the benchmark at N and 2N
# iterations and divides the difference, so set-up cancels out. Serial
# paths only: it says nothing about contention.
#
#   bench/icount.sh ./engine 'CallClosed$'   # a package, and a -bench pattern that matches one benchmark
set -euo pipefail
pkg=${1:?package}
pattern=${2:?benchmark pattern}
n=${N:-200000}
command -v valgrind >/dev/null || { echo "icount: needs valgrind (apt-get install -y valgrind)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/b.test" "$pkg"
refs() {
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
    "$work/b.test" -test.run '^$' -test.bench "$pattern" -test.benchtime "${1}x" -test.cpu 1 2>&1 |
    awk '/I *refs/ { gsub(",", "", $4); print $4 }'
}
a=$(refs "$n")
b=$(refs $((2 * n)))
echo "$pattern: $(((b - a) / n)) instructions/op"
