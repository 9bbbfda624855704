package main

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nodus/circuitbreaker/engine"
	"github.com/nodus/circuitbreaker/llm"
)

// The llm scenario: two providers behind llm.Fallback. The primary starts
// answering 429 with Retry-After for a while; its model's circuit opens for
// that long at once, so calls go straight to the secondary instead of
// collecting a 429 first.
var llmScenario = scenario{
	name:  "llm",
	about: "two LLM providers behind llm.Fallback; the primary rate-limits with Retry-After",
	upstreams: []upstream{
		{name: "primary", phases: []phase{
			at(0, phase{name: "healthy", errRate: 0.01, latency: 800 * time.Millisecond}),
			at(0.25, phase{name: "rate limited", errRate: 0.99, latency: 50 * time.Millisecond}),
			at(0.65, phase{name: "healthy", errRate: 0.01, latency: 800 * time.Millisecond}),
		}},
		{name: "secondary", phases: []phase{at(0, phase{name: "healthy", errRate: 0.02, latency: 1200 * time.Millisecond})}},
	},
}

const llmRetryAfter = 20 * time.Second

// provider is a simulated LLM provider: its answers follow its phases and
// the one random source of the run.
type provider struct {
	u     upstream
	model string
	frac  func() float64
	fail  func() bool // whether this call fails
	hits  int         // calls that reached it, this call
	fails int
}

func (p *provider) Chat(ctx context.Context, msgs []llm.Message, opts ...llm.Option) (*llm.Response, error) {
	p.hits++
	ph := p.u.at(p.frac())
	if p.fail() {
		p.fails++
		if ph.name == "rate limited" {
			return nil, &llm.CallError{Kind: llm.KindRateLimited, StatusCode: 429, RetryAfter: llmRetryAfter, Err: errors.New(ph.name)}
		}
		return nil, &llm.CallError{Kind: llm.KindServerError, StatusCode: 500, Err: errors.New("internal error")}
	}
	return &llm.Response{Content: "ok", Model: p.model}, nil
}

// simulateLLM runs the llm scenario on a mock clock. Calls answer at once in
// simulated time; their latency is counted, not waited for.
func simulateLLM(ctx context.Context, o options, sc scenario) (*result, error) {
	mock, e, collected, err := mockEngine(ctx, o, sc)
	if err != nil {
		return nil, err
	}
	start := mock.Now()
	r := &result{opts: o, sc: sc, start: start, end: start.Add(o.duration), cells: make([]tally, o.width)}
	rng := rand.New(rand.NewPCG(o.seed, 0x5eed))
	frac := func() float64 { return float64(mock.Now().Sub(start)) / float64(o.duration) }
	// The primary's fate is drawn once per call, so the run without
	// breakers below meets the very same answers.
	var primaryFails, secondaryFails bool
	primary := &provider{u: sc.upstreams[0], model: "big", frac: frac, fail: func() bool { return primaryFails }}
	secondary := &provider{u: sc.upstreams[1], model: "small", frac: frac, fail: func() bool { return secondaryFails }}
	pc := llm.NewBreakerClient(primary, "primary", llm.WithEngine(e))
	sc2 := llm.NewBreakerClient(secondary, "secondary", llm.WithEngine(e))
	client := llm.Fallback(llm.Pin(pc, primary.model), llm.Pin(sc2, secondary.model))
	_, pb := pc.Breakers(primary.model)
	_, sb := sc2.Breakers(secondary.model)
	breakers := []*engine.Breaker{pb, sb}
	r.names = []string{pb.Name(), sb.Name()}
	r.states = [][]engine.State{make([]engine.State, o.width), make([]engine.State, o.width)}

	interval := time.Duration(float64(time.Second) / o.rps)
	msgs := []llm.Message{{Role: llm.RoleUser, Content: "summarize this"}}
	for now := start.Add(interval); now.Before(r.end); now = now.Add(interval) {
		mock.Set(now)
		c := r.cellOf(now)
		for i, b := range breakers {
			r.states[i][c] = max(r.states[i][c], b.State())
		}
		// Without breakers every call would reach the primary first, and
		// fall back after its 429.
		primaryFails = rng.Float64() < sc.upstreams[0].at(frac()).errRate
		secondaryFails = rng.Float64() < sc.upstreams[1].at(frac()).errRate
		plainFail := primaryFails
		primary.hits, primary.fails = 0, 0
		_, err := client.Chat(ctx, msgs)
		t := tally{attempted: 1, reached: primary.hits, upFailed: primary.fails}
		if primary.hits == 0 {
			t.rejected = 1 // skipped the primary without a network call
		}
		if err != nil {
			t.failed = 1
		}
		t.latency = time.Duration(primary.hits-primary.fails)*sc.upstreams[0].phases[0].latency +
			time.Duration(primary.fails)*50*time.Millisecond
		if primary.hits == 0 || primary.fails > 0 {
			t.latency += sc.upstreams[1].phases[0].latency
		}
		t.plainLatency = sc.upstreams[0].phases[0].latency
		if plainFail {
			t.plainFailed = 1
			t.plainLatency = 50*time.Millisecond + sc.upstreams[1].phases[0].latency
			if secondaryFails {
				t.lost = 1 // here: a call that fails without breakers too
			}
		}
		r.cells[c].add(t)
		r.total.add(t)
	}
	_ = e.Close()
	r.transitions = <-collected
	return r, nil
}
