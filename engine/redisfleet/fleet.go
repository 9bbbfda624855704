package redisfleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nodus/circuitbreaker/engine"
)

// Options configure a [Fleet]. Zero values mean the documented defaults;
// negative values are an error.
type Options struct {
	// Replica names this process in votes and events; it must not contain
	// '|'. Default: host, pid and a random suffix.
	Replica string
	// Prefix starts every key and the event channel. Default "cb:".
	Prefix string
	// Quorum is how many replicas must have tripped a breaker, within
	// VoteTTL of each other, to open it fleet-wide. Default 2.
	Quorum int
	// VoteTTL is how long a replica's trip counts as a vote. Default 30s.
	VoteTTL time.Duration
	// Resync is how often the fleet re-reads the state of every local
	// breaker, to apply events pub/sub lost. Default 1s.
	Resync time.Duration
	// Timeout bounds every Redis operation. Default 250ms.
	Timeout time.Duration
	// ProbeLease is how long one replica may probe a breaker the fleet
	// opened before another may try. Default 5s.
	ProbeLease time.Duration

	// FailureRate, if set, also opens a breaker fleet-wide when the share
	// of failures across every replica's calls reaches it over Window,
	// once there are MinimumCalls calls and failures come from Quorum
	// replicas: a rate no single replica sees on its own. Every
	// BatchInterval the fleet sends each breaker's outcome counts since the
	// last batch, one script per breaker in one pipeline: Redis traffic
	// follows the number of breakers, never the call rate. 0 turns it off;
	// otherwise it must be in (0, 1].
	FailureRate float64
	// MinimumCalls is how many calls across the fleet the window must hold
	// before FailureRate applies. Default 20.
	MinimumCalls int
	// Window is the span of the fleet-wide failure rate, in ten buckets.
	// Default 10s.
	Window time.Duration
	// BatchInterval is how often outcome counts are sent. Default 250ms.
	BatchInterval time.Duration
	// OpenFor is how long a fleet-wide rate trip opens the breaker.
	// Default 30s.
	OpenFor time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Quorum < 0 || o.VoteTTL < 0 || o.Resync < 0 || o.Timeout < 0 || o.ProbeLease < 0 {
		return o, fmt.Errorf("redisfleet: Quorum, VoteTTL, Resync, Timeout and ProbeLease must be >= 0, got %d, %s, %s, %s, %s", o.Quorum, o.VoteTTL, o.Resync, o.Timeout, o.ProbeLease)
	}
	if o.Replica == "" {
		host, _ := os.Hostname()
		var b [3]byte
		_, _ = rand.Read(b[:])
		o.Replica = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if strings.Contains(o.Replica, "|") {
		return o, fmt.Errorf("redisfleet: Replica must not contain '|', got %q", o.Replica)
	}
	if o.Prefix == "" {
		o.Prefix = "cb:"
	}
	if o.Quorum == 0 {
		o.Quorum = 2
	}
	if o.VoteTTL == 0 {
		o.VoteTTL = 30 * time.Second
	}
	if o.Resync == 0 {
		o.Resync = time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 250 * time.Millisecond
	}
	if o.ProbeLease == 0 {
		o.ProbeLease = 5 * time.Second
	}
	if !(o.FailureRate >= 0 && o.FailureRate <= 1) || o.MinimumCalls < 0 || o.Window < 0 || o.BatchInterval < 0 || o.OpenFor < 0 {
		return o, fmt.Errorf("redisfleet: FailureRate must be in [0, 1] and MinimumCalls, Window, BatchInterval, OpenFor >= 0, got %v, %d, %s, %s, %s", o.FailureRate, o.MinimumCalls, o.Window, o.BatchInterval, o.OpenFor)
	}
	if o.MinimumCalls == 0 {
		o.MinimumCalls = 20
	}
	if o.Window == 0 {
		o.Window = 10 * time.Second
	}
	if o.BatchInterval == 0 {
		o.BatchInterval = 250 * time.Millisecond
	}
	if o.OpenFor == 0 {
		o.OpenFor = 30 * time.Second
	}
	return o, nil
}

// Fleet relays one engine's breakers to and from Redis. Create one with
// [New]; Close stops it.
type Fleet struct {
	e    *engine.Engine
	rdb  redis.UniversalClient
	o    Options
	stop context.CancelFunc
	done chan struct{}

	// Owned by the fleet's goroutine.
	gens map[string]int64           // the newest generation seen per breaker
	sent map[*engine.Breaker]counts // outcome totals already sent; a breaker made anew under a name starts over
	// spare is the map report fills next, swapped with sent: a sweep over
	// many breakers then allocates no map of them each time.
	spare map[*engine.Breaker]counts
}

// reasonPrefix marks transitions the fleet caused, so they are not voted
// on again.
const reasonPrefix = "fleet: "

// New starts relaying e's breakers through rdb. It returns an error if o
// is invalid; Redis errors never fail it, as the fleet retries on its own.
// Configure rdb so no operation can outlive its context
// (redis.Options.ContextTimeoutEnabled) and with short dial, read and
// write timeouts, so a slow Redis cannot hold up the fleet; see
// docs/fleet.md in the repository.
func New(e *engine.Engine, rdb redis.UniversalClient, o Options) (*Fleet, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{e: e, rdb: rdb, o: o, stop: cancel, done: make(chan struct{}), gens: map[string]int64{}, sent: map[*engine.Breaker]counts{}}
	local := e.Subscribe(ctx)
	ps := rdb.Subscribe(ctx, f.channel())
	go f.run(ctx, local, ps)
	return f, nil
}

// Close stops the fleet's goroutine and its subscriptions. The breakers
// keep working on their own, and rdb is left open for its owner.
func (f *Fleet) Close() error {
	f.stop()
	<-f.done
	return nil
}

// Replica returns the name this process uses in the fleet.
func (f *Fleet) Replica() string { return f.o.Replica }

func (f *Fleet) channel() string           { return f.o.Prefix + "events" }
func (f *Fleet) key(name, k string) string { return f.o.Prefix + "{" + name + "}:" + k }

func (f *Fleet) run(ctx context.Context, local <-chan engine.Transition, ps *redis.PubSub) {
	defer close(f.done)
	defer ps.Close()
	remote := ps.Channel()
	tick := time.NewTicker(f.o.Resync)
	defer tick.Stop()
	var batch <-chan time.Time // nil unless the fleet-wide rate is on
	if f.o.FailureRate > 0 {
		t := time.NewTicker(f.o.BatchInterval)
		defer t.Stop()
		batch = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case t, ok := <-local:
			if !ok {
				return // the engine is closed
			}
			f.local(ctx, t)
		case m, ok := <-remote:
			if ok {
				f.remote(m.Payload)
			}
		case <-tick.C:
			f.resync(ctx)
		case <-batch:
			f.report(ctx)
		}
	}
}

