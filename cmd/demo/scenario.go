package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

// A phase is a stretch of an upstream's health: from a fraction of the run
// on, calls fail at errRate and take about latency.
type phase struct {
	from    float64 // fraction of the run
	name    string
	errRate float64
	latency time.Duration
}

// An upstream is one named dependency with a health timeline; each gets its
// own breaker.
type upstream struct {
	name   string
	phases []phase
}

// at returns the phase in force at a fraction of the run.
func (u upstream) at(frac float64) phase {
	p := u.phases[0]
	for _, q := range u.phases {
		if frac >= q.from {
			p = q
		}
	}
	return p
}

// A scenario is the story a run tells.
type scenario struct {
	name, about string
	upstreams   []upstream
	// policy adjusts the breaker config the flags gave, where the story
	// needs a policy of its own (the slow-call one).
	policy func(*engine.Config)
}

const timeout = 2 * time.Second // what a failing call costs its client

var (
	healthy  = phase{name: "healthy", errRate: 0.01, latency: 40 * time.Millisecond}
	outage   = phase{name: "outage", errRate: 0.95, latency: timeout}
	degraded = phase{name: "degraded", errRate: 0.35, latency: 300 * time.Millisecond}
)

func at(from float64, p phase) phase { p.from = from; return p }

func scenarios() []scenario {
	return []scenario{
		{
			name:  "outage",
			about: "an upstream that goes down, limps back, and recovers",
			upstreams: []upstream{{name: "api", phases: []phase{
				at(0, healthy), at(0.22, outage), at(0.55, degraded), at(0.72, healthy),
			}}},
		},
		{
			name:  "flapping",
			about: "an upstream that keeps failing and recovering",
			upstreams: []upstream{{name: "api", phases: func() []phase {
				var ps []phase
				for i := range 8 {
					p := healthy
					if i%2 == 1 {
						p = outage
					}
					ps = append(ps, at(float64(i)/8, p))
				}
				return ps
			}()}},
		},
		{
			name:  "slow",
			about: "an upstream whose latency climbs long before it fails; the slow-call policy trips first",
			upstreams: []upstream{{name: "api", phases: []phase{
				at(0, healthy),
				at(0.2, phase{name: "slowing", errRate: 0.01, latency: 600 * time.Millisecond}),
				at(0.35, phase{name: "slow", errRate: 0.02, latency: 1500 * time.Millisecond}),
				at(0.6, phase{name: "failing", errRate: 0.6, latency: timeout}),
				at(0.75, healthy),
			}}},
			policy: func(c *engine.Config) {
				if c.SlowCallThreshold == 0 {
					c.SlowCallThreshold = time.Second
				}
				if c.SlowCallRateThreshold == 0 {
					c.SlowCallRateThreshold = 0.5
				}
				if c.WindowSize == 0 && c.WindowDuration == 0 {
					c.WindowSize = 20
				}
			},
		},
		{
			name:      "many",
			about:     "a gateway with one breaker per upstream host; a few hosts fail, at different times",
			upstreams: manyHosts(24),
		},
		llmScenario,
	}
}

// manyHosts makes n hosts; every sixth has an outage, each at its own time.
// It draws from a fixed seed so the story is the same whatever --seed is.
func manyHosts(n int) []upstream {
	rng := rand.New(rand.NewPCG(7, 7))
	hosts := make([]upstream, n)
	for i := range hosts {
		h := upstream{name: fmt.Sprintf("host-%02d", i+1), phases: []phase{at(0, healthy)}}
		if i%6 == 2 {
			start := 0.1 + rng.Float64()*0.5
			h.phases = append(h.phases, at(start, outage), at(start+0.1+rng.Float64()*0.2, healthy))
		}
		hosts[i] = h
	}
	return hosts
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	return names
}

func findScenario(name string) (scenario, bool) {
	i := slices.IndexFunc(scenarios(), func(s scenario) bool { return s.name == name })
	if i < 0 {
		return scenario{}, false
	}
	return scenarios()[i], true
}
