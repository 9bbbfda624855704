package redisfleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/nodus/circuitbreaker/engine"
)

func TestMain(m *testing.M) {
	if id := os.Getenv("REDISFLEET_REPLICA"); id != "" {
		replicaProcess(os.Getenv("REDISFLEET_SOCK"), id) // a child of TestSeparateProcesses
		return
	}
	goleak.VerifyTestMain(m,
		// go-redis closes its pools' connections asynchronously.
		goleak.IgnoreTopFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).reaper"),
	)
}

// redisServer starts a throwaway redis-server on a unix socket with
// persistence off, and stops it when the test ends. Under CI=true a
// missing redis-server is a failure, not a skip.
type redisServer struct {
	t    *testing.T
	sock string
	cmd  *exec.Cmd
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found: CI must install it (apt-get install -y redis-server)")
		}
		t.Skip("redis-server not installed; apt-get install -y redis-server")
	}
	dir, err := os.MkdirTemp("", "redisfleet") // short: unix socket paths are limited
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &redisServer{t: t, sock: filepath.Join(dir, "redis.sock")}
	s.cmd = exec.Command(bin, "--port", "0", "--unixsocket", s.sock, "--save", "", "--appendonly", "no")
	s.start(bin)
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) start(bin string) {
	s.t.Helper()
	if s.cmd.Process != nil {
		s.cmd = exec.Command(bin, s.cmd.Args[1:]...)
	}
	require.NoError(s.t, s.cmd.Start())
	c := s.client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		require.True(s.t, time.Now().Before(deadline), "redis-server did not come up")
		time.Sleep(10 * time.Millisecond) // polling a process we started, not waiting on our own code
	}
}

func (s *redisServer) kill() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

func (s *redisServer) client() *redis.Client { return unixClient(s.sock) }

// unixClient is configured the way docs/fleet.md recommends: nothing may
// outlive its context, and nothing retries blindly.
func unixClient(sock string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Network:               "unix",
		Addr:                  sock,
		ContextTimeoutEnabled: true,
		DialTimeout:           200 * time.Millisecond,
		ReadTimeout:           200 * time.Millisecond,
		WriteTimeout:          200 * time.Millisecond,
		PoolTimeout:           200 * time.Millisecond,
		MaxRetries:            -1,
	})
}

type replica struct {
	e     *engine.Engine
	f     *Fleet
	db    *engine.Breaker
	trans <-chan engine.Transition
}

func newReplica(t *testing.T, s *redisServer, id string, quorum int, cfg engine.Config) *replica {
	t.Helper()
	return newReplicaWith(t, s, cfg, Options{Replica: id, Quorum: quorum, Resync: 100 * time.Millisecond})
}

func newReplicaWith(t *testing.T, s *redisServer, cfg engine.Config, o Options) *replica {
	t.Helper()
	e, err := engine.New(cfg)
	require.NoError(t, err)
	rdb := s.client()
	f, err := New(e, rdb, o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{e: e, f: f, db: e.Breaker("db"), trans: e.Breaker("db").Subscribe(ctx)}
	t.Cleanup(func() {
		cancel()
		_ = f.Close()
		_ = e.Close()
		_ = rdb.Close()
	})
	return r
}

var errDown = errors.New("db down")

// await waits for the breaker's next transition to want, or fails after a
// bound: what crosses processes through Redis takes real time.
func (r *replica) await(t *testing.T, want engine.State) engine.Transition {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case tr := <-r.trans:
			if tr.To == want {
				return tr
			}
		case <-timeout:
			t.Fatalf("breaker never went %s", want)
		}
	}
}