// retryAfterError is a failure that carries the upstream's own open
// period, as engine's trip policies recognise it.
type retryAfterError interface {
	error
	RetryAfter() time.Duration
}

// local relays a transition of one of this engine's breakers.
func (f *Fleet) local(ctx context.Context, t engine.Transition) {
	if strings.HasPrefix(t.Reason, reasonPrefix) {
		return // the fleet's own doing
	}
	switch {
	case t.To == engine.Open:
		explicit := "0"
		if _, ok := errors.AsType[retryAfterError](t.Cause); ok {
			explicit = "1" // the upstream set the period: no quorum needed
		}
		openMs := max(t.OpenUntil.Sub(t.At).Milliseconds(), 1)
		f.eval(ctx, voteScript, t.Name, f.o.Replica, f.o.VoteTTL.Milliseconds(), f.o.Quorum, openMs, explicit)
	case t.From == engine.HalfOpen && t.To == engine.Closed:
		f.eval(ctx, closeScript, t.Name, f.o.Replica)
	case t.To == engine.HalfOpen:
		f.leaseProbe(ctx, t)
	}
}

// leaseProbe lets one replica at a time probe a breaker the fleet opened:
// the first to reach half-open takes a lease in Redis; the others go back
// to open until the lease ends, when they may try to take it in turn. A
// breaker that is open on its own evidence only (no fleet state) probes
// freely. Redis errors leave the probe to the local breaker.
func (f *Fleet) leaseProbe(ctx context.Context, t engine.Transition) {
	if _, fleetOpened := f.gens[t.Name]; !fleetOpened {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	keys := []string{f.key(t.Name, "state"), f.key(t.Name, "probe")}
	holder, err := leaseScript.Run(ctx, f.rdb, keys, f.o.Replica, f.o.ProbeLease.Milliseconds()).Text()
	if err != nil || holder == f.o.Replica || holder == "" {
		return
	}
	if b, ok := f.e.Lookup(t.Name); ok {
		b.ForceOpen(f.e.Clock().Now().Add(f.o.ProbeLease), reasonPrefix+holder+" holds the probe lease")
	}
}

// eval runs a script for a breaker. A generation it returns is this
// replica's own doing, already applied locally: remember it, so a resync
// does not apply it again.
func (f *Fleet) eval(ctx context.Context, s *redis.Script, name string, args ...any) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	keys := []string{f.key(name, "state"), f.key(name, "votes"), f.key(name, "probe")}
	argv := append([]any{name, f.channel()}, args...)
	// An error leaves the decision to the local breakers; the next event or
	// resync tries again.
	if gen, err := s.Run(ctx, f.rdb, keys, argv...).Int64(); err == nil && gen > f.gens[name] {
		f.gens[name] = gen
	}
}

