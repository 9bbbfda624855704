package engine

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/benbjohnson/clock"

	"github.com/nodus/circuitbreaker/actor"
)

// Engine hosts many named breakers: one per upstream host, tenant or model.
// Breakers are created on first use with the engine's default Config, or
// up front with their own; every breaker's transitions are also published
// on the engine's own stream.
//
// Looking up an existing breaker reads a concurrent map and never waits;
// creating, closing and subscribing go through the engine's goroutine, so
// they never race with each other.
type Engine struct {
	defaults *Config  // normalized, shared by every breaker made from it
	breakers sync.Map // name -> *Breaker
	act      *actor.Actor[engineMsg]
	dropped  atomic.Uint64 // transitions lost on the way in

	idle time.Duration // see WithIdleTimeout

	// Owned by the engine's goroutine.
	hub     *actor.Hub[Transition]
	sweep   *clock.Timer
	stopped []*Breaker // by exit, for Close to finish
}

type engineKind uint8

const (
	eCreate engineKind = iota
	eTransition
	eSubscribe
	eUnsubscribe
	eSweep
	eFlush
)

type engineMsg struct {
	kind   engineKind
	name   string
	cfg    *Config // normalized
	custom bool    // cfg given by the caller: a duplicate is an error
	t      Transition
	id     uint64
	ctx    context.Context
	reply  chan engineReply
}

type engineReply struct {
	b   *Breaker
	err error
	sub <-chan Transition
}

// New returns a running engine whose breakers default to defaults. It
// returns a [*ConfigError] if defaults or an option is invalid. Close the
// engine when done with it.
func New(defaults Config, opts ...Option) (*Engine, error) {
	defaults, err := defaults.normalize()
	if err != nil {
		return nil, err
	}
	e := &Engine{
		defaults: &defaults,
		hub:      actor.NewHub(func(t Transition, missed uint64) Transition { t.Missed += missed; return t }),
	}
	for _, o := range opts {
		o(e)
	}
	if e.idle < 0 {
		return nil, &ConfigError{Field: "IdleTimeout", Value: e.idle, Rule: "must be >= 0"}
	}
	e.act = actor.Start(1024, e.handle, e.exit)
	e.armSweep()
	return e, nil
}

// An Option configures an Engine beyond its breakers' defaults.
type Option func(*Engine)

// WithIdleTimeout makes the engine forget breakers that are in the
// closed state and have admitted no call for a while, so that an engine
// keyed by host or tenant does not grow without bound. The engine sweeps
// every d/2, and a breaker that admitted no call across two whole sweep
// intervals is forgotten at the next sweep: between d and 1.5 d after its
// last call. A later [Engine.Breaker] with the same name makes a fresh
// one. A forgotten breaker is not closed: a caller that still holds it
// keeps a working breaker, just no longer the engine's (its transitions
// leave the engine's stream, and Close leaves it open), so with this
// option look breakers up by name for each use. Breakers made with
// [Engine.NewBreaker], with a Config.OnStateChange callback, or with a
// subscription open are kept. 0, the default, keeps every breaker until
// Close; d must not be negative.
func WithIdleTimeout(d time.Duration) Option { return func(e *Engine) { e.idle = d } }

// armSweep schedules the next idle sweep, if eviction is on.
func (e *Engine) armSweep() {
	if e.idle <= 0 {
		return
	}
	clk := e.defaults.Clock
	if clk == nil {
		clk = realTime
	}
	e.sweep = clk.AfterFunc(e.idle/2, func() {
		_ = e.act.Send(context.Background(), engineMsg{kind: eSweep})
	})
}

// Breaker returns the breaker with the given name, creating it with the
// engine's defaults if there is none. After Close it returns a closed
// breaker, whose calls fail with [ErrClosed].
func (e *Engine) Breaker(name string) *Breaker {
	if b, ok := e.breakers.Load(name); ok {
		return b.(*Breaker)
	}
	b, err := e.create(name, e.defaults, false)
	if err != nil { // the engine is closed
		b = newBreaker(name, e.defaults)
		_ = b.Close()
	}
	return b
}

// Clock returns the clock of the engine's breakers (Config.Clock, or real
// time).
func (e *Engine) Clock() clock.Clock {
	if c := e.defaults.Clock; c != nil {
		return c
	}
	return realTime
}

// Lookup returns the breaker with the given name, if there is one. Unlike
// [Engine.Breaker] it never creates one.
func (e *Engine) Lookup(name string) (*Breaker, bool) {
	b, ok := e.breakers.Load(name)
	if !ok {
		return nil, false
	}
	return b.(*Breaker), true
}

// Range calls f for each breaker in the engine, in no particular order,
// until f returns false. Breakers created or closed meanwhile may or may
// not be seen.
func (e *Engine) Range(f func(*Breaker) bool) {
	e.breakers.Range(func(_, v any) bool { return f(v.(*Breaker)) })
}

// NewBreaker creates a breaker with its own Config instead of the
// engine's defaults; only the engine's Clock carries over when cfg has
// none, so that one clock drives every breaker of an engine. It returns
// [ErrDuplicate] if the name is taken, a [*ConfigError] if cfg is invalid,
// or [ErrClosed] after Close.
func (e *Engine) NewBreaker(name string, cfg Config) (*Breaker, error) {
	if cfg.Clock == nil {
		cfg.Clock = e.defaults.Clock
	}
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	return e.create(name, &cfg, true)
}

