package main

import (
	"container/heap"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/nodus/circuitbreaker/engine"
)

var errUpstream = errors.New("upstream error")

// tally counts calls, with the breaker and in the same run without it.
type tally struct {
	attempted, reached, rejected, failed int           // with the breaker
	plainFailed                          int           // without it: every call reaches the upstream
	lost                                 int           // rejected calls that would have succeeded
	upFailed                             int           // calls the upstream answered with a failure
	latency, plainLatency                time.Duration // what clients waited, in all
}

func (t *tally) add(o tally) {
	t.attempted += o.attempted
	t.reached += o.reached
	t.rejected += o.rejected
	t.failed += o.failed
	t.plainFailed += o.plainFailed
	t.lost += o.lost
	t.upFailed += o.upFailed
	t.latency += o.latency
	t.plainLatency += o.plainLatency
}

// result is everything a run observed, for the renderers.
type result struct {
	opts        options
	sc          scenario
	start, end  time.Time
	names       []string            // breakers, in the scenario's order
	cells       []tally             // per timeline cell, all upstreams together
	states      [][]engine.State    // per breaker, per cell: the worst state seen
	transitions []engine.Transition // sorted by time, then breaker
	total       tally
}

func (r *result) cellOf(t time.Time) int {
	c := int(t.Sub(r.start) * time.Duration(len(r.cells)) / r.end.Sub(r.start))
	return min(max(c, 0), len(r.cells)-1)
}

// call is a call in flight: its ticket is reported when it is done.
type call struct {
	done   time.Time
	ticket *engine.Ticket
	err    error
}

type inflight []call

func (h inflight) Len() int           { return len(h) }
func (h inflight) Less(i, j int) bool { return h[i].done.Before(h[j].done) }
func (h inflight) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *inflight) Push(x any)        { *h = append(*h, x.(call)) }
func (h *inflight) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// simulate runs the scenario on a mock clock. The clock moves in steps of
// a thousandth of the run; calls that arrive within a step are admitted at
// its end, and finish at the first step after their latency. Every draw
// comes from one generator seeded by --seed, so a run repeats exactly.
func simulate(ctx context.Context, o options, sc scenario) (*result, error) {
	mock, e, collected, err := mockEngine(ctx, o, sc)
	if err != nil {
		return nil, err
	}
	start := mock.Now()

	r := &result{opts: o, sc: sc, start: start, end: start.Add(o.duration), cells: make([]tally, o.width)}
	breakers := make([]*engine.Breaker, len(sc.upstreams))
	next := make([]time.Time, len(sc.upstreams))
	interval := time.Duration(float64(time.Second) / o.rps)
	for i, u := range sc.upstreams {
		breakers[i] = e.Breaker(u.name)
		r.names = append(r.names, u.name)
		r.states = append(r.states, make([]engine.State, o.width))
		// Spread the upstreams' arrivals over one interval.
		next[i] = start.Add(interval * time.Duration(i) / time.Duration(len(sc.upstreams)))
	}
	rng := rand.New(rand.NewPCG(o.seed, 0x5eed))
	var flying inflight
	step := max(o.duration/1000, time.Millisecond)

	for now := start; now.Before(r.end); {
		now = now.Add(step)
		mock.Set(now)
		for i, b := range breakers {
			// State also applies a recovery timeout the mock clock has
			// passed, so transitions happen at this step, not whenever the
			// mock's timer goroutine gets to run.
			s := b.State()
			c := r.cellOf(now.Add(-1))
			r.states[i][c] = max(r.states[i][c], s)
		}
		for len(flying) > 0 && !flying[0].done.After(now) {
			c := heap.Pop(&flying).(call)
			c.ticket.Report(c.err)
		}
		for i, u := range sc.upstreams {
			for ; !next[i].After(now) && next[i].Before(r.end); next[i] = next[i].Add(interval) {
				at := next[i]
				p := u.at(float64(at.Sub(start)) / float64(o.duration))
				fail := rng.Float64() < p.errRate
				lat := time.Duration(float64(p.latency) * (0.75 + rng.Float64()/2))
				t := tally{attempted: 1, plainLatency: lat}
				if fail {
					t.plainFailed = 1
				}
				ticket, err := breakers[i].Admit(ctx)
				switch {
				case errors.Is(err, engine.ErrOpen):
					t.rejected = 1
					if !fail {
						t.lost = 1
					}
				case err != nil:
					return nil, err
				default:
					t.reached, t.latency = 1, lat
					var callErr error
					if fail {
						t.failed, t.upFailed, callErr = 1, 1, errUpstream
					}
					heap.Push(&flying, call{done: now.Add(lat), ticket: ticket, err: callErr})
				}
				r.cells[r.cellOf(at)].add(t)
				r.total.add(t)
			}
		}
	}
	for _, c := range flying {
		c.ticket.Report(c.err)
	}
	_ = e.Close()
	r.transitions = <-collected
	return r, nil
}

// mockEngine makes the engine of a simulated run: the flags' policy (and
// the scenario's), a mock clock, and a stream buffer no run can fill, with
// its transitions collected.
func mockEngine(ctx context.Context, o options, sc scenario) (*clock.Mock, *engine.Engine, <-chan []engine.Transition, error) {
	mock := clock.NewMock()
	cfg := o.config()
	cfg.Clock = mock
	cfg.SubscriberBuffer = 1 << 16
	if sc.policy != nil {
		sc.policy(&cfg)
	}
	e, err := engine.New(cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	return mock, e, collect(ctx, e), nil
}

// collect gathers the engine's transitions until its stream closes, and
// sorts them by time, then breaker (each breaker's are already in order).
func collect(ctx context.Context, e *engine.Engine) <-chan []engine.Transition {
	stream := e.Subscribe(ctx)
	out := make(chan []engine.Transition, 1)
	go func() {
		var ts []engine.Transition
		for t := range stream {
			ts = append(ts, t)
		}
		slices.SortStableFunc(ts, func(a, b engine.Transition) int {
			if c := a.At.Compare(b.At); c != 0 {
				return c
			}
			if a.Name != b.Name {
				if a.Name < b.Name {
					return -1
				}
				return 1
			}
			return int(a.Seq) - int(b.Seq)
		})
		out <- ts
	}()
	return out
}

// timeIn returns how long breaker name spent in each state.
func (r *result) timeIn(name string) map[engine.State]time.Duration {
	d := map[engine.State]time.Duration{}
	state, since := engine.Closed, r.start
	for _, t := range r.transitions {
		if t.Name != name {
			continue
		}
		d[state] += t.At.Sub(since)
		state, since = t.To, t.At
	}
	d[state] += r.end.Sub(since)
	return d
}