// remote applies a published event: "name|gen|open|ms|replica" or
// "name|gen|closed|0|replica".
func (f *Fleet) remote(payload string) {
	parts := strings.Split(payload, "|")
	if len(parts) != 5 {
		return
	}
	gen, err1 := strconv.ParseInt(parts[1], 10, 64)
	ms, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	if parts[4] == f.o.Replica {
		f.gens[parts[0]] = max(f.gens[parts[0]], gen) // our own event: already applied
		return
	}
	f.apply(parts[0], gen, parts[2], time.Duration(ms)*time.Millisecond, parts[4])
}

// apply brings a local breaker in line with the fleet's state, if the
// generation is newer than any seen.
func (f *Fleet) apply(name string, gen int64, state string, left time.Duration, by string) {
	b, ok := f.e.Lookup(name)
	if !ok {
		return
	}
	seen, known := f.gens[name]
	if known && gen <= seen {
		return
	}
	f.gens[name] = gen
	switch state {
	case "open":
		if left > 0 {
			b.ForceOpen(f.e.Clock().Now().Add(left), reasonPrefix+"opened by "+by)
		}
	case "closed":
		// A close seen at resync without having seen the open would reset a
		// breaker open on its own evidence; only relay closes that follow a
		// known generation.
		if known && b.State() != engine.Closed {
			b.Reset()
		}
	}
}

type counts struct{ calls, failures uint64 }

// report sends each breaker's outcome counts since the last batch, one
// script per breaker with news, in one pipeline. Counts a batch could not
// send are sent with the next.
func (f *Fleet) report(ctx context.Context) {
	type news struct {
		b    *engine.Breaker
		name string
		now  counts
		d    counts
	}
	var batch []news
	live := f.spare
	if live == nil {
		live = make(map[*engine.Breaker]counts, len(f.sent))
	}
	f.e.Range(func(b *engine.Breaker) bool {
		c := b.Counts()
		now := counts{calls: c.Successes + c.Failures, failures: c.Failures}
		last := f.sent[b]
		live[b] = last
		if now.calls > last.calls {
			batch = append(batch, news{b, b.Name(), now, counts{now.calls - last.calls, now.failures - last.failures}})
		}
		return true
	})
	clear(f.sent)
	f.sent, f.spare = live, f.sent // breakers the engine has forgotten drop out
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	pipe := f.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	bucket := (f.o.Window / 10).Milliseconds()
	for i, n := range batch {
		keys := []string{f.key(n.name, "state"), f.key(n.name, "votes"), f.key(n.name, "window")}
		cmds[i] = rateScript.Eval(ctx, pipe, keys, n.name, f.channel(), f.o.Replica, n.d.calls, n.d.failures,
			max(bucket, 1), f.o.FailureRate, f.o.MinimumCalls, f.o.Quorum, f.o.VoteTTL.Milliseconds(), f.o.OpenFor.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return // nothing is marked sent: the next batch carries these counts too
	}
	for i, n := range batch {
		if gen, err := cmds[i].Int64(); err == nil {
			f.sent[n.b] = n.now
			if gen > f.gens[n.name] {
				f.gens[n.name] = gen
				if b, ok := f.e.Lookup(n.name); ok {
					// The fleet opened it on our counts: apply it here too.
					b.ForceOpen(f.e.Clock().Now().Add(f.o.OpenFor), reasonPrefix+"fleet failure rate")
				}
			}
		}
	}
}

// resync reads every local breaker's fleet state in one pipeline, and
// forgets the generations of breakers the engine has forgotten, so that
// names that come and go (tenants, hosts) do not pile up.
func (f *Fleet) resync(ctx context.Context) {
	var names []string
	f.e.Range(func(b *engine.Breaker) bool {
		names = append(names, b.Name())
		return true
	})
	maps.DeleteFunc(f.gens, func(name string, _ int64) bool {
		_, ok := f.e.Lookup(name)
		return !ok
	})
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	pipe := f.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HMGet(ctx, f.key(n, "state"), "gen", "state", "until", "by")
	}
	timeCmd := pipe.Time(ctx)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return
	}
	now := timeCmd.Val()
	for i, n := range names {
		v := cmds[i].Val()
		if len(v) != 4 || v[0] == nil {
			continue
		}
		gen, _ := strconv.ParseInt(fmt.Sprint(v[0]), 10, 64)
		until, _ := strconv.ParseInt(fmt.Sprint(v[2]), 10, 64)
		left := time.UnixMilli(until).Sub(now)
		f.apply(n, gen, fmt.Sprint(v[1]), left, fmt.Sprint(v[3]))
	}
}

