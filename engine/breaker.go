package engine

import (
	"context"
	"errors"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/benbjohnson/clock"

	"github.com/nodus/circuitbreaker/actor"
)

// Breaker is a circuit breaker: an actor (see package actor) whose
// goroutine owns a [Machine] and serves admissions, reports and queries
// sent to it over channels. Make one with [NewBreaker] or [Engine.Breaker],
// and run calls through it with [Breaker.Do].
//
// The common paths skip the round trip. The breaker's goroutine publishes
// a snapshot of its state after every change; a call in the closed state
// is admitted, and a call in the open state rejected, by reading that
// snapshot. Successes in the closed state are recorded without waiting,
// and so are failures that cannot open the circuit, unless ShouldTrip is
// set (under a slow-call policy, failures that were not slow, while no
// success could trip a rate policy); every outcome that could change the state
// (a failure that may open the circuit, a slow call, any probe, a success
// that could trip a rate policy) waits until the breaker has applied it.
// So when a call returns, its outcome is visible to the same goroutine's
// next call, State or Counts.
//
// A Breaker is safe for concurrent use. Close it when done with it (or
// close the Engine it came from) to stop its goroutine and timers.
type Breaker struct {
	cfg *Config // normalized, possibly shared; never changed
	// idle is an Engine's idle sweeps since a call was last admitted, and
	// watched: whether a subscription is open. It is the breaker's, not a
	// snapshot's: an admission that clears it must not land on a snapshot
	// being replaced.
	idle   atomic.Uint32
	mock   bool  // the clock is driven by hand, so a snapshot can lag it
	quick  bool  // no slow-call policy, no time-based window: quiet outcomes always tally
	rate   bool  // a rate policy is on: some successes must wait (see snapshot.mayTrip)
	fails  fails // how failures that cannot open the circuit are tallied, if at all
	slowAt time.Duration

	snap     atomic.Pointer[snapshot]
	rejected *rejections // rejections decided from the snapshot; made on first trip
	act      actor.Actor[*msg]
	msgs     atomic.Pointer[sync.Pool] // of *msg, made when one is first recycled; see newMsg and drop
	engine   atomic.Pointer[Engine]    // the Engine hosting it, if any; let go when the Engine forgets it

	// Owned by the breaker's goroutine.
	m Machine
	x *extras // made on first use
}

// extras is what a breaker needs once it has been tripped, watched or
// given a callback, and most never are: kept apart, it keeps an idle
// breaker under a kilobyte. Owned by the breaker's goroutine.
type extras struct {
	hub     *actor.Hub[Transition] // made on the first Subscribe
	runner  *actor.Runner[Transition]
	timer   *clock.Timer
	timerAt int64 // the armed timer's deadline, in Unix nanoseconds; 0 if none
	wakeID  uint64
	pending []uint64 // an ordered breaker's failures read but not applied (see foldOrdered)
	// How many records an ordered breaker's snapshots get, 0 for
	// minRecords, and when the latest were made, in Unix nanoseconds (see
	// Breaker.sizeRecords).
	recSize int
	recsAt  int64
}

// extras returns b's extras, made on first use.
func (b *Breaker) extras() *extras {
	if b.x == nil {
		b.x = new(extras)
	}
	return b.x
}

// snapshot is what the fast paths read. The breaker's goroutine replaces
// it whole with every new generation, and nobody else writes one, but for
// its tallies (and the stripes a busy successes tally spreads over, see
// spreadSuccesses): callers admitted under it add their closed-state
// successes and ignored outcomes there instead of sending a message, and
// the breaker's goroutine folds the tallies into the machine before every
// message it handles. When it replaces the snapshot it takes what is left
// and marks the tallies retired (negative), so a caller that adds later
// learns that its report is stale and sends it as a message.
type snapshot struct {
	state State
	gen   uint64
	err   *OpenError // the rejection for Open and HalfOpen
	// wide is the successes tally's stripes, once spread (see
	// snapshot.spreadSuccesses): then the tally is successes plus them.
	wide atomic.Pointer[stripes]

	successes, ignored atomic.Int64
	flags              atomic.Uint32 // full, mayTrip and spreadFlag; see those
	stop               bool          // the breaker is closed
	refuse             bool          // open until the breaker's own timer ends it: every call is rejected from here
	untallied          bool          // takes no tallies: the clock stepped back (see newSnapshot)
	recs               *records      // an ordered breaker's failures tally, if it has one (see Breaker.orderedFailure)

	// What the common paths touch fits the first cache line; the second
	// is for lean and ordered breakers only (see Breaker.failure).
	failures atomic.Int64 // the failures tally, like successes; an ordered breaker's hint of the next free record
	limit    atomic.Int64 // how far the failures tally may go without waiting
	// runF is the failures tally as the latest success saw it, runS the
	// successes tally as the latest failure saw it: together they tell
	// which outcomes came last, which the tallies alone cannot.
	runF, runS atomic.Int64

	folded, foldedF int64 // the tallies as last folded; the owner's alone

	// bucketStart and bucketEnd bound, for a closed circuit with a
	// time-based window, the window's bucket current when the snapshot was
	// published, in Unix nanoseconds: outcomes are tallied here only within
	// it, and folded into it. (They share the lean group's line: what a
	// success under a time-based window reads, and what its failures write,
	// are together there.)
	bucketStart, bucketEnd int64

	// 128 bytes in all, a size class the allocator aligns to 128, so the
	// two groups above sit on two cache lines of their own: the tallies
	// every success writes do not evict what a lean success reads.
}

const retired = math.MinInt64

// retired reports whether s's tallies are retired: it is being replaced,
// and takes no more.
func (s *snapshot) retired() bool { return s.ignored.Load() < 0 }

const (
	fullFlag    uint32 = 1 << iota // HalfOpen with every probe slot taken
	mayTripFlag                    // Closed, and a success could still trip a rate policy
	spreadFlag                     // the successes tally is spread (see snapshot.wide); set by the caller that spread it
)

// full reports whether the circuit is half-open with every probe slot
// taken, so that a call is turned away without asking.
func (s *snapshot) full() bool { return s.flags.Load()&fullFlag != 0 }

// mayTrip reports whether the circuit is closed and a success could still
// trip a rate policy (see Machine.SuccessMayTrip), so that one must wait.
func (s *snapshot) mayTrip() bool { return s.flags.Load()&mayTripFlag != 0 }

// setFlags sets full and mayTrip from the machine as of now.
func (b *Breaker) setFlags(s *snapshot, now time.Time) {
	var f uint32
	if b.m.ProbesFull() {
		f |= fullFlag
	}
	if b.m.SuccessMayTrip(now) {
		f |= mayTripFlag
	}
	for { // keeping spreadFlag, which callers set
		old := s.flags.Load()
		if s.flags.CompareAndSwap(old, old&spreadFlag|f) {
			return
		}
	}
}

// call is an admitted call on its way: everything reporting its outcome
// needs. It lives on the caller's stack, and only its address travels.
type call struct {
	permit Permit
	b      *Breaker
	snap   *snapshot // the snapshot it was admitted under; nil if a message admitted it
	start  time.Time // when it started, from Breaker.started, if a slow-call policy times it
}

type msgKind uint8

const (
	mAdmit msgKind = iota
	mReport
	mState
	mCounts
	mReset
	mTrip
	mIsolate
	mSubscribe
	mUnsubscribe
	mWake
	mForceOpen
	mSync // nothing but the fold every message starts with
)

// msg is every message a breaker's goroutine handles. Messages travel by
// pointer and are recycled, per breaker (or, for a breaker with no pool,
// through spares), so the mailbox stays a few words long and a message
// costs no allocation.
type msg struct {
	kind    msgKind
	outcome Outcome
	wait    bool   // the sender waits for the reply; otherwise the handler recycles the message
	here    bool   // the sender handles it itself, the breaker being idle: the reply goes in answer
	permit  Permit // for mWake and mUnsubscribe, Gen carries the timer or subscriber id
	err     error
	hint    time.Duration // err's Retry-After hint, read once by the sender of a failure
	elapsed time.Duration
	ctx     context.Context // mSubscribe only
	reply   chan reply      // made on first use, kept across recycling
	answer  reply           // when here: a send and a receive on reply would cost more than the rest of a Counts
}