func (e *Engine) create(name string, cfg *Config, custom bool) (*Breaker, error) {
	ch := make(chan engineReply, 1)
	r, err := actor.Ask(context.Background(), e.act, engineMsg{kind: eCreate, name: name, cfg: cfg, custom: custom, reply: ch}, ch)
	if err != nil {
		return nil, ErrClosed
	}
	return r.b, r.err
}

// Subscribe returns a channel that receives the transitions of every
// breaker in the engine, each breaker's in order. Like [Breaker.Subscribe]
// it never blocks a breaker, reports what it missed in [Transition.Missed],
// and is closed when ctx is done or the engine is closed.
func (e *Engine) Subscribe(ctx context.Context) <-chan Transition {
	ch := make(chan engineReply, 1)
	r, err := actor.Ask(ctx, e.act, engineMsg{kind: eSubscribe, ctx: ctx, reply: ch}, ch)
	if err != nil {
		c := make(chan Transition)
		close(c)
		return c
	}
	return r.sub
}

// Close closes every breaker and the engine's subscriptions, and waits for
// all their goroutines to exit. Transitions of calls that returned before
// Close reach the subscribers before their channels close. It is
// idempotent and returns nil.
func (e *Engine) Close() error {
	// The mailbox is first in, first out: once the flush is answered, every
	// transition queued before it has been published.
	ch := make(chan engineReply, 1)
	_, _ = actor.Ask(context.Background(), e.act, engineMsg{kind: eFlush, reply: ch}, ch)
	e.act.Stop()
	for _, b := range e.stopped { // written by the engine's goroutine, which is done
		_ = b.Close()
	}
	return nil
}

func (e *Engine) handle(m engineMsg) {
	switch m.kind {
	case eCreate:
		var r engineReply
		if b, ok := e.breakers.Load(m.name); ok {
			r.b = b.(*Breaker)
			if m.custom {
				r.b, r.err = nil, ErrDuplicate
			}
		} else {
			r.b = e.add(m.name, m.cfg)
		}
		actor.Reply(m.reply, r)
	case eTransition:
		e.hub.Publish(m.t)
	case eSubscribe:
		actor.Reply(m.reply, engineReply{sub: e.hub.Subscribe(m.ctx, e.defaults.SubscriberBuffer, func(id uint64) {
			_ = e.act.Send(context.Background(), engineMsg{kind: eUnsubscribe, id: id})
		})})
	case eUnsubscribe:
		e.hub.Unsubscribe(m.id)
	case eSweep:
		e.evictIdle()
		e.armSweep()
	case eFlush:
		actor.Reply(m.reply, engineReply{})
	}
}

func (e *Engine) add(name string, cfg *Config) *Breaker {
	b := newBreaker(name, cfg)
	b.engine.Store(e)
	e.breakers.Store(name, b)
	return b
}

// feed takes a breaker's transition for the engine's stream. A breaker
// never waits on the engine: a transition that finds the mailbox full is
// counted and reported as missed, on the next transition queued: one
// already in the mailbox came before the loss.
func (e *Engine) feed(t Transition) {
	t.Missed = e.dropped.Swap(0)
	if !e.act.TrySend(engineMsg{kind: eTransition, t: t}) {
		e.dropped.Add(t.Missed + 1)
	}
}

// forget drops a closed breaker, unless its name has a new one already.
func (e *Engine) forget(b *Breaker) { e.breakers.CompareAndDelete(b.Name(), b) }

// idleSweeps is how many sweeps a breaker must go without a call before
// the next one forgets it. The first can come just after its last call, so
// two make sure it was idle for two whole intervals of d/2.
const idleSweeps = 2

// watched is the bit of Breaker.idle that says a subscription is open. The
// breaker's goroutine sets and clears it; the count below it is the
// sweeps', which never reaches it.
const watched uint32 = 1 << 31

// evictIdle forgets the breakers that are closed and have admitted no call
// for idleSweeps sweeps, and counts one more sweep for the rest.
// A forgotten breaker is not closed: it holds no goroutine, so whoever
// still has it (a call in flight, a caller that looked it up just before)
// keeps a working breaker, and the garbage collector takes it when nobody
// does. It is no longer the engine's: its transitions leave the engine's
// stream, where its name may soon be a new breaker's, and Close leaves it
// alone. Breakers made with NewBreaker, with an OnStateChange callback, or
// with a subscription open are never forgotten: someone is watching them.
func (e *Engine) evictIdle() {
	e.breakers.Range(func(_, v any) bool {
		b := v.(*Breaker)
		s := b.snap.Load()
		if b.cfg != e.defaults /* made by NewBreaker */ || b.cfg.OnStateChange != nil || s.state != Closed || s.stop {
			return true
		}
		if n := b.idle.Add(1); n&watched != 0 || n <= idleSweeps {
			return true
		}
		e.forget(b)
		b.engine.Store(nil)
		return true
	})
}

// exit stops every breaker, then closes the engine's subscriptions. The
// breakers' OnStateChange runners are closed by Close, after the engine's
// goroutine is gone: a callback may be waiting on the engine (creating a
// breaker, say), which must not deadlock the shutdown.
func (e *Engine) exit() {
	if e.sweep != nil {
		e.sweep.Stop()
	}
	e.breakers.Range(func(_, v any) bool {
		b := v.(*Breaker)
		b.flush()
		b.act.Stop()
		e.stopped = append(e.stopped, b)
		return true
	})
	e.hub.Close()
}
