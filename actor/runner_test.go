package actor

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func TestRunnerRunsValuesInOrderExactlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []int
		var gids []uint64
		r := NewRunner(func(v int) {
			got = append(got, v)
			gids = append(gids, goid())
		})
		const n = 2000
		for i := range n {
			r.Post(i)
			if i%100 == 0 {
				synctest.Wait() // let the runner catch up and go idle sometimes
			}
		}
		synctest.Wait()
		assert.Equal(t, seq(n), got, "all values run before Close, in order, once")
		r.Close()
		assert.Equal(t, seq(n), got, "Close ran nothing twice")

		for _, id := range gids {
			require.Equal(t, gids[0], id, "fn always runs on the runner's goroutine")
		}
		assert.NotEqual(t, goid(), gids[0])
	})
}

func TestRunnerPostNeverBlocksWhileFnBlocked(t *testing.T) {
	// In a bubble a blocked Post would be reported as a deadlock.
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var got []int
		r := NewRunner(func(v int) {
			got = append(got, v)
			if v == 0 {
				<-gate
			}
		})
		r.Post(0)
		synctest.Wait()
		require.Equal(t, []int{0}, got, "fn is stuck on the first value")

		const n = 10_000
		for i := 1; i <= n; i++ {
			r.Post(i)
		}
		synctest.Wait()
		assert.Equal(t, []int{0}, got, "nothing else ran while fn was stuck")

		close(gate)
		synctest.Wait()
		assert.Equal(t, seq(n+1), got, "nothing was dropped")
		r.Close()
	})
}

func TestRunnerConcurrentProducersKeepPerProducerOrder(t *testing.T) {
	// Real parallelism (no bubble) so the race detector and the scheduler
	// exercise the lock-free queue; Close is the only wait.
	const producers, perProducer = 8, 5000
	type item struct{ from, seq int }
	var got []item
	r := NewRunner(func(v item) { got = append(got, v) })

	var start sync.WaitGroup
	start.Add(1)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			start.Wait()
			for i := range perProducer {
				r.Post(item{p, i})
			}
		})
	}
	start.Done()
	wg.Wait()
	r.Close()

	require.Len(t, got, producers*perProducer)
	next := make([]int, producers)
	for _, v := range got {
		require.Equalf(t, next[v.from], v.seq, "producer %d out of order", v.from)
		next[v.from]++
	}
	for p, n := range next {
		assert.Equal(t, perProducer, n, "producer %d", p)
	}
}

func TestRunnerCloseDrainsEverythingPostedBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var got []int
		r := NewRunner(func(v int) {
			got = append(got, v)
			if v == 0 {
				<-gate
			}
		})
		const n = 1000
		for i := range n {
			r.Post(i)
		}
		synctest.Wait()

		closed := make(chan struct{})
		go func() { r.Close(); close(closed) }()
		synctest.Wait()
		select {
		case <-closed:
			t.Fatal("Close returned while fn was still running")
		default:
		}

		close(gate)
		<-closed
		assert.Equal(t, seq(n), got)
	})
}

func TestRunnerCloseDrainsWhenWakeUpAndStopArriveTogether(t *testing.T) {
	// The runner is idle, then values are posted and Close is called at
	// once: the runner finds both its wake-up and the stop request ready,
	// and must still run every value.
	synctest.Test(t, func(t *testing.T) {
		for round := range 100 {
			var got []int
			r := NewRunner(func(v int) { got = append(got, v) })
			synctest.Wait() // idle, waiting for a wake-up
			for i := range 10 {
				r.Post(i)
			}
			r.Close()
			require.Equal(t, seq(10), got, "round %d", round)
		}
	})
}

func TestRunnerCloseAfterConcurrentPostsRunsThemAll(t *testing.T) {
	// Producers post while the runner is draining; Close follows as soon as
	// they are done, so the runner often sees its last wake-up and the stop
	// request together. Every value posted before Close must still run.
	for round := range 3000 {
		var count atomic.Int64
		r := NewRunner(func(int) { count.Add(1) })
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for i := range 10 {
					r.Post(i)
				}
			})
		}
		wg.Wait()
		r.Close()
		require.Equal(t, int64(40), count.Load(), "round %d", round)
	}
}

func TestRunnerCloseRightAfterStart(t *testing.T) {
	// Values posted and Close called back to back, often before the
	// runner goroutine has run at all.
	for range 200 {
		var count atomic.Int64
		r := NewRunner(func(int) { count.Add(1) })
		for i := range 50 {
			r.Post(i)
		}
		r.Close()
		require.Equal(t, int64(50), count.Load())
	}
}

func TestRunnerCloseIsIdempotent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var count atomic.Int64
		r := NewRunner(func(int) { count.Add(1) })
		r.Post(1)
		r.Post(2)

		var wg sync.WaitGroup
		for range 16 {
			wg.Go(r.Close)
		}
		wg.Wait()
		r.Close()
		assert.Equal(t, int64(2), count.Load())

		r2 := NewRunner(func(int) { t.Error("fn called with nothing posted") })
		r2.Close()
		r2.Close()
	})
}

func TestRunnerPostAfterCloseDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var count atomic.Int64
		r := NewRunner(func(int) { count.Add(1) })
		r.Close()
		for i := range 100 {
			r.Post(i) // documented as possibly never run; must not block
		}
		synctest.Wait()
		assert.Zero(t, count.Load())
	})
}
