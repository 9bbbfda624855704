package engine

// A quiet outcome whose tally a seal retired goes on the current snapshot
// once the owner has published one of the same generation (see
// Breaker.report); these pin what must not change with that.

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A ticket's success refused by a spread snapshot sealed by a failure that
// left the generation as it was goes on the current snapshot; its
// goroutine's order F1, S, F2 holds: no run of two failures.
func TestRetallyKeepsOneGoroutinesRun(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	tk, err := b.Admit(context.Background())
	require.NoError(t, err)
	s0 := b.snap.Load()
	spread(b)
	require.ErrorIs(t, b.Call(fail), errBoom) // F1: a message on the spread tally, seals s0
	cur := b.snap.Load()
	require.NotSame(t, s0, cur)
	require.Equal(t, s0.gen, cur.gen)
	tk.Report(nil) // S: retried on cur
	assert.Equal(t, int64(1), cur.successTally())
	assert.Zero(t, cur.folded, "S went on cur, not to the owner")
	require.ErrorIs(t, b.Call(fail), errBoom) // F2
	c := b.Counts()
	assert.Equal(t, Closed, b.State(), "F1, S, F2 is no run of two")
	assert.Equal(t, uint64(1), c.ConsecutiveFailures)
	assert.Equal(t, uint64(1), c.Successes)
	assert.Zero(t, c.Stale)
}

// Reset of a closed circuit changes the generation: a ticket admitted
// before is stale, not tallied on the new snapshot.
func TestRetallyAfterResetIsStale(t *testing.T) {
	for name, o := range map[string]Outcome{"success": Success, "ignored": Ignored} {
		t.Run(name, func(t *testing.T) {
			b := newTestBreaker(t, Config{FailureThreshold: 2})
			tk, err := b.Admit(context.Background())
			require.NoError(t, err)
			b.Reset()
			tk.ReportAs(o, nil)
			c := b.Counts()
			assert.Equal(t, uint64(1), c.Stale)
			assert.Zero(t, c.Successes+c.Ignored)
		})
	}
}

// ForceOpen with a past time seals and changes nothing: the outcome counts,
// once, on the next snapshot; Isolate and Trip make it stale.
func TestRetallyAroundControls(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	tk, err := b.Admit(context.Background())
	require.NoError(t, err)
	s0 := b.snap.Load()
	b.ForceOpen(time.Now().Add(-time.Second), "past")
	require.NotSame(t, s0, b.snap.Load())
	tk.ReportAs(Ignored, nil)
	c := b.Counts()
	assert.Equal(t, uint64(1), c.Ignored)
	assert.Zero(t, c.Stale)

	tk, err = b.Admit(context.Background())
	require.NoError(t, err)
	b.Isolate()
	tk.Report(nil)
	c = b.Counts()
	assert.Equal(t, uint64(1), c.Stale)
	assert.Zero(t, c.Successes)
}

// After Close the stop snapshot takes nothing.
func TestRetallyAfterClose(t *testing.T) {
	b := newTestBreaker(t, Config{FailureThreshold: 2})
	tk, err := b.Admit(context.Background())
	require.NoError(t, err)
	require.NoError(t, b.Close())
	tk.Report(nil)
	assert.Zero(t, b.snap.Load().successTally())
	assert.Zero(t, b.Counts().Successes)
}

// Outcomes count once and are never stale while snapshots are spread and
// sealed (with the generation going on) all the time, and tickets cross
// snapshots.
func TestRetallyStress(t *testing.T) {
	for name, cfg := range spreadConfigs {
		t.Run(name, func(t *testing.T) { conservation(t, cfg, true) })
	}
}
