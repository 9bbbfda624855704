package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

const (
	ansiReset  = "\x1b[0m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiDim    = "\x1b[2m"
	ansiBold   = "\x1b[1m"
)

// paint wraps s in an ANSI color when color is on.
func (r *result) paint(color, s string) string {
	if !r.opts.color {
		return s
	}
	return color + s + ansiReset
}

var stateGlyph = map[engine.State]string{engine.Closed: "─", engine.HalfOpen: "▒", engine.Open: "█"}
var stateColor = map[engine.State]string{engine.Closed: ansiGreen, engine.HalfOpen: ansiYellow, engine.Open: ansiRed}

// header says what is about to run.
func header(w io.Writer, r *result) {
	o := r.opts
	mode := "simulated on a mock clock"
	if o.real {
		mode = "on the wall clock, against an HTTP server on 127.0.0.1"
	}
	fmt.Fprintf(w, "%s\n", r.paint(ansiBold, fmt.Sprintf("circuitbreaker demo: %q, %s", r.sc.name, r.sc.about)))
	fmt.Fprintf(w, "%s of traffic %s, %g calls/s to each of %d upstream(s), seed %d.\n", fmtDur(o.duration), mode, o.rps, len(r.sc.upstreams), o.seed)
	fmt.Fprintf(w, "Policy: %s.\n\n", policy(r))
}

// report writes the rest of the story: the timeline, the transitions, and
// the summary. (A real run has printed its header and its transitions as
// they happened.)
func report(w io.Writer, r *result) {
	o := r.opts
	if !o.real {
		header(w, r)
	}
	timeline(w, r)
	if o.real {
		fmt.Fprintf(w, "%d transitions, shown above as they happened.\n\n", len(r.transitions))
	} else {
		transitions(w, r)
	}
	summary(w, r)
}

func policy(r *result) string {
	c := r.opts.config()
	if r.sc.policy != nil {
		r.sc.policy(&c)
	}
	var parts []string
	if c.FailureThreshold > 0 || (c.FailureRateThreshold == 0 && c.SlowCallThreshold == 0) {
		n := c.FailureThreshold
		if n == 0 {
			n = 5
		}
		parts = append(parts, fmt.Sprintf("open after %d consecutive failures", n))
	}
	if c.FailureRateThreshold > 0 {
		parts = append(parts, fmt.Sprintf("or when %.0f%% of the window failed", c.FailureRateThreshold*100))
	}
	if c.SlowCallThreshold > 0 {
		parts = append(parts, fmt.Sprintf("or when %.0f%% of the last %d calls took %s or more", c.SlowCallRateThreshold*100, c.WindowSize, fmtDur(c.SlowCallThreshold)))
	}
	parts = append(parts, fmt.Sprintf("stay open %s, then let %d probe(s) through", fmtDur(c.RecoveryTimeout), max(c.HalfOpenProbes, 1)))
	return strings.Join(parts, "; ")
}

// timeline draws the upstream's error rate and one row per breaker, one
// cell per slice of time.
func timeline(w io.Writer, r *result) {
	label := 8
	for _, n := range r.names {
		label = max(label, len(n))
	}
	cells := len(r.cells)
	// The axis: a tick label every quarter.
	axis := []rune(strings.Repeat(" ", cells+8))
	for q := 0; q <= 4; q++ {
		c := q * (cells - 1) / 4
		s := fmtDur(r.end.Sub(r.start) * time.Duration(q) / 4)
		if q == 4 {
			c -= len(s) - 1
		}
		copy(axis[c:], []rune(s))
	}
	fmt.Fprintf(w, "%-*s  %s\n", label, "", strings.TrimRight(string(axis), " "))

	var up strings.Builder
	levels := []rune("·▁▂▃▄▅▆▇█")
	for _, c := range r.cells {
		rate := r.errRate(c)
		g := string(levels[int(rate*float64(len(levels)-1)+0.5)])
		switch {
		case rate >= 0.5:
			g = r.paint(ansiRed, g)
		case rate >= 0.1:
			g = r.paint(ansiYellow, g)
		}
		up.WriteString(g)
	}
	fmt.Fprintf(w, "%-*s  %s  upstream error rate\n", label, "upstream", up.String())
	for i, n := range r.names {
		var row strings.Builder
		for _, s := range r.states[i] {
			row.WriteString(r.paint(stateColor[s], stateGlyph[s]))
		}
		fmt.Fprintf(w, "%-*s  %s\n", label, n, row.String())
	}
	fmt.Fprintf(w, "%-*s  %s closed  %s half-open  %s open   (each cell is %s)\n\n", label, "",
		r.paint(ansiGreen, stateGlyph[engine.Closed]), r.paint(ansiYellow, stateGlyph[engine.HalfOpen]),
		r.paint(ansiRed, stateGlyph[engine.Open]), fmtDur(r.end.Sub(r.start)/time.Duration(cells)))
}

// transitions lists every transition the engine's stream delivered.
func transitions(w io.Writer, r *result) {
	fmt.Fprintf(w, "%s\n", r.paint(ansiBold, fmt.Sprintf("Transitions (%d, from the engine's subscription stream)", len(r.transitions))))
	if len(r.transitions) == 0 {
		fmt.Fprintln(w, "  none: the breakers stayed closed")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, t := range r.transitions {
		to := r.paint(stateColor[t.To], t.To.String())
		fmt.Fprintf(tw, "  %s\t%s\t%s → %s\t%s\t%s\n", fmtClock(t.At.Sub(r.start)), t.Name, t.From, to, t.Reason,
			r.paint(ansiDim, fmt.Sprintf("(%d ok, %d failed, %d rejected so far)", t.Counts.Successes, t.Counts.Failures, t.Counts.Rejected)))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}

// summary sets the run against the same traffic without a breaker.
func summary(w io.Writer, r *result) {
	t := r.total
	fmt.Fprintf(w, "%s\n", r.paint(ansiBold, "Summary"))
	row := func(name string, with, plain any) { fmt.Fprintf(w, "  %-40s %14v %10v\n", name, with, plain) }
	if r.opts.real {
		// A real run cannot replay the same traffic without breakers.
		row = func(name string, with, _ any) { fmt.Fprintf(w, "  %-40s %14v\n", name, with) }
	}
	row("", "with breakers", "without")
	if r.sc.name == llmScenario.name {
		row("calls", t.attempted, t.attempted)
		row("calls that reached the primary", t.reached, t.attempted)
		row("429s and errors the primary answered", t.upFailed, t.plainFailed)
		row("calls sent straight to the secondary", t.rejected, 0)
		row("errors clients saw (after fallback)", t.failed, t.lost)
	} else {
		row("calls attempted", t.attempted, t.attempted)
		row("calls that reached the upstream", t.reached, t.attempted)
		row("calls rejected fast", t.rejected, 0)
		row("errors clients saw (failed + rejected)", t.failed+t.rejected, t.plainFailed)
	}
	row("time clients spent waiting", fmtDur(t.latency.Round(time.Second)), fmtDur(t.plainLatency.Round(time.Second)))
	if t.attempted > 0 {
		row("mean latency per call", fmtDur(t.latency/time.Duration(t.attempted)), fmtDur(t.plainLatency/time.Duration(t.attempted)))
	}

	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %-12s %10s %10s %10s %12s\n", "breaker", "closed", "half-open", "open", "transitions")
	for _, n := range r.names {
		d := r.timeIn(n)
		count := 0
		for _, tr := range r.transitions {
			if tr.Name == n {
				count++
			}
		}
		if count == 0 && len(r.names) > 6 {
			continue // a gateway's quiet hosts would only add noise
		}
		fmt.Fprintf(w, "  %-12s %10s %10s %10s %12d\n", n, fmtDur(d[engine.Closed]), fmtDur(d[engine.HalfOpen]), fmtDur(d[engine.Open]), count)
	}

	fmt.Fprintln(w)
	switch {
	case r.sc.name == llmScenario.name:
		fmt.Fprintf(w, "Retry-After opened the primary's circuit at once: %d calls went straight to the secondary instead of\n", t.rejected)
		saved, word := t.plainLatency-t.latency, "less"
		if saved < 0 {
			saved, word = -saved, "more"
		}
		fmt.Fprintf(w, "collecting a 429 first. The primary answered %d failures instead of %d; clients waited %s %s in all.\n", t.upFailed, t.plainFailed, fmtDur(saved.Round(time.Second)), word)
	case t.rejected == 0:
		fmt.Fprintln(w, "The breakers never opened: the upstream stayed healthy enough.")
	case r.opts.real:
		fmt.Fprintf(w, "The breakers kept %d of %d calls off the upstream. Run without --real to compare with the same traffic and no breakers.\n", t.rejected, t.attempted)
	default:
		fmt.Fprintf(w, "The breakers kept %d calls off the failing upstream and saved clients %s of waiting:\n", t.rejected, fmtDur((t.plainLatency - t.latency).Round(time.Second)))
		fmt.Fprintf(w, "they failed fast instead of timing out. The price: %d of the rejected calls would have succeeded.\n", t.lost)
	}
}

// errRate is the upstream's error rate in a cell: over every call drawn in
// a simulation, over the calls that reached it in a real run (where a
// rejected call's fate is unknown).
func (r *result) errRate(c tally) float64 {
	switch {
	case r.opts.real && c.reached > 0:
		return float64(c.failed) / float64(c.reached)
	case !r.opts.real && c.attempted > 0:
		return float64(c.plainFailed) / float64(c.attempted)
	}
	return 0
}

// writeJSON writes the transitions as JSON lines.
func writeJSON(w io.Writer, r *result) error {
	enc := json.NewEncoder(w)
	for _, t := range r.transitions {
		if err := enc.Encode(map[string]any{
			"at_seconds": t.At.Sub(r.start).Seconds(),
			"breaker":    t.Name,
			"from":       t.From.String(),
			"to":         t.To.String(),
			"reason":     t.Reason,
			"seq":        t.Seq,
			"successes":  t.Counts.Successes,
			"failures":   t.Counts.Failures,
			"rejected":   t.Counts.Rejected,
		}); err != nil {
			return err
		}
	}
	return nil
}

// fmtDur prints a duration briefly: 3m0s → 3m, 1.5s, 250ms.
func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d >= time.Minute:
		return (d.Round(time.Second)).String()
	case d >= time.Second:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", d.Seconds()), ".0") + "s"
	}
	return d.Round(time.Millisecond).String()
}

// fmtClock prints an offset into the run as m:ss.s.
func fmtClock(d time.Duration) string {
	return fmt.Sprintf("%d:%04.1f", int(d/time.Minute), (d % time.Minute).Seconds())
}
