// Command benchdoc turns a raw run of the peer benchmarks into
// docs/benchmarks.md: medians per subject, ratios against sony/gobreaker,
// the targets with a verdict each, and benchstat's table verbatim.
//
// Usage:
//
//	benchdoc -raw FILE -benchstat FILE [-engine FILE] [-machine TEXT] [-command TEXT] > docs/benchmarks.md
//
// -raw is the output of go test -bench (any number of passes), -benchstat
// is benchstat's output for the same file, -engine the output of the
// engine package's own benchmarks (one breaker under a failure storm, many
// breakers in one Engine, the cost of each policy), and -machine and
// -command are quoted in the document's header. The document goes to
// standard output; an unreadable file exits with status 1.
//
// It is run by bench/run.sh; the numbers in the document come only from
// the run it is given.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

type sample struct {
	ns, bytes, allocs []float64
	pass              []run // where each sample came from
}

// run places a sample: the k-th of its subject in the pass-th go test
// run of the raw output. run.sh makes one sample per subject per pass.
type run struct{ pass, k int }

func main() {
	rawPath := flag.String("raw", "", "raw `go test -bench` output")
	statPath := flag.String("benchstat", "", "benchstat output for the same run")
	machine := flag.String("machine", "", "a line describing the machine")
	command := flag.String("command", "", "the command that produced the run")
	enginePath := flag.String("engine", "", "raw output of the engine package's benchmarks")
	flag.Parse()
	raw, err := os.Open(*rawPath)
	check(err)
	results, order, meta := parse(raw)
	stat, err := os.ReadFile(*statPath)
	check(err)
	var eng metrics
	if *enginePath != "" {
		f, err := os.Open(*enginePath)
		check(err)
		eng = parseMetrics(f)
	}
	write(os.Stdout, results, order, meta, *machine, *command, string(stat), eng)
}

// metrics holds every value a benchmark reported, by benchmark name
// (without the -GOMAXPROCS suffix) and unit.
type metrics map[string]map[string][]float64

var metricLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

func parseMetrics(r io.Reader) metrics {
	ms := metrics{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			if ms[m[1]] == nil {
				ms[m[1]] = map[string][]float64{}
			}
			ms[m[1]][f[i+1]] = append(ms[m[1]][f[i+1]], num(f[i]))
		}
	}
	return ms
}

// get returns the median of a benchmark's unit, and whether there was one.
func (ms metrics) get(name, unit string) (float64, bool) {
	v := ms[name][unit]
	return median(v), len(v) > 0
}