func TestQuorumOpensTheFleet(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{FailureThreshold: 1, RecoveryTimeout: time.Minute}
	a, b, c := newReplica(t, s, "a", 2, cfg), newReplica(t, s, "b", 2, cfg), newReplica(t, s, "c", 2, cfg)

	require.Error(t, a.db.Call(func() error { return errDown }))
	a.await(t, engine.Open)
	// Wait for a's vote to land in Redis (a's fleet relays it on its own
	// goroutine): one replica is no quorum, so c stays closed.
	rdb := s.client()
	defer rdb.Close()
	votes := a.f.key("db", "votes")
	require.Eventually(t, func() bool { return rdb.ZCard(context.Background(), votes).Val() == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, engine.Closed, c.db.State(), "one bad replica does not open the fleet")

	require.Error(t, b.db.Call(func() error { return errDown }))
	tr := c.await(t, engine.Open)
	assert.Contains(t, tr.Reason, "fleet: opened by")
	require.ErrorIs(t, c.db.Call(func() error { return nil }), engine.ErrOpen, "c never saw a failure, yet rejects")
	assert.WithinDuration(t, time.Now().Add(time.Minute), tr.OpenUntil, 5*time.Second)
}

type retryAfter struct{}

func (retryAfter) Error() string             { return "429" }
func (retryAfter) RetryAfter() time.Duration { return 30 * time.Second }

func TestExplicitSignalNeedsNoQuorum(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{RecoveryTimeout: time.Second}
	a, b := newReplica(t, s, "a", 3, cfg), newReplica(t, s, "b", 3, cfg)
	start := time.Now()
	require.Error(t, a.db.Call(func() error { return retryAfter{} }))
	tr := b.await(t, engine.Open)
	t.Logf("converged: b opened %s after a's trip", time.Since(start).Round(10*time.Microsecond))
	assert.WithinDuration(t, time.Now().Add(30*time.Second), tr.OpenUntil, 5*time.Second, "the upstream's wait, not b's recovery timeout")
}

func TestOneProbeClosesTheFleet(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{FailureThreshold: 1, RecoveryTimeout: 200 * time.Millisecond}
	a, b := newReplica(t, s, "a", 1, cfg), newReplica(t, s, "b", 1, cfg)
	require.Error(t, a.db.Call(func() error { return errDown }))
	b.await(t, engine.Open)
	a.await(t, engine.HalfOpen)
	start := time.Now()
	require.NoError(t, a.db.Call(func() error { return nil }), "a's probe succeeds")
	b.await(t, engine.Closed)
	t.Logf("converged: b closed %s after a's probe", time.Since(start).Round(10*time.Microsecond))
	assert.Equal(t, engine.Closed, b.db.State())
}

func TestRedisDownNeverBlocksCalls(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{FailureThreshold: 1, RecoveryTimeout: 100 * time.Millisecond}
	a, b := newReplica(t, s, "a", 1, cfg), newReplica(t, s, "b", 1, cfg)
	s.kill()

	// Calls and trips go on locally while Redis is gone.
	start := time.Now()
	for i := range 1000 {
		err := a.db.Call(func() error {
			if i%100 == 0 {
				return errDown
			}
			return nil
		})
		_ = err
	}
	assert.Less(t, time.Since(start), 2*time.Second, "no call waited on Redis")
	assert.Equal(t, engine.Closed, b.db.State(), "b decides alone meanwhile")

	// Redis returns; the fleet picks up again.
	bin, err := exec.LookPath("redis-server")
	require.NoError(t, err)
	s.start(bin)
	require.Eventually(t, func() bool {
		a.db.Reset()
		_ = a.db.Call(func() error { return errDown }) // trips a again, which votes
		select {
		case tr := <-b.trans:
			return tr.To == engine.Open
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "after a restart, a trip reaches b again")
}

func TestOptions(t *testing.T) {
	_, err := New(nil, nil, Options{Quorum: -1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Quorum")
	_, err = New(nil, nil, Options{Replica: "a|b"})
	assert.Contains(t, fmt.Sprint(err), "Replica")
}

// A stopped (SIGSTOP) redis-server accepts connections but never answers:
// the worst case for a client. Calls must not notice, and the fleet's
// goroutine must still stop promptly.
func TestRedisUnresponsiveNeverBlocksCalls(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{FailureThreshold: 1, RecoveryTimeout: 50 * time.Millisecond}
	a := newReplica(t, s, "a", 1, cfg)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGSTOP))
	defer func() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }()

	worst := time.Duration(0)
	for i := range 500 {
		start := time.Now()
		_ = a.db.Call(func() error {
			if i%50 == 0 {
				return errDown // trips: the fleet's vote now hangs on Redis, not the caller
			}
			return nil
		})
		worst = max(worst, time.Since(start))
	}
	assert.Less(t, worst, 100*time.Millisecond, "no call waited on the stopped Redis")
	t.Logf("slowest of 500 calls with Redis stopped: %s", worst)

	start := time.Now()
	require.NoError(t, a.f.Close())
	assert.Less(t, time.Since(start), 2*time.Second, "Close is bounded by the operation timeout")
}

// TestLoadCommandsBoundedByResync: three engines with 1000 breakers each
// under steady traffic. Redis hears from the fleets on resyncs (one
// pipeline per engine) and on trips, never per call.
func TestLoadCommandsBoundedByResync(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	s := startRedis(t)
	const engines, breakers, run = 3, 1000, 2 * time.Second // newReplica resyncs every 100ms
	admin := s.client()
	defer admin.Close()
	var bs []*engine.Breaker
	for i := range engines {
		r := newReplica(t, s, fmt.Sprint("r", i), 2, engine.Config{})
		for j := range breakers {
			bs = append(bs, r.e.Breaker(fmt.Sprint("upstream-", j)))
		}
	}
	before := commands(t, admin)
	start := time.Now()
	calls := 0
	for time.Since(start) < run {
		for _, b := range bs {
			_ = b.Call(func() error { return nil })
			calls++
		}
	}
	elapsed := time.Since(start)
	cmds := commands(t, admin) - before
	t.Logf("%d calls, %d Redis commands in %s: %.0f calls/s, %.0f commands/s",
		calls, cmds, elapsed.Round(time.Millisecond), float64(calls)/elapsed.Seconds(), float64(cmds)/elapsed.Seconds())
	assert.Greater(t, calls, 10*cmds, "Redis traffic does not follow the call rate")
}

// commands returns how many commands the server has processed.
func commands(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO")
	return 0
}

// When a fleet-wide open period ends, one replica probes; the others wait
// out its lease, and its success closes them all.
func TestOneReplicaProbesAtATime(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{FailureThreshold: 1, RecoveryTimeout: 200 * time.Millisecond}
	var rs []*replica
	for _, id := range []string{"a", "b", "c"} {
		rs = append(rs, newReplicaWith(t, s, cfg, Options{Replica: id, Quorum: 1, Resync: 100 * time.Millisecond, ProbeLease: 3 * time.Second}))
	}
	require.Error(t, rs[0].db.Call(func() error { return errDown }))
	for _, r := range rs[1:] {
		r.await(t, engine.Open)
	}
	// Every replica reaches half-open; all but the lease holder go back to
	// open for the lease.
	var holder *replica
	deadline := time.Now().Add(5 * time.Second)
	for holder == nil {
		require.True(t, time.Now().Before(deadline), "no replica kept the probe")
		halfOpen, open := 0, 0
		for _, r := range rs {
			switch r.db.State() {
			case engine.HalfOpen:
				halfOpen++
				holder = r
			case engine.Open:
				open++
			}
		}
		if halfOpen != 1 || open != 2 {
			holder = nil
			time.Sleep(10 * time.Millisecond) // polling what crosses Redis
		}
	}
	require.NoError(t, holder.db.Call(func() error { return nil }), "the holder probes")
	for _, r := range rs {
		if r != holder {
			r.await(t, engine.Closed)
		}
	}
}

// A failure rate no replica reaches alone, but the fleet does: each of two
// replicas fails 60% of a few calls, below any local threshold; together
// they cross the fleet-wide rate, from a quorum of replicas.
func TestFleetWideFailureRate(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{FailureThreshold: 1 << 20}
	o := func(id string) Options {
		return Options{Replica: id, Quorum: 2, Resync: 100 * time.Millisecond,
			FailureRate: 0.5, MinimumCalls: 20, Window: 2 * time.Second, BatchInterval: 20 * time.Millisecond, OpenFor: time.Minute}
	}
	a, b := newReplicaWith(t, s, cfg, o("a")), newReplicaWith(t, s, cfg, o("b"))
	for i := range 15 {
		for _, r := range []*replica{a, b} {
			_ = r.db.Call(func() error {
				if i%5 < 3 {
					return errDown
				}
				return nil
			})
		}
	}
	tr := a.await(t, engine.Open)
	assert.Contains(t, tr.Reason, "fleet")
	tr = b.await(t, engine.Open)
	assert.Contains(t, tr.Reason, "fleet")
}

func TestFleetWideRateNeedsAQuorum(t *testing.T) {
	s := startRedis(t)
	cfg := engine.Config{FailureThreshold: 1 << 20}
	o := func(id string) Options {
		return Options{Replica: id, Quorum: 2, Resync: 50 * time.Millisecond,
			FailureRate: 0.5, MinimumCalls: 20, Window: 2 * time.Second, BatchInterval: 20 * time.Millisecond}
	}
	a, b := newReplicaWith(t, s, cfg, o("a")), newReplicaWith(t, s, cfg, o("b"))
	for range 30 {
		_ = a.db.Call(func() error { return errDown }) // one bad replica
		_ = b.db.Call(func() error { return nil })
	}
	// Let several batches and resyncs go by, then check nothing opened.
	rdb := s.client()
	defer rdb.Close()
	window := a.f.key("db", "window")
	require.Eventually(t, func() bool {
		all := rdb.HGetAll(context.Background(), window).Val()
		calls := 0
		for k, v := range all {
			if strings.HasPrefix(k, "c") {
				n, _ := strconv.Atoi(v)
				calls += n
			}
		}
		return calls == 60
	}, 5*time.Second, 10*time.Millisecond, "both replicas' counts reached Redis")
	assert.Equal(t, engine.Closed, a.db.State())
	assert.Equal(t, engine.Closed, b.db.State(), "50% failures, all from one replica: no quorum")
}

// A fleet forgets the generations of breakers its engine has forgotten, so
// that names that come and go (tenants, hosts) do not pile up.
func TestResyncForgetsForgottenBreakers(t *testing.T) {
	s := startRedis(t)
	e, err := engine.New(engine.Config{})
	require.NoError(t, err)
	defer e.Close()
	rdb := s.client()
	defer rdb.Close()
	o, err := Options{Replica: "r1"}.withDefaults()
	require.NoError(t, err)
	// Driven by hand, on this goroutine: no run loop to race with.
	f := &Fleet{e: e, rdb: rdb, o: o, gens: map[string]int64{}, sent: map[*engine.Breaker]counts{}}
	gone := e.Breaker("gone")
	e.Breaker("kept")
	f.remote("kept|3|open|60000|r2")
	f.remote("gone|5|open|60000|r2")
	require.Equal(t, map[string]int64{"kept": 3, "gone": 5}, f.gens)
	require.NoError(t, gone.Close()) // the engine forgets it
	f.resync(t.Context())
	assert.Equal(t, map[string]int64{"kept": 3}, f.gens)
}