// newMsg returns a message of the given kind, from the breaker's pool, or
// if it has none, from spares. Messages are recycled per breaker so that a
// breaker living in a testing/synctest bubble never hands its reply
// channels to code outside it.
func (b *Breaker) newMsg(kind msgKind) *msg {
	p := b.msgs.Load()
	if p == nil {
		p = &spares
	}
	m, _ := p.Get().(*msg)
	if m == nil {
		m = new(msg)
	}
	m.kind = kind
	return m
}

// recycle puts m in the breaker's pool, made on first use.
func (b *Breaker) recycle(m *msg) {
	*m = msg{reply: m.reply}
	b.pool().Put(m)
}

// drop is recycle for a message its sender handled on an idle breaker:
// into the breaker's pool if it has one, and otherwise into spares. A
// breaker that is only ever asked from outside, by a metrics scrape or
// fleet mode's sweep, then keeps no pool: with the message it holds, that
// would be half an idle breaker's size again, on every breaker of an
// Engine.
func (b *Breaker) drop(m *msg) {
	*m = msg{reply: m.reply}
	if p := b.msgs.Load(); p != nil {
		p.Put(m)
	} else if m.reply == nil {
		spares.Put(m)
	}
}

// spares are messages shared by the breakers that have no pool. They hold
// no reply channel, which is all a synctest bubble keeps to itself: a
// message is given one when it is first queued, and from then on goes
// back to its breaker's pool.
var spares sync.Pool

// pool returns the breaker's message pool, made on first use: most
// breakers never queue a message, and a pool is most of a message's worth.
func (b *Breaker) pool() *sync.Pool {
	if p := b.msgs.Load(); p != nil {
		return p
	}
	b.msgs.CompareAndSwap(nil, new(sync.Pool))
	return b.msgs.Load()
}

// send queues a message nobody waits on.
func (b *Breaker) send(m *msg) {
	if b.act.Send(context.Background(), m) != nil {
		b.recycle(m)
	}
}

type reply struct {
	permit Permit
	err    error
	state  State
	counts Counts
	sub    <-chan Transition
}

// NewBreaker returns a breaker with the given name and policies. It
// returns a [*ConfigError] if cfg is invalid. The name appears in errors
// and transitions.
func NewBreaker(name string, cfg Config) (*Breaker, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	return newBreaker(name, &cfg), nil
}

// mailbox is a breaker's mailbox size. Most calls never use the mailbox,
// and a caller that finds it full simply waits its turn, so it is kept
// small: it is most of an idle breaker's memory.
const mailbox = 4

// newBreaker returns a breaker for a normalized config, which it may share
// with others but never changes.
func newBreaker(name string, cfg *Config) *Breaker {
	b := &Breaker{
		cfg:    cfg,
		slowAt: cfg.SlowCallThreshold,
		m:      makeMachine(name, cfg),
	}
	_, b.mock = cfg.Clock.(*clock.Mock)
	b.quick = cfg.SlowCallThreshold == 0 && cfg.WindowDuration == 0
	b.rate = cfg.ratePolicy()
	// Failures tally unless ShouldTrip must see each one. A count-based
	// window must know the order of every call, which plain tallies lose.
	if cfg.ShouldTrip == nil {
		b.fails = leanFails
		if cfg.WindowSize > 0 {
			b.fails = orderedFails
		}
	}
	b.snap.Store(b.newSnapshot(b.now().Now()))
	b.act.Init(mailbox, (*breakerActor)(b))
	return b
}

// fails says how a breaker tallies the failures that cannot open the
// circuit.
type fails uint8

const (
	byMessage    fails = iota // it does not: every failure waits for the breaker's goroutine
	leanFails                 // as counts, with runs (see Breaker.failure); no count-based window
	orderedFails              // with their places among the successes (see Breaker.orderedFailure), for a count-based window
)

// lean reports whether failures tally as counts (see Breaker.failure).
func (b *Breaker) lean() bool { return b.fails == leanFails }

// ordered reports whether failures tally with their places among the
// successes (see Breaker.orderedFailure).
func (b *Breaker) ordered() bool { return b.fails == orderedFails }

// timed reports whether the breaker has a time-based window: tallies hold
// only within its bucket (see snapshot.bucketStart).
func (b *Breaker) timed() bool { return b.cfg.WindowDuration > 0 }

// realTime is the clock of breakers configured without one.
var realTime = clock.New()

// now returns the breaker's clock.
func (b *Breaker) now() clock.Clock {
	if c := b.cfg.Clock; c != nil {
		return c
	}
	return realTime
}

// epoch anchors the start times Breaker.started reads from the monotonic
// clock.
var epoch = time.Now()

// started returns the time a call starts, for a slow-call policy to time
// it by Breaker.since. Real time is read from the monotonic clock alone,
// at half the cost of time.Now: the result's wall time is epoch's plus the
// monotonic time since, an estimate, but since measures by the monotonic
// part (inside a testing/synctest bubble, where the clock has no
// monotonic part, the estimate is exact).
func (b *Breaker) started() time.Time {
	if c := b.cfg.Clock; c != nil {
		return c.Now()
	}
	return epoch.Add(time.Since(epoch))
}

// since returns the time from start, from Breaker.started, to now, or, if
// now is zero, to a fresh reading: for real time, of the monotonic clock
// alone.
func (b *Breaker) since(start, now time.Time) time.Duration {
	switch {
	case !now.IsZero():
		return now.Sub(start)
	case b.cfg.Clock != nil:
		return b.cfg.Clock.Now().Sub(start)
	}
	return time.Since(start)
}

// Name returns the breaker's name.
func (b *Breaker) Name() string { return b.m.name }

// Call runs fn if the circuit admits it and records its outcome. It is
// [Breaker.Do] without a context.
func (b *Breaker) Call(fn func() error) error {
	return b.Do(background, func(context.Context) error { return fn() })
}

// background is context.Background as an interface value made once, which
// leaves Call small enough to inline.
var background = context.Background()

// Do runs fn if the circuit admits it, passing ctx through, and records its
// outcome. It returns fn's error unchanged, an error matching [ErrOpen]
// (an [*OpenError]) if the call was rejected, [ErrClosed] after Close, or
// ctx.Err() if ctx was done before fn could start (fn is then not run).
// A call the breaker refuses anyway (open, every probe slot taken, or
// closed by Close) is refused without looking at ctx. fn's error is classified by Config.Classify. If fn panics, the outcome
// is recorded as a failure and the panic continues.
//
// Most callers should use Do.
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) error {
	if s := b.snap.Load(); s.refuse {
		return b.reject(s) // before c: zeroing it costs an open circuit's call a fifth
	}
	var c call
	if err := b.admit(ctx, &c); err != nil {
		return err
	}
	// run, without the value: most calls only return an error.
	finished := false
	defer func() {
		if !finished {
			c.finish(Failure, errPanicked)
		}
	}()
	err := fn(ctx)
	o := b.classify(err) // a Classify that panics is a failure too
	finished = true
	if !c.tallied(o) {
		c.finish(o, err)
	}
	return err
}