// voteScript records a replica's trip and opens the breaker fleet-wide
// when there is a quorum of live votes or an explicit signal. The open
// period merges as the later deadline. Time is Redis's, so replicas'
// clocks need not agree.
//
// KEYS: state, votes. ARGV: name, channel, replica, vote TTL ms, quorum,
// open ms, explicit ("1" or "0").
var voteScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('ZADD', KEYS[2], now + ttl, ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('PEXPIRE', KEYS[2], ttl)
local votes = redis.call('ZCARD', KEYS[2])
if votes < tonumber(ARGV[5]) and ARGV[7] ~= '1' then
  return 0
end
local untilMs = now + tonumber(ARGV[6])
local cur = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if redis.call('HGET', KEYS[1], 'state') == 'open' and cur > untilMs then
  untilMs = cur
end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'state', 'open', 'until', untilMs, 'by', ARGV[3])
redis.call('PUBLISH', ARGV[2], ARGV[1] .. '|' .. gen .. '|open|' .. (untilMs - now) .. '|' .. ARGV[3])
return gen
`)

// closeScript closes an open breaker fleet-wide after a replica's probe
// succeeded, and forgets the votes.
//
// KEYS: state, votes, probe. ARGV: name, channel, replica.
var closeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then
  return 0
end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'state', 'closed', 'until', 0, 'by', ARGV[3])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[1] .. '|' .. gen .. '|closed|0|' .. ARGV[3])
return gen
`)

// leaseScript takes the probe lease of a breaker the fleet holds open, or
// says who has it. It returns the holder, or "" when the fleet's state is
// not open (nothing to lease).
//
// KEYS: state, probe. ARGV: replica, lease ms.
var leaseScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then
  return ''
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return ARGV[1]
end
return redis.call('GET', KEYS[2]) or ''
`)

// rateScript adds one replica's outcome counts to a breaker's fleet-wide
// window (ten buckets of the window's span, in a hash) and opens the
// breaker fleet-wide when the failure rate over the window reaches the
// threshold with enough calls, and failures come from a quorum of
// replicas. It returns the new generation if it opened the breaker, else 0.
//
// KEYS: state, votes, window. ARGV: name, channel, replica, calls,
// failures, bucket ms, rate, minimum calls, quorum, vote TTL ms, open ms.
var rateScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local width = tonumber(ARGV[6])
local idx = math.floor(now / width)
redis.call('HINCRBY', KEYS[3], 'c' .. idx, ARGV[4])
redis.call('HINCRBY', KEYS[3], 'f' .. idx, ARGV[5])
redis.call('PEXPIRE', KEYS[3], width * 11)
if tonumber(ARGV[5]) > 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[10]), ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[10])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local calls, fails = 0, 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local b = tonumber(string.sub(all[i], 2))
  if b <= idx - 10 then
    redis.call('HDEL', KEYS[3], all[i])
  elseif string.sub(all[i], 1, 1) == 'c' then
    calls = calls + tonumber(all[i + 1])
  else
    fails = fails + tonumber(all[i + 1])
  end
end
if calls < tonumber(ARGV[8]) or fails / calls < tonumber(ARGV[7]) then
  return 0
end
if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[9]) then
  return 0
end
if redis.call('HGET', KEYS[1], 'state') == 'open' and tonumber(redis.call('HGET', KEYS[1], 'until') or '0') > now then
  return 0
end
local untilMs = now + tonumber(ARGV[11])
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'state', 'open', 'until', untilMs, 'by', ARGV[3])
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[1] .. '|' .. gen .. '|open|' .. ARGV[11] .. '|' .. ARGV[3])
return gen
`)
