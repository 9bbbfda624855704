package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

// runReal tells the scenario on the wall clock: an HTTP server on
// 127.0.0.1 plays the upstreams' health timeline, --clients goroutines call
// it through the breakers, and transitions are printed as they happen.
func runReal(ctx context.Context, o options, sc scenario, stdout, stderr io.Writer) (*result, error) {
	start := time.Now()
	frac := func() float64 { return float64(time.Since(start)) / float64(o.duration) }
	// A failing call costs its client this long: the phases' two-second
	// timeout, scaled to a run of seconds.
	clientTimeout := max(o.duration/24, 50*time.Millisecond)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name := strings.TrimPrefix(req.URL.Path, "/")
		i := indexOf(sc.upstreams, name)
		if i < 0 {
			http.NotFound(w, req)
			return
		}
		p := sc.upstreams[i].at(frac())
		lat := time.Duration(float64(p.latency) * float64(clientTimeout) / float64(timeout))
		select {
		case <-time.After(lat):
		case <-req.Context().Done():
			return
		}
		if rand.Float64() < p.errRate {
			http.Error(w, p.name, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	client := srv.Client()

	cfg := o.config()
	if sc.policy != nil {
		sc.policy(&cfg)
		if cfg.SlowCallThreshold > 0 {
			cfg.SlowCallThreshold = clientTimeout / 2
		}
	}
	cfg.SubscriberBuffer = 1 << 12
	e, err := engine.New(cfg)
	if err != nil {
		return nil, err
	}
	defer e.Close()

	r := &result{opts: o, sc: sc, start: start, end: start.Add(o.duration), cells: make([]tally, o.width)}
	breakers := make([]*engine.Breaker, len(sc.upstreams))
	for i, u := range sc.upstreams {
		breakers[i] = e.Breaker(u.name)
		r.names = append(r.names, u.name)
		r.states = append(r.states, make([]engine.State, o.width))
	}

	runCtx, cancel := context.WithDeadline(ctx, r.end)
	defer cancel()

	// The live view: transitions as they happen.
	stream := e.Subscribe(runCtx)
	var live sync.WaitGroup
	live.Go(func() {
		for t := range stream {
			r.transitions = append(r.transitions, t)
			fmt.Fprintf(stdout, "  %s  %s  %s → %s  %s\n", fmtClock(time.Since(start)), t.Name, t.From, r.paint(stateColor[t.To], t.To.String()), t.Reason)
		}
	})
	header(stdout, r)
	fmt.Fprintf(stdout, "Calling %s; transitions as they happen:\n", srv.URL)

	var calls, rejected atomic.Int64
	per := make([][]tally, o.clients) // each client's cells, merged at the end
	var clients sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(o.clients) / (o.rps * float64(len(sc.upstreams))))
	for c := range o.clients {
		per[c] = make([]tally, o.width)
		clients.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := c; ; n++ {
				select {
				case <-runCtx.Done():
					return
				case <-tick.C:
				}
				i := n % len(sc.upstreams)
				t := callOnce(runCtx, client, srv.URL+"/"+sc.upstreams[i].name, breakers[i], clientTimeout)
				if runCtx.Err() != nil && t.reached == 1 && t.failed == 1 {
					return // cut short by the end of the run, not by the upstream
				}
				calls.Add(1)
				rejected.Add(int64(t.rejected))
				per[c][r.cellOf(time.Now())].add(t)
			}
		})
	}

	// Sample the breakers' states into the timeline, and show progress.
	sample := time.NewTicker(max(o.duration/time.Duration(o.width)/2, time.Millisecond))
	defer sample.Stop()
	lastProgress := time.Now()
	for runCtx.Err() == nil {
		select {
		case <-runCtx.Done():
		case now := <-sample.C:
			c := r.cellOf(now)
			for i, b := range breakers {
				r.states[i][c] = max(r.states[i][c], b.State())
			}
			if o.duration > 2*time.Second && now.Sub(lastProgress) >= 500*time.Millisecond {
				lastProgress = now
				fmt.Fprintf(stderr, "\r%s / %s  %d calls, %d rejected fast ", fmtDur(now.Sub(start).Round(100*time.Millisecond)), fmtDur(o.duration), calls.Load(), rejected.Load())
			}
		}
	}
	if o.duration > 2*time.Second {
		fmt.Fprintln(stderr)
	}
	clients.Wait()
	_ = e.Close() // ends the stream
	live.Wait()
	fmt.Fprintln(stdout)
	for _, cells := range per {
		for i, t := range cells {
			r.cells[i].add(t)
			r.total.add(t)
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, ctx.Err()
	}
	return r, nil
}

// callOnce makes one HTTP call through the breaker and says how it went.
// Without a breaker the call would have gone out anyway; a rejected call is
// counted as one that would have failed, since the circuit was open.
func callOnce(ctx context.Context, client *http.Client, url string, b *engine.Breaker, timeout time.Duration) tally {
	t := tally{attempted: 1}
	began := time.Now()
	err := b.Do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode >= 500 {
			return fmt.Errorf("upstream: %s", resp.Status)
		}
		return nil
	})
	took := time.Since(began)
	switch {
	case errors.Is(err, engine.ErrOpen):
		t.rejected, t.plainFailed, t.plainLatency = 1, 1, timeout
	case err != nil:
		t.reached, t.failed, t.plainFailed = 1, 1, 1
		t.latency, t.plainLatency = took, took
	default:
		t.reached, t.latency, t.plainLatency = 1, took, took
	}
	return t
}

func indexOf(us []upstream, name string) int {
	for i, u := range us {
		if u.name == name {
			return i
		}
	}
	return -1
}
