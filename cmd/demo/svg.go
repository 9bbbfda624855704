package main

import (
	"fmt"
	"html"
	"io"
	"strings"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

var svgColor = map[engine.State]string{engine.Closed: "#3fb950", engine.HalfOpen: "#d29922", engine.Open: "#f85149"}

// writeSVG draws the run: the upstream's error rate and the traffic that
// reached it as lines, each breaker's states as a colored band, and every
// transition as a tick with its reason on hover.
func writeSVG(w io.Writer, r *result) error {
	const (
		left, right, top = 90.0, 20.0, 40.0
		width            = 960.0
		chartH           = 150.0
		bandH, gap       = 16.0, 4.0
	)
	plotW := width - left - right
	n := len(r.cells)
	cellW := plotW / float64(n)
	bandsTop := top + chartH + 30
	height := bandsTop + float64(len(r.names))*(bandH+gap) + 50
	x := func(t time.Time) float64 {
		return left + plotW*float64(t.Sub(r.start))/float64(r.end.Sub(r.start))
	}

	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(fmt.Sprintf("circuitbreaker demo: %s (seed %d)", r.sc.name, r.opts.seed)))

	// Chart frame and axes.
	p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#d0d7de"/>`+"\n", left, top, plotW, chartH)
	p(`<text x="%.1f" y="%.1f" text-anchor="end">100%%</text>`+"\n", left-6, top+10)
	p(`<text x="%.1f" y="%.1f" text-anchor="end">0</text>`+"\n", left-6, top+chartH)
	peak := 1
	for _, c := range r.cells {
		peak = max(peak, c.attempted)
	}
	line := func(color, name string, v func(tally) float64) {
		var pts []string
		for i, c := range r.cells {
			y := top + chartH*(1-v(c))
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", left+cellW*(float64(i)+0.5), y))
		}
		p(`<polyline fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`+"\n", color, strings.Join(pts, " "), name)
	}
	line("#f85149", "upstream error rate", r.errRate)
	line("#8c959f", "calls attempted (relative)", func(c tally) float64 { return float64(c.attempted) / float64(peak) })
	line("#0969da", "calls that reached the upstream (relative)", func(c tally) float64 { return float64(c.reached) / float64(peak) })
	legend := []struct{ color, text string }{{"#f85149", "upstream error rate"}, {"#8c959f", "calls attempted"}, {"#0969da", "calls that reached the upstream"}}
	for i, l := range legend {
		lx := left + 10 + float64(i)*230
		p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", lx, top+chartH+18, lx+18, top+chartH+18, l.color)
		p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+24, top+chartH+22, l.text)
	}

	// One band per breaker.
	for i, name := range r.names {
		y := bandsTop + float64(i)*(bandH+gap)
		p(`<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+bandH-4, html.EscapeString(name))
		for c, s := range r.states[i] {
			p(`<rect x="%.2f" y="%.1f" width="%.2f" height="%.1f" fill="%s"/>`+"\n", left+cellW*float64(c), y, cellW+0.3, bandH, svgColor[s])
		}
		for _, t := range r.transitions {
			if t.Name != name {
				continue
			}
			tx := x(t.At)
			p(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#1f2328" stroke-width="1"><title>%s</title></line>`+"\n",
				tx, y-2, tx, y+bandH+2, html.EscapeString(fmt.Sprintf("%s %s: %s → %s, %s", fmtClock(t.At.Sub(r.start)), name, t.From, t.To, t.Reason)))
		}
	}

	// Time axis and state legend.
	ay := bandsTop + float64(len(r.names))*(bandH+gap) + 14
	for q := 0; q <= 4; q++ {
		t := r.start.Add(r.end.Sub(r.start) * time.Duration(q) / 4)
		p(`<text x="%.1f" y="%.1f" text-anchor="middle" fill="#57606a">%s</text>`+"\n", x(t), ay, fmtDur(t.Sub(r.start)))
	}
	for i, s := range []engine.State{engine.Closed, engine.HalfOpen, engine.Open} {
		lx := left + float64(i)*110
		p(`<rect x="%.1f" y="%.1f" width="14" height="10" fill="%s"/>`+"\n", lx, ay+12, svgColor[s])
		p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+20, ay+21, s)
	}
	p("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