// writeEngine writes the sections of the engine package's benchmarks.
func writeEngine(p func(string, ...any), ms metrics) {
	if len(ms) == 0 {
		return
	}
	p("## Many breakers in one Engine\n\n")
	p("`BenchmarkEngineIdle` creates 100,000 breakers in one Engine and leaves them idle; `BenchmarkEngineLookup` looks names up among 100,000. Target: at most 1 KiB and no goroutine per idle breaker.\n\n")
	p("| memory per idle breaker | goroutines per idle breaker | creation, per breaker | lookup | met |\n|---|---|---|---|---|\n")
	mem, ok := ms.get("EngineIdle", "B/breaker")
	g, _ := ms.get("EngineIdle", "goroutines/breaker")
	mk, _ := ms.get("EngineIdle", "ns/op")
	look, _ := ms.get("EngineLookup", "ns/op")
	if ok {
		g = math.Round(g*100) / 100 // as printed, so that the verdict agrees with the table
		p("| %.0f B | %.2f | %.0f ns | %.0f ns | %s |\n\n", mem, g, mk, look, yes(mem <= 1024 && g == 0))
	} else {
		p("| n/a | n/a | n/a | n/a | no: BenchmarkEngineIdle did not run |\n\n")
	}

	p("## One breaker under a failure storm\n\n")
	p("`BenchmarkFailureStorm`: calls through one breaker from many goroutines, the circuit kept closed. Under *consecutive* every call fails; under *rate* every other call fails under a 90%% failure-rate threshold over a count window, and under *time-rate* over a time window of ten 1 s buckets: all three tally their failures without waiting. Under *should-trip* every other call fails and every failure waits for the breaker's goroutine, as `ShouldTrip` must see each one: that row is what one breaker's goroutine absorbs. Latency is per call, as its caller sees it. The few calls that do wait under a rate policy (under a count window when the failures' records run out, under a time window at each new bucket) wait for the breaker's goroutine to get a processor, which with every core busy can take milliseconds: that is the p99.9.\n\n")
	p("| policy | senders | calls/s | p50 | p99 | p99.9 |\n|---|---:|---:|---:|---:|---:|\n")
	for _, pol := range []string{"consecutive", "rate", "time-rate", "should-trip"} {
		for _, n := range []string{"2", "16", "64"} {
			name := "FailureStorm/" + pol + "/senders=" + n
			cps, ok := ms.get(name, "calls/s")
			if !ok {
				continue
			}
			p50, _ := ms.get(name, "p50-ns")
			p99, _ := ms.get(name, "p99-ns")
			p999, _ := ms.get(name, "p999-ns")
			p("| %s | %s | %.2fM | %s | %s | %s |\n", pol, n, cps/1e6, dur(p50), dur(p99), dur(p999))
		}
	}
	p("\n## What each policy costs\n\n")
	p("`BenchmarkPoliciesParallel`: closed-state calls through one breaker, 8 goroutines per core, under each kind of policy: all succeeding, and one in ten failing with the circuit staying closed. A failure that cannot open the circuit is counted without waiting for the breaker's goroutine (under a count window, with its place among the successes, which the window's order needs), but under `ShouldTrip`, which must see every failure. Under slow calls every call reads the clock twice, and under a time window a success reads it once.\n\n")
	p("| policy | all succeed (ns/op) | one in 10 fails (ns/op) |\n|---|---:|---:|\n")
	for _, pol := range []string{"consecutive", "count-window", "time-window", "slow-calls", "should-trip"} {
		v1, ok1 := ms.get("PoliciesParallel/"+pol+"/all-succeed", "ns/op")
		v2, ok2 := ms.get("PoliciesParallel/"+pol+"/one-in-10-fails", "ns/op")
		if ok1 || ok2 {
			p("| %s | %s | %s |\n", pol, figure(v1, ok1), figure(v2, ok2))
		}
	}
	p("\n")
}

// figure prints a figure to one decimal, or n/a if it is missing.
func figure(v float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", v)
}

// dur prints nanoseconds as time.Duration does, to about three digits.
func dur(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Millisecond:
		d = d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		d = d.Round(10 * time.Nanosecond)
	}
	return d.String()
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchdoc:", err)
		os.Exit(1)
	}
}

var line = regexp.MustCompile(`^Benchmark(\w+)/(\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op\s+([\d.]+) allocs/op)?`)

func parse(r io.Reader) (map[string]map[string]*sample, []string, map[string]string) {
	results := map[string]map[string]*sample{}
	var order []string
	meta := map[string]string{}
	pass := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		t := sc.Text()
		if strings.HasPrefix(t, "goos: ") {
			pass++ // each go test run prints it first
		}
		for _, k := range []string{"goos", "goarch", "cpu"} {
			if v, ok := strings.CutPrefix(t, k+": "); ok {
				meta[k] = v
			}
		}
		m := line.FindStringSubmatch(t)
		if m == nil {
			continue
		}
		scenario, subject := m[1], m[2]
		if results[scenario] == nil {
			results[scenario] = map[string]*sample{}
			order = append(order, scenario)
		}
		s := results[scenario][subject]
		if s == nil {
			s = &sample{}
			results[scenario][subject] = s
		}
		s.ns = append(s.ns, num(m[4]))
		s.bytes = append(s.bytes, num(m[5]))
		s.allocs = append(s.allocs, num(m[6]))
		k := 0
		for _, r := range s.pass {
			if r.pass == pass {
				k++
			}
		}
		s.pass = append(s.pass, run{pass, k})
	}
	return results, order, meta
}