// Execute is [Breaker.Do] for functions that return a value.
func Execute[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (v T, err error) {
	if s := b.snap.Load(); s.refuse {
		return v, b.reject(s) // before c, as in Do
	}
	var c call
	if err = b.admit(ctx, &c); err != nil {
		return v, err
	}
	finished := false
	defer func() {
		if !finished {
			c.finish(Failure, errPanicked)
		}
	}()
	v, err = fn(ctx)
	o := b.classify(err) // a Classify that panics is a failure too
	finished = true
	if !c.tallied(o) {
		c.finish(o, err)
	}
	return v, err
}

// classify sorts an error by Config.Classify, sparing the default the
// call for the common nil.
func (b *Breaker) classify(err error) Outcome {
	if err == nil && b.cfg.plainClassify {
		return Success
	}
	return b.cfg.Classify(err)
}

// Result is what [Async] delivers: fn's value and error, or a rejection.
type Result[T any] struct {
	// Value is what fn returned; the zero value if fn did not run or
	// panicked.
	Value T
	// Err is fn's error, the error of a call that did not run (as from
	// [Breaker.Do]), or a [*PanicError].
	Err error
}

// Async starts fn under the breaker and returns a channel that receives
// exactly one Result. The channel is buffered, so nobody has to read it:
// the goroutine running fn never blocks on it and never leaks. A rejected
// call or a ctx already done delivers at once, without starting a
// goroutine. A panic in fn is recorded as a failure and delivered as a
// [*PanicError] instead of crashing the program. The channel is its only
// allocation; [Go] gathers many calls on a channel of the caller's.
func Async[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) <-chan Result[T] {
	ch := make(chan Result[T], 1)
	if err := Go(ctx, b, ch, fn); err != nil {
		ch <- Result[T]{Err: err}
	}
	return ch
}

// Go is [Async] for callers that gather many calls on one channel (fan-out,
// hedged requests) and so need no channel per call: it starts fn under the
// breaker on a new goroutine, which sends fn's Result to results. It
// allocates nothing of its own once warm (a function that captures
// variables is the caller's allocation, as it escapes to the goroutine).
//
// If the call is not admitted, Go returns why, as [Breaker.Do] would, and
// starts nothing; so it does, with an error, if results is nil. Otherwise it returns nil, and once fn returns its one
// Result goes to results; a panic in fn is recorded as a failure and sent
// as a [*PanicError]. The goroutine waits for room in results, so give
// results room for every call in flight or keep reading it: if ctx is done
// while it waits, the Result is dropped (the outcome still counts) and the
// goroutine ends.
func Go[T any](ctx context.Context, b *Breaker, results chan<- Result[T], fn func(context.Context) (T, error)) error {
	if results == nil {
		return errNilResults // a send to it would never happen
	}
	var admitted call
	if err := b.admit(ctx, &admitted); err != nil {
		return err
	}
	l := launches.Get().(*launch)
	l.run, l.ctx, l.c, l.fn, l.results = runs[T]{}, ctx, admitted, fn, results
	go l.start()
	return nil
}

// A launch hands one call of [Go] to the goroutine that runs it. A go
// statement allocates a closure for whatever its goroutine is given,
// unless it calls a func() value as it is: so each launch keeps start, a
// func() bound to it once, and launches are pooled. The goroutine copies
// what it needs and puts its launch back before it runs fn; a launch in
// the pool holds nothing, so no context or channel outlives its call
// there.
type launch struct {
	start   func() // l.begin, made with l
	run     runner // runs[T]: a zero-size value, so no allocation; a generic function's value would be one
	ctx     context.Context
	c       call
	fn      any // func(context.Context) (T, error): pointer-shaped, so storing it allocates nothing
	results any // chan<- Result[T], likewise
}

type runner interface{ run(*launch) }

var launches = sync.Pool{New: func() any {
	l := new(launch)
	l.start = l.begin
	return l
}}

// begin is where the goroutine of a call of Go starts.
func (l *launch) begin() { l.run.run(l) }

// runs is the runner for calls whose value is a T.
type runs[T any] struct{}

func (runs[T]) run(l *launch) {
	ctx, c := l.ctx, l.c // c on the goroutine's stack: finish needs it addressable
	fn := l.fn.(func(context.Context) (T, error))
	results := l.results.(chan<- Result[T])
	*l = launch{start: l.start}
	launches.Put(l)
	b := c.b
	var r Result[T]
	finished := false
	defer func() {
		p := recover()
		if !finished {
			c.finish(Failure, errPanicked)
		}
		switch {
		case p != nil:
			r = Result[T]{Err: &PanicError{Value: p, Stack: debug.Stack()}}
		case !finished: // fn called runtime.Goexit
			r = Result[T]{Err: &PanicError{Value: "runtime.Goexit called"}}
		}
		select {
		case results <- r: // room: send even if ctx is done
		default:
			select {
			case results <- r:
			case <-ctx.Done():
			}
		}
	}()
	r.Value, r.Err = fn(ctx)
	o := b.classify(r.Err) // a Classify that panics is a failure too
	finished = true
	if !c.tallied(o) {
		c.finish(o, r.Err)
	}
}

var errNilResults = errors.New("engine: Go needs a results channel, got nil")

// Ticket is an admitted call of the two-step API, from [Breaker.Admit]:
// the caller runs the work however it likes and reports how it went with
// [Ticket.Report]. A Ticket is safe for concurrent use.
type Ticket struct {
	call
	done atomic.Bool
}

// Admit asks to run one call, for callers that cannot wrap their work in a
// function (event loops, callbacks, streams). It returns an error matching
// [ErrOpen] if the circuit refuses, [ErrClosed] after Close, or
// ctx.Err(). An admitted call must be reported with [Ticket.Report] or
// [Ticket.ReportAs]; a half-open probe that never is gets reclaimed as a
// failure after Config.ProbeLease.
func (b *Breaker) Admit(ctx context.Context) (*Ticket, error) {
	// Small enough to inline, so a ticket that does not outlive its
	// caller stays on the caller's stack.
	t := new(Ticket)
	if err := b.admit(ctx, &t.call); err != nil {
		return nil, err
	}
	return t, nil
}

// Report records the call's outcome, classified by Config.Classify like
// the error of [Breaker.Do]. Only the first report of a ticket counts;
// later ones, and Report on a nil ticket, do nothing.
func (t *Ticket) Report(err error) {
	if t == nil {
		return
	}
	t.ReportAs(t.b.classify(err), err)
}

// ReportAs records the call's outcome as o, for callers that classify
// outcomes themselves (an LLM client that tells a rate limit from a bad
// request, say). err is still read for a Retry-After hint and kept as the
// cause if the outcome opens the circuit. An Outcome other than Success,
// Failure and Ignored counts as a Failure. Like Report, only the first
// report of a ticket counts.
func (t *Ticket) ReportAs(o Outcome, err error) {
	if t == nil || !t.done.CompareAndSwap(false, true) {
		return
	}
	if !t.tallied(o) {
		t.finish(o, err)
	}
}

// admit admits c, or returns why not: it decides from the snapshot when
// it can, and asks the breaker's goroutine otherwise (half-open with a
// free slot, or an open period a hand-driven clock has already run past).
// A rejection is decided before ctx is looked at, since it is the commoner
// case of the two and costs less than asking ctx.
func (b *Breaker) admit(ctx context.Context, c *call) error {
	s := b.snap.Load()
	if s.state != Closed || s.stop {
		if s.refuse {
			return b.reject(s)
		}
		return b.admitSlow(ctx, s, c)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.idle.Load()&^watched != 0 { // written once per sweep, so the line stays shared
		b.idle.And(watched)
	}
	c.permit, c.b, c.snap = Permit{Gen: s.gen}, b, s
	if b.slowAt > 0 {
		c.start = b.started()
	}
	return nil
}

// reject counts a rejection decided from s, and returns it.
func (b *Breaker) reject(s *snapshot) error {
	// b.rejected was set before the first snapshot that is not closed
	// was published, and never changes after.
	if b.rejected.add()%busy == 0 {
		b.rejected.spread(b.now())
	}
	return s.err
}

func (b *Breaker) admitSlow(ctx context.Context, s *snapshot, c *call) error {
	switch {
	case s.stop:
		return ErrClosed
	case s.state == Open && !b.due(s), s.state == HalfOpen && s.full():
		return b.reject(s)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r, err := b.ask(ctx, b.newMsg(mAdmit))
	if err != nil {
		return err
	}
	if r.err != nil {
		return r.err
	}
	c.permit, c.b = r.permit, b
	b.idle.And(watched) // a probe, or a call admitted as the circuit closed, is a call too
	if ctx.Err() != nil {
		// Granted to a caller that gave up meanwhile: hand the slot back.
		c.finish(Ignored, ctx.Err())
		return ctx.Err()
	}
	if b.slowAt > 0 {
		c.start = b.started()
	}
	return nil
}

// due reports whether an open snapshot is past its period by a hand-driven
// clock. With real time the breaker's own timer ends the period; reading
// the clock on every rejection would cost more than the rejection itself.
func (b *Breaker) due(s *snapshot) bool {
	return !s.err.Until.IsZero() && !b.now().Now().Before(s.err.Until)
}

// errPanicked stands in for the error of a call that panicked.
var errPanicked = &PanicError{Value: "function panicked"}

// finish reports an outcome. A closed-state success or ignored call that
// is not slow cannot change the state, so it does not wait: it is added to
// the tally of the snapshot it was admitted under (under a time-based
// window, of the current snapshot, while its bucket lasts; and of the
// current snapshot if a seal retired its own and the generation went on,
// see Breaker.report). Everything else
// waits until applied, but for failures that cannot open the circuit either
// (see Breaker.failure).
func (c *call) finish(o Outcome, err error) {
	b, s := c.b, c.snap
	if b.quick && s != nil && o == Success && !s.mayTrip() && b.tallyQuiet(s, o) {
		return
	}
	b.report(c, o, err)
}

// tallied is finish for the commonest outcome, small enough to inline
// where a call ends: a closed-state success with no failure since the
// last success (see snapshot.saw), tallied on a counter that is not spread
// and not at a multiple of busy (finish looks then whether to spread it;
// see addSuccess). It reports whether that is what o was; if not, finish
// it. (A retired tally takes the second add finish gives it as harmlessly
// as the first.)
func (c *call) tallied(o Outcome) bool {
	s := c.snap
	if o != Success || s == nil || !c.b.quick || s.flags.Load()&(mayTripFlag|spreadFlag) != 0 || s.failures.Load() > s.runF.Load() || s.successes.Load()%busy == 0 {
		return false // (spread, or a success that looks whether to spread: see addSuccess)
	}
	return s.successes.Add(1) > 0
}

func (b *Breaker) report(c *call, o Outcome, err error) {
	if o > Ignored {
		o = Failure // as the machine takes it, so it waits like one
	}
	p := c.permit
	var now time.Time
	var elapsed time.Duration
	if b.timed() {
		now = b.now().Now()
	}
	if b.slowAt > 0 {
		elapsed = b.since(c.start, now)
	}
	// The Retry-After hint is read once, here, and travels with the
	// message: an error's method may compute it afresh at each read, and
	// every step deciding on it must see one value. A hint that is not
	// positive asks for no wait: the failure is a plain one, and tallies
	// like one.
	var hint time.Duration
	if o == Failure {
		hint = retryAfter(err)
	}
	s := c.snap
	if s == nil && o == Failure && b.lean() { // admitted by a message just as the circuit closed
		s = b.snap.Load()
	}
	if b.timed() && s != nil {
		// A tally on the snapshot of a time-based window counts in the
		// bucket the snapshot was published in, so it is taken only within
		// that bucket; the first outcome after it goes as a message, which
		// moves the window on. A call admitted in an earlier bucket of the
		// same closed period tallies on the current snapshot.
		if cur := b.snap.Load(); cur.gen == s.gen {
			s = cur
		}
		if !s.within(now.UnixNano()) {
			s = nil
		}
	}
	if o == Failure && p.Probe == 0 && hint <= 0 && s != nil && s.gen == p.Gen {
		if b.quickFailure(s, elapsed) && b.tallyFailure(s) {
			return
		}
		// As a quiet outcome does below. Sealing a tally whose records are
		// half taken (see Breaker.renew) retires it under every call in
		// flight, and a storm of failures has many.
		if cur := b.successor(s, p.Gen, now); cur != nil && b.quickFailure(cur, elapsed) && b.tallyFailure(cur) {
			return
		}
	}
	// A success can trip a rate policy (it may be the call that fills the
	// window up to MinimumCalls, and old buckets leaving a time-based
	// window can raise the rate), so then it waits too.
	mayTrip := o == Success && b.rate && (s == nil || s.mayTrip())
	quiet := p.Probe == 0 && o != Failure && (b.slowAt == 0 || elapsed < b.slowAt) && !mayTrip
	if quiet && s != nil && (o == Ignored || !b.quick) && b.tallyQuiet(s, o) {
		return
	}
	if quiet && c.snap != nil {
		if cur := b.successor(s, p.Gen, now); cur != nil && !(o == Success && b.rate && cur.mayTrip()) && b.tallyQuiet(cur, o) {
			return
		}
	}
	m := b.newMsg(mReport)
	m.permit, m.outcome, m.err, m.hint, m.elapsed = p, o, err, hint, elapsed
	// An outcome that cannot change the state but could not be tallied
	// either (its snapshot was retired, or sealed while the breaker decides
	// a message that may change the generation, and the current one could
	// not take it either; its call ended outside the snapshot's bucket; a
	// message admitted it) waits until applied, unless
	// its generation is over already. Sent without waiting, it could land
	// behind the message being decided while its caller goes on to see
	// the closed state it came before (see Breaker.seal); a lean
	// breaker's success also must not be folded after the caller's next
	// failures (see Breaker.tallyLast). A stale one changes nothing, and
	// what replaced its generation is already visible.
	if quiet && b.snap.Load().gen != p.Gen {
		b.send(m)
		return
	}
	_, _ = b.ask(context.Background(), m)
}

// successor returns the snapshot an outcome of generation gen whose tally
// s refused may go on instead, or nil. A tally retired by a seal whose
// message left the generation as it was: the owner has published since,
// so the outcome goes on the current snapshot, after that message, as if
// admitted under it, if that snapshot takes tallies at now. Until the
// owner publishes, the current snapshot is the sealed one, and the outcome
// waits as a message.
func (b *Breaker) successor(s *snapshot, gen uint64, now time.Time) *snapshot {
	if cur := b.snap.Load(); cur != s && cur.gen == gen && !cur.stop && cur.within(now.UnixNano()) {
		return cur
	}
	return nil
}

// failure tallies a closed-state failure of a lean breaker (no
// count-based window, no ShouldTrip), as successes are tallied, if the
// failure cannot open the circuit. The breaker publishes how far the failures tally may go before a
// failure could open it, in whatever order the tallied outcomes came (see
// Machine.failureRoom); taking a place in the
// tally and checking that limit are one compare-and-swap, so every failure
// the limit allowed is in the tally the breaker folds next. A failure that
// finds no room is not tallied: failure returns false and it is reported
// as a message, which waits and is applied after every outcome tallied so
// far, so it is the one that opens the circuit. So the promise holds that
// a call's outcome is applied when it returns: a tallied failure changes
// nothing the same goroutine's next call or State could see, and Counts
// folds the tallies before it answers.
//
// It also returns false if s has been retired: the caller then tries the
// current snapshot (see Breaker.report), or sends a message.
func (b *Breaker) failure(s *snapshot) bool {
	if s.wide.Load() != nil {
		return false // spread: see snapshot.spreadSuccesses
	}
	s.saw(&s.runS, s.successTally())
	for {
		n := s.failures.Load()
		if n < 0 || n >= s.limit.Load() {
			return false
		}
		if s.failures.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// quickFailure reports whether a failure that took elapsed is, to a
// slow-call policy, like a success that cannot trip it: it was not slow,
// and mayTrip is down (see Machine.SuccessMayTrip). Then only the failure
// policies weigh it, as failureRoom does.
func (b *Breaker) quickFailure(s *snapshot, elapsed time.Duration) bool {
	return b.slowAt == 0 || elapsed < b.slowAt && !s.mayTrip()
}

// tallyFailure tallies a failure that cannot open the circuit, if the
// breaker's policies allow it and there is room (see Breaker.failure and
// Breaker.orderedFailure).
func (b *Breaker) tallyFailure(s *snapshot) bool {
	return b.lean() && b.failure(s) || b.ordered() && b.orderedFailure(s)
}

// records hold an ordered breaker's failures tally: each failure takes the
// first free record, writing in it how many successes the successes tally
// held when it did (plus one, so that a record taken is never zero).
type records []atomic.Uint64

const (
	// minRecords and maxRecords bound how many records a snapshot has:
	// 512 bytes to start with, and up to 8 KiB for a breaker in a storm
	// of failures (see Breaker.sizeRecords).
	minRecords = 64
	maxRecords = 1024
	// stormSpan is how soon records must be replaced for the next to
	// keep a storm's size.
	stormSpan = int64(10 * time.Millisecond)
)

// closedRecord marks the first free record of a retired tally: no failure
// can be taken after it.
const closedRecord = math.MaxUint64

// renew asks the owner, without waiting, to seal a tally whose records
// are half taken, so that it publishes a snapshot with fresh ones before
// they run out: every failure that finds them all taken waits for the
// owner, and under a storm many find them so before it comes round. A
// full mailbox needs no more: the owner settles before each message.
func (b *Breaker) renew() {
	if m := b.newMsg(mSync); !b.act.TryHandle(m) && !b.act.TrySend(m) {
		b.recycle(m)
	}
}

// worn reports whether s's records are half taken (see Breaker.renew).
func (s *snapshot) worn() bool {
	return s.recs != nil && (*s.recs)[len(*s.recs)/2].Load() != 0
}

// sizeRecords returns how many records a new closed snapshot of an
// ordered breaker gets, from how the latest ones went. Records that ran
// out before the owner came round made a failure wait, and under a storm,
// every failure until it did: the next get twice as many. On a busy
// machine the owner may wait for a processor for tens of microseconds, in
// which a storm on one breaker brings hundreds of failures. Records made
// longer than stormSpan ago were not in a storm: back to minRecords. And
// records replaced before half were taken (a slow failure seals them, and
// so does one with a Retry-After) were more than needed: half as many.
// The pending failures' array shrinks with them, once empty.
func (b *Breaker) sizeRecords(now time.Time) int {
	x := b.x
	if x == nil {
		return minRecords // no records made yet
	}
	var r records
	if s := b.snap.Load(); s.recs != nil { // the records being replaced
		r = *s.recs
	}
	switch {
	case len(r) > 0 && taken(r[len(r)-1].Load()):
		x.recSize = min(2*len(r), maxRecords)
	case now.UnixNano()-x.recsAt > stormSpan:
		x.recSize = minRecords
	case len(r) > 0 && !taken(r[len(r)/2].Load()):
		x.recSize = max(len(r)/2, minRecords)
	}
	if len(x.pending) == 0 && cap(x.pending) > 2*max(x.recSize, minRecords) {
		x.pending = nil
	}
	return max(x.recSize, minRecords)
}

// taken reports whether a record holds a failure: it is neither free nor
// closed.
func taken(v uint64) bool { return v != 0 && v != closedRecord }

// orderedFailure tallies a closed-state failure of an ordered breaker
// (a count-based window), if it cannot open the circuit, like failure;
// but a count-based window keeps the order of its calls, which decides
// what it pushes out later, so the tally keeps each failure's place among
// the successes too. A failure reads the successes tally and takes the
// first free record with that figure, in one compare-and-swap: the
// records taken are always the first ones, the figure places it after
// every success its own goroutine tallied before it, and before any it
// tallies after (see Breaker.foldOrdered). The limit is on the records'
// index, as failure's is on the tally.
func (b *Breaker) orderedFailure(s *snapshot) bool {
	if s.recs == nil || s.wide.Load() != nil { // spread: see snapshot.spreadSuccesses
		return false
	}
	r := *s.recs
	for i := s.failures.Load(); i < s.limit.Load() && i < int64(len(r)); i++ {
		saw := s.successTally()
		if saw < 0 {
			return false // retired
		}
		s.saw(&s.runS, saw) // read by nobody but spreadSuccesses here
		if r[i].CompareAndSwap(0, uint64(saw)+1) {
			s.failures.Store(i + 1) // only a hint: it may move back, and cost a retry
			if i == int64(len(r)/2) {
				b.renew()
			}
			return true
		}
		if r[i].Load() == closedRecord {
			return false
		}
	}
	return false
}

// saw records in run that an outcome about to be tallied saw tally as it
// is now, unless a later outcome has recorded more. Recording before
// tallying is what lets fold read the tallies first and the runs after.
func (s *snapshot) saw(run *atomic.Int64, n int64) {
	for r := run.Load(); n > r; r = run.Load() {
		if run.CompareAndSwap(r, n) {
			return
		}
	}
}

// within reports whether a tally taken at t (Unix nanoseconds) may go on
// s: always, but under a time-based window, whose snapshot takes tallies
// only within its bucket.
func (s *snapshot) within(t int64) bool {
	return !s.untallied && (s.bucketEnd == 0 || t >= s.bucketStart && t < s.bucketEnd)
}

// tallyQuiet tallies on s a success or ignored outcome that cannot change
// the state, a lean breaker's success with the failures it saw first (see
// snapshot.saw). It reports false if s did not take it.
func (b *Breaker) tallyQuiet(s *snapshot, o Outcome) bool {
	if o == Success && b.lean() {
		s.saw(&s.runF, s.failures.Load())
	}
	return s.tally(o)
}

// tally counts a success or ignored outcome of a call admitted under s. It
// returns false if s has been retired, in which case the outcome is stale
// and must be reported as a message.
func (s *snapshot) tally(o Outcome) bool {
	if o == Ignored {
		return s.ignored.Add(1) > 0
	}
	return s.addSuccess() > 0
}

// addSuccess adds a success to s's tally, and returns the count where it
// went: the counter's, or its stripe's once spread. It is negative once the
// tally is retired. A success that finds the counter at a multiple of busy
// first looks whether to spread it.
func (s *snapshot) addSuccess() int64 {
	w := s.wide.Load()
	if w == nil && s.successes.Load()%busy == 0 {
		s.spreadSuccesses()
		w = s.wide.Load()
	}
	if w == retiredStripes {
		return retired // not added there: the stripes are every breaker's
	}
	if w != nil {
		return int64(w.add())
	}
	return s.successes.Add(1)
}

// spreadSuccesses spreads s's successes tally over 64 stripes if other
// cores are adding to it right now, and it has taken spreadAfter successes
// since the latest failure tallied on s (runS). It watches the counter for
// 64 loads: one that others add to 8 times meanwhile is busy enough that
// passing its line between cores on every success costs more than the
// stripes. A failure tallied on the spot must read the whole tally (see
// snapshot.saw and Breaker.orderedFailure), so a failure on a spread tally
// goes as a message instead; the owner, which does not tally it either,
// applies it after a seal, which starts the next snapshot with one counter
// again, unless the failures tally is at its limit and the failure cannot
// open the circuit (see Breaker.tallyLast). A breaker whose calls fail one
// time in spreadAfter or more never spreads: each spread costs 4 KiB.
func (s *snapshot) spreadSuccesses() {
	n := s.successes.Load()
	if n < 0 || n-s.runS.Load() < spreadAfter || s.wide.Load() != nil {
		return
	}
	for range 64 {
		m := s.successes.Load()
		if m < 0 {
			return // retired meanwhile
		}
		if m-n >= 8 {
			if s.wide.Load() == nil && s.wide.CompareAndSwap(nil, new(stripes)) {
				s.flags.Or(spreadFlag)
			}
			return
		}
	}
}

// spreadAfter is how many successes a snapshot takes before its tally may
// spread.
const spreadAfter = 8 * busy

// successTally returns the successes tally: the counter, plus its stripes
// once spread. It is negative once retired.
func (s *snapshot) successTally() int64 {
	n := s.successes.Load()
	w := s.wide.Load()
	if n < 0 || w == nil {
		return n
	}
	if w == retiredStripes {
		return retired
	}
	for i := range w {
		v := int64(w[i].n.Load())
		if v < 0 {
			return retired
		}
		n += v
	}
	return n
}

// takeSuccesses returns the successes tally for a fold; if next is retired,
// it retires the tally too, stripes and all, so that a success added after
// finds it negative and goes as a message.
func (s *snapshot) takeSuccesses(next int64) int64 {
	if next != retired {
		return s.successTally()
	}
	n := s.successes.Swap(retired)
	w := s.wide.Swap(retiredStripes) // no stripes made after this: a caller's CompareAndSwap from nil fails
	if w == nil || w == retiredStripes {
		return n // negative if it was retired already
	}
	for i := range w {
		n += int64(w[i].n.Swap(retiredStripe))
	}
	return n
}

// retiredStripes stands in for the stripes of a retired tally, to keep any
// from being made after; nobody adds to them (see addSuccess). Every stripe
// is negative all the same, as a retired tally's.
var retiredStripes = func() *stripes {
	w := new(stripes)
	for i := range w {
		w[i].n.Store(retiredStripe)
	}
	return w
}()

// retiredStripe is retired, as a stripe holds it.
const retiredStripe = uint64(1) << 63

// ask sends a request and waits for the answer. ctx bounds only the wait
// for mailbox room: once queued, a request may change the state (grant a
// probe slot, say), so its answer is always collected, but for a
// subscription's; it comes in microseconds, or the breaker has stopped
// (or a ShouldTrip running on it is slow). Messages are recycled only
// after their answer was received, so a recycled reply channel is always
// empty.
func (b *Breaker) ask(ctx context.Context, m *msg) (reply, error) {
	m.wait = true
	if err := ctx.Err(); err != nil {
		b.recycle(m) // as Send would have, had it picked ctx
		return reply{}, err
	}
	m.here = true
	if b.act.TryHandle(m) { // the breaker was idle: this goroutine handled m
		r := m.answer
		b.drop(m)
		return r, nil
	}
	m.here = false
	if m.reply == nil {
		m.reply = make(chan reply, 1)
	}
	if err := b.act.Send(ctx, m); err != nil {
		b.recycle(m)
		if err == actor.ErrStopped {
			err = ErrClosed
		}
		return reply{}, err
	}
	// Most answers must be taken (a probe slot granted has to be handed
	// back), but a subscription made for a ctx that is done ends with it:
	// that wait may give up, and leaves m to the garbage collector.
	var gaveUp <-chan struct{}
	if m.kind == mSubscribe {
		gaveUp = ctx.Done()
	}
	select {
	case r := <-m.reply:
		b.recycle(m)
		return r, nil
	case <-gaveUp:
		return reply{}, ctx.Err()
	case <-b.act.Done():
		return reply{}, ErrClosed
	}
}

// State returns the circuit's state.
func (b *Breaker) State() State {
	s := b.snap.Load()
	// A hand-driven clock can run past the open period or a probe's lease
	// before the breaker's timer goroutine gets to it: then ask.
	if b.mock && (s.state == Open && b.due(s) || s.state == HalfOpen) {
		if r, err := b.ask(context.Background(), b.newMsg(mState)); err == nil {
			return r.state
		}
	}
	return s.state
}

// Counts returns the breaker's counts, including every outcome reported
// before the call. It waits for the breaker's goroutine, so it costs more
// than [Breaker.State].
func (b *Breaker) Counts() Counts {
	r, err := b.ask(context.Background(), b.newMsg(mCounts))
	if err != nil {
		// Closed: the machine is frozen and safe to read.
		<-b.act.Done()
		return b.m.Counts(b.now().Now())
	}
	return r.counts
}

// Reset closes the circuit and clears the consecutive and window counts.
// Outcomes of calls admitted before it are dropped as stale. It also ends
// an isolation.
func (b *Breaker) Reset() { b.control(mReset) }

// Trip opens the circuit now, unless it is open already; recovery then
// follows as after any trip.
func (b *Breaker) Trip() { b.control(mTrip) }

// Isolate opens the circuit and holds it open until [Breaker.Reset]: no
// timer, no probes. Rejections then carry OpenError.Isolated. On a circuit
// open already it changes no state, so it publishes no transition.
func (b *Breaker) Isolate() { b.control(mIsolate) }

// ForceOpen opens the circuit until the given time (on the breaker's
// clock), or keeps it open at least that long if it is open already;
// recovery then follows as after any trip. It is for signals from outside
// the breaker, such as fleet mode relaying another replica's trip; reason
// becomes the transition's Reason. A time not after now, or an isolated
// circuit, changes nothing. A time past what Unix nanoseconds can hold
// (the year 2262) counts as that limit.
func (b *Breaker) ForceOpen(until time.Time, reason string) {
	m := b.newMsg(mForceOpen)
	// The deadline travels in nanoseconds, where a far date such as year
	// 9999 would overflow into the past and change nothing.
	if last := time.Unix(0, math.MaxInt64); until.After(last) {
		until = last
	} else if first := time.Unix(0, math.MinInt64); until.Before(first) {
		until = first
	}
	m.elapsed = time.Duration(until.UnixNano())
	m.err = errors.New(reason)
	_, _ = b.ask(context.Background(), m)
}

func (b *Breaker) control(k msgKind) { _, _ = b.ask(context.Background(), b.newMsg(k)) }

// Subscribe returns a channel that receives every later transition, in
// order. It never blocks the breaker: if the channel's buffer
// (Config.SubscriberBuffer) is full, transitions are dropped for this
// subscriber and the next one it gets carries the number missed in
// [Transition.Missed]. The channel is closed when ctx is done or the breaker
// is closed.
func (b *Breaker) Subscribe(ctx context.Context) <-chan Transition {
	m := b.newMsg(mSubscribe)
	m.ctx = ctx
	r, err := b.ask(ctx, m)
	if err != nil {
		ch := make(chan Transition)
		close(ch)
		return ch
	}
	return r.sub
}

// Close stops the breaker's goroutine and timer, closes its subscriptions,
// and waits until OnStateChange has seen every transition. The outcomes of
// calls that returned before Close count in Counts after it; those of calls
// still running when it is called may not. Calls after Close return
// [ErrClosed]. Close is idempotent and always returns nil.
func (b *Breaker) Close() error {
	b.flush()
	b.act.Stop()
	if b.x != nil && b.x.runner != nil {
		b.x.runner.Close()
	}
	return nil
}

// flush applies what is queued: outcomes sent without waiting belong to
// calls that have returned, so they should count before the breaker stops.
// An idle breaker has nothing to apply.
func (b *Breaker) flush() {
	if !b.act.Idle() {
		_, _ = b.ask(context.Background(), b.newMsg(mSync))
	}
}

// breakerActor is the breaker as its goroutine sees it: the handler of
// its mailbox, kept apart so that Handle and Exit stay out of the API.
type breakerActor Breaker

func (a *breakerActor) Handle(m *msg) { (*Breaker)(a).handle(m) }
func (a *breakerActor) Exit()         { (*Breaker)(a).exit() }

// handle runs for every message, on whichever goroutine runs the breaker:
// its own, or a caller that found it idle (see Breaker.ask).
func (b *Breaker) handle(m *msg) {
	now := b.now().Now()
	b.settle(now)
	var r reply
	switch m.kind {
	case mAdmit:
		r.permit, r.err = b.m.Admit(now)
	case mReport:
		if !b.tallyLast(now, m) {
			if b.m.mayOpen(now, m.permit, m.outcome, m.hint, m.elapsed) {
				b.seal(now)
			}
			b.m.report(now, m.permit, m.outcome, m.err, m.hint, m.elapsed)
		}
	case mState:
		b.m.Advance(now)
		r.state = b.m.State()
	case mCounts:
		b.m.Advance(now)
		r.counts = b.m.Counts(now)
	case mReset, mTrip, mIsolate, mForceOpen:
		b.seal(now)
		switch m.kind {
		case mReset:
			b.m.Reset(now)
		case mTrip:
			b.m.Trip(now)
		case mIsolate:
			b.m.Isolate(now)
		default:
			b.m.ForceOpen(now, time.Unix(0, int64(m.elapsed)), m.err.Error())
		}
	case mSubscribe:
		x := b.extras()
		if x.hub == nil {
			x.hub = actor.NewHub(func(t Transition, missed uint64) Transition { t.Missed = missed; return t })
		}
		r.sub = x.hub.Subscribe(m.ctx, b.cfg.SubscriberBuffer, func(id uint64) {
			u := b.newMsg(mUnsubscribe)
			u.permit.Gen = id
			b.send(u)
		})
		if x.hub.Len() > 0 {
			b.idle.Or(watched)
		}
	case mUnsubscribe:
		b.x.hub.Unsubscribe(m.permit.Gen)
		if b.x.hub.Len() == 0 {
			b.idle.And(^watched)
		}
	case mWake:
		if b.x != nil && m.permit.Gen == b.x.wakeID { // not a timer that was replaced
			b.x.timerAt = 0
			b.m.Advance(now)
		}
	}
	b.publish(now)
	if m.here {
		m.answer = r
		return
	}
	if m.wait {
		actor.Reply(m.reply, r) // the sender owns m again from here
		return
	}
	b.recycle(m)
}

// settle folds the tallies before a message is decided. A tally whose
// records are half taken is sealed instead, so that publish hands out
// fresh ones (see Breaker.renew). A time-based
// window's snapshot whose bucket is over is sealed instead: a caller that
// read the time within the bucket may still be about to tally there, and
// what it tallies must count before anything decided in a later bucket,
// not after it (a failure tallied late could leave the rate over the
// threshold, with no outcome left to see it).
func (b *Breaker) settle(now time.Time) {
	b.takeRejections()
	if s := b.snap.Load(); s.within(now.UnixNano()) && !s.worn() {
		b.fold(now, s, 0)
	} else {
		b.seal(now)
	}
}

// seal, before a message that may change the generation, folds the
// tallies of a closed circuit's snapshot and retires them. Tallies are taken while the owner applies a message, and
// their callers may see the circuit closed afterwards, until publish: so
// they come before that message in every order those callers can tell,
// and must count before it decides, not as stale after it. Retired, the
// snapshot turns later tallies into messages, which wait behind this one.
// If the generation stays, publish replaces the snapshot all the same.
func (b *Breaker) seal(now time.Time) {
	if s := b.snap.Load(); s.state == Closed && !s.stop {
		b.fold(now, s, retired)
	}
}

// publish refreshes the snapshot, hands new transitions out, and keeps the
// timer armed for the machine's next deadline. It runs before the reply,
// so whoever caused a change sees it as soon as its call returns.
func (b *Breaker) publish(now time.Time) {
	t := now.UnixNano()
	if s := b.snap.Load(); s.gen != b.m.Generation() || !s.within(t) || s.retired() {
		ns := b.newSnapshot(now)
		b.snap.Store(ns)
		b.fold(now, s, retired)
	}
	// Exact probe limits need the breaker's goroutine to hand out slots,
	// but once they are all taken, callers can be turned away without it.
	cur := b.snap.Load()
	b.setFlags(cur, now)
	if b.fails != byMessage {
		cur.limit.Store(b.failureLimit(cur, b.m.failureRoom(now)))
	}
	// Only now hand the transitions out: whoever sees one and calls the
	// breaker must find the snapshot already showing it.
	for _, t := range b.m.TakeTransitions() {
		if b.x != nil && b.x.hub != nil {
			b.x.hub.Publish(t)
		}
		if f := b.cfg.OnStateChange; f != nil {
			x := b.extras()
			if x.runner == nil { // made on the first transition: idle breakers hold no goroutine
				x.runner = actor.NewRunner(func(t Transition) { f(t.Name, t.From, t.To) })
			}
			x.runner.Post(t)
		}
		if e := b.engine.Load(); e != nil {
			e.feed(t)
		}
	}
	at, ok := b.m.Deadline()
	if !ok || b.x != nil && at.UnixNano() == b.x.timerAt {
		return
	}
	x := b.extras()
	if x.timer != nil {
		x.timer.Stop()
	}
	x.wakeID++
	id := x.wakeID
	x.timerAt = at.UnixNano()
	x.timer = b.now().AfterFunc(at.Sub(now), func() {
		w := b.newMsg(mWake)
		w.permit.Gen = id
		b.send(w)
	})
}

// tallyLast applies a lean breaker's closed-state success or failure that
// came as a message (a failure that found no room under the limit, one
// with a positive Retry-After, a slow outcome, an outcome outside its
// snapshot's bucket, a success that may trip a rate policy, and a failure
// sent meanwhile, a call admitted by a message): after everything
// folded so far, so that the run it extends, and the trip it may cause,
// are the run and the trip at that outcome. Its sender waits, so nothing
// the same caller does later can be folded before it. Then, unless it
// opened the circuit or the tally was sealed, it puts the outcome in the
// tallies as already folded and seen after everything tallied so far: the
// next fold rebuilds the run from
// the tallies, and must find it there. It reports whether m was such a
// report.
//
// A failure that finds room under the limit now (a publish since its
// sender looked made some) takes it like a tallied failure, and cannot
// open the circuit. One that finds none is applied, but only after the
// failures tallied since the fold before this message: while the tally is
// at the limit nobody can add to it before the next publish, so the room
// this failure uses is not also taken by tallies applied after it. One
// that may not take room (it was slow, or came while mayTrip was up) but
// finds some retires the tally first, for the same reason.
func (b *Breaker) tallyLast(now time.Time, m *msg) bool {
	s := b.snap.Load()
	if !(b.lean() || b.ordered() && m.outcome == Failure) || m.permit.Gen != s.gen || m.permit.Probe != 0 || s.state != Closed || m.outcome == Ignored {
		return false
	}
	if m.outcome == Failure {
		if m.hint <= 0 && s.within(now.UnixNano()) && b.quickFailure(s, m.elapsed) && b.tallyFailure(s) {
			return true
		}
		if b.ordered() || s.failures.Load() < s.limit.Load() {
			// Failures tallied but not yet applied (see foldOrdered) must
			// all be before this one is judged; and while the tally has
			// room (this failure was slow, or came while mayTrip was up),
			// callers may take it while this one is applied, which uses a
			// place of it too: retire the tally.
			b.seal(now)
		} else {
			b.fold(now, s, 0)
		}
	}
	if b.m.mayOpen(now, m.permit, m.outcome, m.hint, m.elapsed) { // a success can, under a rate policy
		b.seal(now)
	}
	b.m.report(now, m.permit, m.outcome, m.err, m.hint, m.elapsed)
	if b.m.Generation() != s.gen || s.retired() {
		return true // it opened the circuit, or the tally is retired (an ordered breaker's always is): nothing to put back
	}
	if m.outcome == Success {
		s.saw(&s.runF, s.failures.Load())
		s.successes.Add(1)
		s.folded++
	} else {
		s.saw(&s.runS, s.successTally())
		s.failures.Add(1)
		s.foldedF++
	}
	return true
}

// newSnapshot returns a snapshot of the machine as of now, complete before
// anyone can see it: a caller must never find a flag at its zero value
// that the owner was about to set (mayTrip above all, which callers may
// only see fall within a snapshot; see Machine.SuccessMayTrip).
func (b *Breaker) newSnapshot(now time.Time) *snapshot {
	s := &snapshot{state: b.m.State(), gen: b.m.Generation()}
	if b.timed() && s.state == Closed {
		w := b.m.win.width
		s.bucketStart = now.UnixNano() / w * w
		s.bucketEnd = s.bucketStart + w
		// The clock has stepped back: tallies folded into this bucket
		// would count in none. So the snapshot takes none (within is never
		// true), and outcomes go live, until one takes the slot.
		s.untallied = b.m.win.ahead(now)
	}
	if s.state != Closed {
		if b.rejected == nil {
			b.rejected = new(rejections)
		}
		s.err = b.m.OpenError()
		s.refuse = s.state == Open && !b.mock // a hand-driven clock may run past the period first (see due)
	}
	b.setFlags(s, now)
	if b.fails == byMessage {
		return s
	}
	room := b.m.failureRoom(now)
	if b.ordered() && s.state == Closed {
		if n := b.sizeRecords(now); b.m.win.fails > 0 && room > 0 { // failures come in runs: records only then, and if of use
			r := make(records, n)
			s.recs = &r
			b.extras().recsAt = now.UnixNano()
		}
		// Its successes need no sighting (see snapshot.saw): the records
		// place its failures. So the inlined success never looks further.
		s.runF.Store(math.MaxInt64)
	}
	s.limit.Store(b.failureLimit(s, room))
	return s
}

// failureLimit is how far the failures tally of s may go without waiting:
// the tally as last folded plus the machine's room (Machine.failureRoom),
// less the failures read from the tally and not yet applied, within the
// records an ordered breaker has. It never drops within a snapshot: each
// failure applied uses at most one place of room, and outcomes applied
// otherwise only make room.
func (b *Breaker) failureLimit(s *snapshot, room int64) int64 {
	l := s.foldedF + room
	if !b.ordered() {
		return l
	}
	if s.recs == nil {
		return 0
	}
	if b.x != nil {
		l -= int64(len(b.x.pending))
	}
	return min(l, int64(len(*s.recs)))
}

// exit runs on the breaker's goroutine when it stops.
func (b *Breaker) exit() {
	now := b.now().Now()
	b.settle(now)
	b.publish(now) // what the last tallies changed still reaches subscribers
	if b.x != nil && b.x.timer != nil {
		b.x.timer.Stop()
	}
	old := b.snap.Swap(&snapshot{state: b.m.State(), gen: b.m.Generation(), stop: true})
	b.fold(now, old, retired)
	b.takeRejections() // those decided from old before the swap
	if b.x != nil && b.x.hub != nil {
		b.x.hub.Close()
	}
	if e := b.engine.Load(); e != nil {
		e.forget(b)
	}
}

// takeRejections moves the rejections counted since it last ran into the
// machine. Once per message is enough for Counts to include every
// rejection made before it was asked.
func (b *Breaker) takeRejections() {
	if b.rejected != nil {
		b.m.Reject(b.rejected.take())
	}
}

// fold moves what callers added to s's tallies since the last fold into
// the machine. next is 0, or retired when s is being replaced: then the
// tallies are retired too.
func (b *Breaker) fold(now time.Time, s *snapshot, next int64) {
	if s.bucketEnd != 0 {
		// Tallied within the bucket: they count in it, however late the
		// fold, and even if the clock has stepped back since.
		now = time.Unix(0, min(max(now.UnixNano(), s.bucketStart), s.bucketEnd-1))
	}
	p := Permit{Gen: s.gen}
	if n := s.ignored.Swap(next); n > 0 {
		b.m.countN(now, p, Ignored, uint64(n))
	}
	if b.ordered() {
		b.foldOrdered(now, s, p, next)
		return
	}
	if !b.lean() {
		// The successes tally only grows, until retired, like a lean
		// breaker's.
		n := s.takeSuccesses(next)
		if n > s.folded {
			b.m.countN(now, p, Success, uint64(n-s.folded))
			s.folded = n
		}
		return
	}
	// The totals first, then what the latest outcomes saw: an outcome
	// records what it saw before it adds itself, so every outcome in the
	// totals has its sighting in the runs read after.
	succ, fail := s.takeSuccesses(next), s.failures.Load()
	if next == retired {
		fail = s.failures.Swap(retired)
	}
	if succ <= s.folded && fail <= s.foldedF {
		return
	}
	runF := max(fail-s.runF.Load(), 0) // failures after the latest success
	runS := max(succ-s.runS.Load(), 0) // successes after the latest failure
	b.m.reportTallies(now, p, uint64(succ-s.folded), uint64(fail-s.foldedF), uint64(runS), uint64(runF))
	s.folded, s.foldedF = succ, fail
}

// foldOrdered is fold for an ordered breaker: it applies the successes
// tallied since the last fold and the failures in the records, each
// failure after as many successes of the tally as it saw, so that every
// goroutine's outcomes go into the window in the order it had them.
//
// It reads the successes tally first and the records after. A failure in
// the records saw no more successes than there were when its record was
// taken, but it may have seen more than the fold read: it waits in
// pending for a fold that has read them. A failure taken after the fold
// read its record (found it free) took it after the successes were read,
// so it may go after all of them: its goroutine's next success comes after
// it. Retiring, the breaker swaps the successes tally out and closes the
// first free record, so that no outcome can be taken after those it
// applies, and every failure in the records saw no more successes than it
// read: nothing is left pending.
func (b *Breaker) foldOrdered(now time.Time, s *snapshot, p Permit, next int64) {
	succ := s.takeSuccesses(next)
	if succ >= 0 { // not retired already
		b.foldRecords(now, s, p, succ, next)
	}
}

// foldRecords is the rest of foldOrdered, once it has read the successes
// tally as succ.
func (b *Breaker) foldRecords(now time.Time, s *snapshot, p Permit, succ, next int64) {
	var pending []uint64
	if s.recs != nil {
		r := *s.recs
		pending = b.extras().pending
		for ; s.foldedF < int64(len(r)); s.foldedF++ {
			v := r[s.foldedF].Load()
			if v == 0 && next == retired && !r[s.foldedF].CompareAndSwap(0, closedRecord) {
				v = r[s.foldedF].Load() // taken just now
			}
			if v == 0 || v == closedRecord {
				break
			}
			pending = append(pending, v-1)
		}
		slices.Sort(pending)
	}
	n, _ := slices.BinarySearch(pending, uint64(succ)+1) // those that saw no more than succ
	if succ > s.folded || n > 0 {
		b.m.reportOrdered(now, p, uint64(s.folded), uint64(succ-s.folded), pending[:n])
	}
	s.folded = succ
	if s.recs != nil {
		b.x.pending = slices.Delete(pending, 0, n)
	}
}

// rejections counts rejected calls: callers add, the owner takes. It
// starts as one counter, 128 bytes for a breaker that trips. A breaker
// rejecting busy calls within spreadWithin spreads it over 64 cache lines:
// the outage that trips a busy breaker sends every core to it at once, and
// cores sharing one line would pass it back and forth on every rejection.
// A breaker that rejects more slowly, however long, keeps its one counter.
type rejections struct {
	wide atomic.Pointer[stripes] // made once busy
	mark atomic.Int64            // when the count last reached a multiple of busy, in Unix nanoseconds
	_    [48]byte                // one sits on a line of its own: every rejection writes it
	one  stripe
}

const (
	// busy is how many rejections, or successes, on one counter make a
	// caller ask whether to spread them.
	busy = 1 << 10
	// spreadWithin is how soon after the last multiple of busy the next
	// one must come for the breaker to spread: a million rejections a
	// second, where a line passed between cores on each would cost a
	// tenth of a core.
	spreadWithin = int64(time.Millisecond)
)

// add counts a rejection and returns the count on its counter so far; on
// every busy-th, the caller calls spread.
func (r *rejections) add() uint64 {
	if w := r.wide.Load(); w != nil {
		return w.add()
	}
	return r.one.n.Add(1)
}

// spread makes the breaker count rejections over 64 stripes from now on if
// the last busy of them came within spreadWithin. It is called by the
// caller that finds the count at a multiple of busy, so that an open
// breaker, whose goroutine has nothing to do, need not wake; that caller
// makes the stripes, the one allocation a rejection may make, once in a
// breaker's life.
func (r *rejections) spread(clk clock.Clock) {
	if r.wide.Load() != nil {
		return
	}
	t := clk.Now().UnixNano()
	if prev := r.mark.Swap(t); prev != 0 && t-prev < spreadWithin {
		r.wide.CompareAndSwap(nil, new(stripes))
	}
}

// take returns the count so far and starts again from zero.
func (r *rejections) take() uint64 {
	n := r.one.n.Swap(0)
	if w := r.wide.Load(); w != nil {
		n += w.take()
	}
	return n
}

// stripes is a counter spread over cache lines.
type stripes [64]stripe

type stripe struct {
	n atomic.Uint64
	_ [56]byte
}

func (s *stripes) add() uint64 {
	var here byte
	// The address of a local variable is goroutine-stable: each goroutine
	// keeps hitting the same stripe, so stripes stay in the cache of the
	// core that runs it. Stacks are aligned to their size, 2 KiB and up,
	// so the address is hashed (Fibonacci hashing: the top six bits of the
	// product depend on every bit above the eleventh); its low bits alone
	// would leave goroutines with grown stacks a few stripes to share. Two
	// goroutines running at once share a stripe about a time in 64.
	return s[uint64(uintptr(unsafe.Pointer(&here))>>11)*0x9E3779B97F4A7C15>>58].n.Add(1)
}

// take returns the count so far and starts again from zero.
func (s *stripes) take() (n uint64) {
	for i := range s {
		if s[i].n.Load() != 0 { // a load leaves an idle stripe where it is; a swap would fetch it
			n += s[i].n.Swap(0)
		}
	}
	return n
}