func num(s string) float64 {
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

const reference = "gobreaker-Execute"

var titles = map[string]string{
	"ClosedSerial":       "Closed, success, 1 goroutine",
	"ClosedParallel1":    "Closed, success, parallel (1 goroutine per core)",
	"ClosedParallel8":    "Closed, success, parallel (8 goroutines per core)",
	"OpenSerial":         "Open, rejected, 1 goroutine",
	"OpenParallel8":      "Open, rejected, parallel (8 goroutines per core)",
	"Failures10Pct8":     "10% failures, stays closed, parallel (8 goroutines per core)",
	"HalfOpenParallel8":  "Half-open, probe slot taken, rejected, parallel (8 goroutines per core)",
	"RateFailures10Pct8": "10% failures under a failure-rate policy, stays closed, parallel (8 goroutines per core)",
}

// notes say more of a scenario, under its title.
var notes = map[string]string{
	"RateFailures10Pct8": "Every subject with a rate policy trips at 50% failures once its window holds 100 calls: this project and failsafe-go over the last 100 calls, hystrix-go, cep21 and rubyist over a rolling 10 s, gobreaker over every call since its last change of state (it has no window). eapache has no rate policy.",
}

// ours are the synchronous entry points the targets hold for.
var ours = []string{"circuitbreaker-Call", "circuitbreaker-Do", "circuitbreaker-Execute", "circuitbreaker-AdmitReport"}

type target struct {
	scenario string
	text     string
	ok       func(xRef, xEapache float64) bool // the worst of ours over gobreaker's and eapache's
	limit    string
}

var targets = []target{
	{"ClosedSerial", "closed, success, 1 goroutine", func(r, e float64) bool { return r <= 0.15 && e <= 3 }, "≤ 0.15 × gobreaker and ≤ 3 × eapache"},
	{"ClosedParallel8", "closed, success, parallel", func(r, e float64) bool { return r <= 0.10 }, "≤ 0.10 × gobreaker"},
	{"OpenSerial", "open, rejected, serial", func(r, e float64) bool { return r <= 0.05 && e <= 2 }, "≤ 0.05 × gobreaker and ≤ 2 × eapache"},
	{"OpenParallel8", "open, rejected, parallel", func(r, e float64) bool { return r <= 0.05 && e <= 2 }, "≤ 0.05 × gobreaker and ≤ 2 × eapache"},
	{"Failures10Pct8", "10% failures, parallel", func(r, e float64) bool { return r <= 0.30 }, "≤ 0.30 × gobreaker"},
}

func write(w io.Writer, results map[string]map[string]*sample, order []string, meta map[string]string, machine, command, stat string, eng metrics) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Benchmarks\n\n")
	p("Generated by `bench/run.sh` on %s. Do not edit by hand: run the script again.\n\n", time.Now().UTC().Format("2006-01-02"))
	p("- Machine: %s; %s/%s; CPU: %s\n", machine, meta["goos"], meta["goarch"], meta["cpu"])
	p("- Command: `%s`\n", command)
	p("- Every figure is the median of the run's samples; passes were interleaved so drift hits every library alike. Compare ratios within this page, not absolute numbers across machines.\n")
	p("- Subjects: this project's entry points (`circuitbreaker-*`), sony/gobreaker v2 (`Execute` and two-step), failsafe-go (`Run` and `TryAcquirePermit`/`Record`), eapache/go-resiliency (minimal: no windows, no half-open limit, no events), cep21/circuit v4.1.0, afex/hystrix-go, rubyist/circuitbreaker, and two baselines: a direct call and an atomic load + add around it.\n\n")

	p("## Targets\n\n")
	p("Worst of `Call`, `Do`, `Execute` and `Admit`+`Report`, against `gobreaker-Execute` and `eapache`. The ratios are paired: each entry point over the peer in the same pass, measured seconds apart, then the median over passes, and the worst entry point; pairing keeps a burst of noise in one pass from tipping a verdict. Each column is its own worst: the ns/op column is the highest median of ours, and the two ratios need not come from the same entry point.\n\n")
	p("| scenario | target | worst of ours (ns/op) | × gobreaker | × eapache | met |\n|---|---|---|---|---|---|\n")
	for _, t := range targets {
		rs := results[t.scenario]
		if rs == nil || rs[reference] == nil || rs["eapache"] == nil {
			continue
		}
		worst, xRef, xEa := paired(rs)
		met := "no"
		if t.ok(xRef, xEa) {
			met = "yes"
		}
		p("| %s | %s | %.1f | %.3f | %.2f | %s |\n", t.text, t.limit, worst, xRef, xEa, met)
	}
	allocs := 0.0
	for _, sc := range order {
		for _, o := range ours {
			if s := results[sc][o]; s != nil {
				allocs = max(allocs, median(s.allocs))
			}
		}
	}
	p("| allocations, sync entry points, every scenario | 0 allocs/op | %.0f | | | %s |\n", allocs, yes(allocs == 0))
	for _, name := range []string{"Async", "Go"} {
		a, seen := 0.0, false
		for _, sc := range order {
			if s := results[sc]["circuitbreaker-"+name]; s != nil {
				a, seen = max(a, median(s.allocs)), true
			}
		}
		if seen {
			p("| %s, every scenario | ≤ 2 allocs/op | %.0f | | | %s |\n", name, a, yes(a <= 2))
		}
	}
	p("\nThe work every benchmark runs is a function made once, as a named function or a method value made at start-up would be, so the Async and Go rows count the library's allocations alone; a closure that captures variables adds one, the caller's, since it escapes to the goroutine. `Async` makes its result channel, two objects (a channel whose element holds pointers gets its buffer apart). `Go` sends to the caller's channel and allocates nothing: its goroutine takes the call from a pooled launch.\n")
	if rs := results["OpenSerial"]; rs != nil && rs[reference] != nil && rs["baseline-direct"] != nil && rs["baseline-atomic"] != nil {
		ref := median(rs[reference].ns)
		p("\nThe floor for a rejection, one goroutine: the direct call that wraps every subject is %.3f × gobreaker on its own, and with an atomic load, what `baseline-atomic` does when open, %.3f ×. A rejection that is counted also pays an atomic add.\n", median(rs["baseline-direct"].ns)/ref, median(rs["baseline-atomic"].ns)/ref)
	}
	p("\n")

	for _, sc := range order {
		rs := results[sc]
		title := titles[sc]
		if title == "" {
			title = sc
		}
		p("## %s\n\n", title)
		if n := notes[sc]; n != "" {
			p("%s\n\n", n)
		}
		ref := 0.0
		if r := rs[reference]; r != nil {
			ref = median(r.ns)
		}
		p("| subject | ns/op | × gobreaker | B/op | allocs/op |\n|---|---:|---:|---:|---:|\n")
		names := make([]string, 0, len(rs))
		for n := range rs {
			names = append(names, n)
		}
		slices.SortFunc(names, func(a, b string) int {
			return int(median(rs[a].ns)*1000) - int(median(rs[b].ns)*1000)
		})
		for _, n := range names {
			s := rs[n]
			ratio := "—"
			if ref > 0 {
				ratio = fmt.Sprintf("%.3f", median(s.ns)/ref)
			}
			p("| %s | %.1f | %s | %.0f | %.0f |\n", n, median(s.ns), ratio, median(s.bytes), median(s.allocs))
		}
		p("\n")
	}
	writeEngine(p, eng)
	p("## benchstat\n\n```\n%s```\n", stat)
}

// paired returns, for a scenario, the worst of our entry points: by the
// median of its samples, and by the median over passes of its ratio to
// gobreaker and to eapache in the same pass. A pass missing either sample
// is left out of that ratio.
func paired(rs map[string]*sample) (worst, xRef, xEa float64) {
	ref, ea := byPass(rs[reference]), byPass(rs["eapache"])
	for _, o := range ours {
		s := rs[o]
		if s == nil {
			continue
		}
		var rr, re []float64
		for i, ns := range s.ns {
			if r, ok := ref[s.pass[i]]; ok {
				rr = append(rr, ns/r)
			}
			if e, ok := ea[s.pass[i]]; ok {
				re = append(re, ns/e)
			}
		}
		worst, xRef, xEa = max(worst, median(s.ns)), max(xRef, median(rr)), max(xEa, median(re))
	}
	return worst, xRef, xEa
}

// byPass returns a subject's ns/op by where they came from.
func byPass(s *sample) map[run]float64 {
	m := make(map[run]float64, len(s.ns))
	for i, ns := range s.ns {
		m[s.pass[i]] = ns
	}
	return m
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
