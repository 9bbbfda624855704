package actor

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// goid returns the id of the calling goroutine. Tests use it only to check
// which goroutine ran a callback.
func goid() uint64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	// "goroutine 123 [running]:\n..."
	f := strings.Fields(string(buf[:n]))
	id, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		panic("goid: cannot parse " + string(buf[:n]))
	}
	return id
}

// req is a request answered through Ask / Reply.
type req struct {
	n     int
	reply chan int
}

// blockedActor starts an int actor with a mailbox of size whose handler
// records each message and then waits on gate. It sends first and waits
// until the actor is stuck handling it, so the mailbox is empty and size
// more messages fill it. Must be called inside a synctest bubble.
func blockedActor(t *testing.T, size int, first int, exit func()) (a *Actor[int], handled *[]int, gate chan struct{}) {
	t.Helper()
	gate = make(chan struct{})
	handled = new([]int)
	a = Start(size, func(m int) {
		*handled = append(*handled, m)
		<-gate
	}, exit)
	require.NoError(t, a.Send(t.Context(), first))
	synctest.Wait() // the actor is blocked on gate inside handle(first)
	return a, handled, gate
}

func TestSendHandledInSendOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []int
		a := Start(4, func(m int) { got = append(got, m) }, nil)
		const n = 1000
		for i := range n {
			require.NoError(t, a.Send(t.Context(), i))
		}
		synctest.Wait() // mailbox drained, actor idle
		a.Stop()

		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		assert.Equal(t, want, got)
	})
}

func TestSendOrderKeptPerSender(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const senders, perSender = 8, 200
		type msg struct{ from, seq int }
		var got []msg
		a := Start(2, func(m msg) { got = append(got, m) }, nil)

		var wg sync.WaitGroup
		for s := range senders {
			wg.Go(func() {
				for i := range perSender {
					assert.NoError(t, a.Send(t.Context(), msg{s, i}))
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		a.Stop()

		require.Len(t, got, senders*perSender)
		next := make([]int, senders)
		for _, m := range got {
			require.Equalf(t, next[m.from], m.seq, "sender %d out of order", m.from)
			next[m.from]++
		}
	})
}

func TestSendAfterStopReturnsErrStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		handled := 0
		a := Start(8, func(int) { handled++ }, nil)
		a.Stop()

		assert.ErrorIs(t, a.Send(t.Context(), 1), ErrStopped)

		// ErrStopped wins even over a context that is already done.
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		assert.ErrorIs(t, a.Send(ctx, 2), ErrStopped)
		assert.Zero(t, handled)
	})
}

func TestSendBlockedOnFullMailboxReturnsCtxErrOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, handled, gate := blockedActor(t, 1, 1, nil)
		require.NoError(t, a.Send(t.Context(), 2)) // mailbox now full

		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- a.Send(ctx, 3) }()
		synctest.Wait()
		require.Empty(t, errc, "Send must wait while the mailbox is full")

		cancel()
		assert.ErrorIs(t, <-errc, context.Canceled)

		close(gate)
		synctest.Wait()
		a.Stop()
		assert.Equal(t, []int{1, 2}, *handled, "the cancelled message must not be queued")
	})
}

func TestSendBlockedOnFullMailboxReturnsDeadlineExceeded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, _, gate := blockedActor(t, 1, 1, nil)
		require.NoError(t, a.Send(t.Context(), 2))

		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		err := a.Send(ctx, 3)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Equal(t, 3*time.Second, time.Since(start))

		close(gate)
		a.Stop()
	})
}

func TestSendBlockedOnFullMailboxReturnsErrStoppedWhenActorStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, handled, gate := blockedActor(t, 1, 1, nil)
		require.NoError(t, a.Send(t.Context(), 2))

		errc := make(chan error, 1)
		go func() { errc <- a.Send(t.Context(), 3) }()
		synctest.Wait()
		require.Empty(t, errc)

		stopped := make(chan struct{})
		go func() { a.Stop(); close(stopped) }()
		synctest.Wait() // Stop has asked and is waiting for the handler
		select {
		case <-stopped:
			t.Fatal("Stop returned while a message was still being handled")
		default:
		}

		close(gate)
		assert.ErrorIs(t, <-errc, ErrStopped)
		<-stopped
		assert.Equal(t, []int{1}, *handled, "queued messages are dropped once stopped")
	})
}

func TestTrySend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, handled, gate := blockedActor(t, 2, 0, nil)

		assert.True(t, a.TrySend(1))
		assert.True(t, a.TrySend(2))
		assert.False(t, a.TrySend(3), "mailbox is full")

		close(gate)
		synctest.Wait()
		assert.True(t, a.TrySend(4), "room again once drained")
		synctest.Wait()
		a.Stop()

		assert.False(t, a.TrySend(5), "stopped, even though the mailbox has room")
		assert.Equal(t, []int{0, 1, 2, 4}, *handled)
	})
}

func TestStopIsIdempotentAndConcurrentSafe(t *testing.T) {
	// Real parallelism (no bubble), released together, so that racing
	// Stops would close the stop channel twice if that were possible.
	for round := range 300 {
		var exits atomic.Int32
		a := Start(1, func(int) {}, func() { exits.Add(1) })
		var start, wg sync.WaitGroup
		start.Add(1)
		for range 8 {
			wg.Go(func() { start.Wait(); a.Stop() })
		}
		start.Done()
		wg.Wait()
		a.Stop()
		a.Stop()

		require.Equal(t, int32(1), exits.Load(), "round %d: exit hook runs once", round)
		select {
		case <-a.Done():
		default:
			require.FailNow(t, "Done not closed after Stop returned")
		}
	}
}

func TestExitHookRunsOnceOnActorGoroutineAfterLastMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			events             []string
			handleGID, exitGID uint64
			exitCalls          int
		)
		gate := make(chan struct{})
		a := Start(4, func(m int) {
			handleGID = goid()
			events = append(events, "msg "+strconv.Itoa(m))
			<-gate
		}, func() {
			exitGID = goid()
			exitCalls++
			events = append(events, "exit")
		})
		require.NoError(t, a.Send(t.Context(), 1))
		synctest.Wait()
		require.NoError(t, a.Send(t.Context(), 2)) // queued, will be dropped

		stopped := make(chan struct{})
		go func() { a.Stop(); close(stopped) }()
		synctest.Wait()
		assert.Equal(t, []string{"msg 1"}, events, "exit must not run while a message is being handled")

		close(gate)
		<-stopped
		assert.Equal(t, []string{"msg 1", "exit"}, events)
		assert.Equal(t, 1, exitCalls)
		assert.Equal(t, handleGID, exitGID, "exit runs on the actor's goroutine")
		assert.NotEqual(t, goid(), exitGID)
	})
}

func TestDoneClosedOnlyAfterStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := Start(0, func(int) {}, nil) // nil exit is allowed
		synctest.Wait()
		select {
		case <-a.Done():
			t.Fatal("Done closed before Stop")
		default:
		}
		a.Stop()
		_, open := <-a.Done()
		assert.False(t, open)
	})
}

func TestAskReturnsReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := Start(1, func(r req) { Reply(r.reply, r.n*10) }, nil)
		defer a.Stop()

		reply := make(chan int, 1)
		for i := range 5 {
			got, err := Ask(t.Context(), a, req{i, reply}, reply)
			require.NoError(t, err)
			assert.Equal(t, i*10, got, "a reply channel is reusable after a successful Ask")
		}
	})
}

func TestAskReturnsCtxErrWhileWaitingForReply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen []int
		a := Start(1, func(r req) { seen = append(seen, r.n) }, nil) // never replies
		defer a.Stop()

		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		start := time.Now()
		reply := make(chan int, 1)
		got, err := Ask(ctx, a, req{7, reply}, reply)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Zero(t, got)
		assert.Equal(t, time.Minute, time.Since(start))
		synctest.Wait()
		assert.Equal(t, []int{7}, seen, "the request was delivered")

		ctx2, cancel2 := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := Ask(ctx2, a, req{8, reply}, reply)
			errc <- err
		}()
		synctest.Wait()
		require.Empty(t, errc)
		cancel2()
		assert.ErrorIs(t, <-errc, context.Canceled)
	})
}

func TestAskReturnsCtxErrWhileMailboxFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		a := Start(1, func(r req) { <-gate; Reply(r.reply, r.n) }, nil)
		r1, r3 := make(chan int, 1), make(chan int, 1)
		require.NoError(t, a.Send(t.Context(), req{1, r1}))
		synctest.Wait() // handler busy with 1
		require.NoError(t, a.Send(t.Context(), req{3, r3}))
		// the one-slot mailbox now holds 3 and cannot take more

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		r2 := make(chan int, 1)
		_, err := Ask(ctx, a, req{2, r2}, r2)
		assert.ErrorIs(t, err, context.DeadlineExceeded)

		close(gate)
		synctest.Wait()
		a.Stop()
		assert.Equal(t, 1, <-r1)
		assert.Equal(t, 3, <-r3)
		assert.Empty(t, r2, "request 2 was never queued")
	})
}

func TestAskAfterStopReturnsErrStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := Start(1, func(r req) { Reply(r.reply, r.n) }, nil)
		a.Stop()
		reply := make(chan int, 1)
		got, err := Ask(t.Context(), a, req{1, reply}, reply)
		assert.ErrorIs(t, err, ErrStopped)
		assert.Zero(t, got)
	})
}

func TestAskReturnsErrStoppedWhenActorStopsWithRequestQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var handled []int
		a := Start(1, func(r req) {
			handled = append(handled, r.n)
			<-gate
			Reply(r.reply, r.n)
		}, nil)
		r1 := make(chan int, 1)
		require.NoError(t, a.Send(t.Context(), req{1, r1}))
		synctest.Wait()

		type result struct {
			v   int
			err error
		}
		res := make(chan result, 1)
		r2 := make(chan int, 1)
		go func() {
			v, err := Ask(t.Context(), a, req{2, r2}, r2)
			res <- result{v, err}
		}()
		synctest.Wait() // request 2 is queued; Ask waits for the answer
		require.Empty(t, res)

		stopped := make(chan struct{})
		go func() { a.Stop(); close(stopped) }()
		synctest.Wait()
		close(gate)

		got := <-res
		assert.ErrorIs(t, got.err, ErrStopped)
		assert.Zero(t, got.v)
		<-stopped
		assert.Equal(t, []int{1}, handled)
		assert.Equal(t, 1, <-r1, "the request being handled was still answered")
	})
}

func TestAskReturnsErrStoppedWhenHandlerExitsWithoutReplying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		a := Start(1, func(r req) { <-gate }, nil) // never replies
		errc := make(chan error, 1)
		reply := make(chan int, 1)
		go func() {
			_, err := Ask(t.Context(), a, req{1, reply}, reply)
			errc <- err
		}()
		synctest.Wait() // handler is running the request
		stopped := make(chan struct{})
		go func() { a.Stop(); close(stopped) }()
		synctest.Wait()
		require.Empty(t, errc)
		close(gate)
		assert.ErrorIs(t, <-errc, ErrStopped)
		<-stopped
	})
}

// An actor that answers and then exits at once must not turn the answer
// into ErrStopped: the reply and Done can both be ready when Ask looks.
// With one P, Ask's goroutine (parked in Send on the unbuffered mailbox) is
// made runnable by the actor's receive but typically runs only after the
// actor has replied and exited, so both cases are ready at once.
func TestAskPrefersReplyWhenActorExitsRightAfterAnswering(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for i := range 200 {
		gate := make(chan struct{})
		var a *Actor[req]
		a = Start(0, func(r req) {
			if r.reply == nil {
				<-gate
				return
			}
			Reply(r.reply, r.n)
			go a.Stop()
		}, nil)
		require.NoError(t, a.Send(context.Background(), req{})) // occupy the actor

		type result struct {
			v   int
			err error
		}
		res := make(chan result, 1)
		go func() {
			reply := make(chan int, 1)
			v, err := Ask(context.Background(), a, req{i, reply}, reply)
			res <- result{v, err}
		}()
		runtime.Gosched() // let Ask park in Send
		close(gate)
		got := <-res
		require.NoError(t, got.err, "iteration %d", i)
		require.Equal(t, i, got.v)
		<-a.Done()
	}
}

func TestAskLateReplyDoesNotBlockActor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{}, 1)
		a := Start(1, func(r req) {
			if r.n == 1 {
				<-gate
			}
			Reply(r.reply, r.n)
		}, nil)
		defer a.Stop()

		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		stale := make(chan int, 1)
		_, err := Ask(ctx, a, req{1, stale}, stale)
		require.ErrorIs(t, err, context.DeadlineExceeded)

		gate <- struct{}{} // now the actor answers nobody
		fresh := make(chan int, 1)
		got, err := Ask(t.Context(), a, req{2, fresh}, fresh)
		require.NoError(t, err, "the late answer must not block the actor")
		assert.Equal(t, 2, got)
		assert.Equal(t, 1, <-stale, "the late answer sits in the stale reply channel")
	})
}

func TestReplyNeverBlocks(t *testing.T) {
	// In a bubble a blocked Reply would be reported as a deadlock.
	synctest.Test(t, func(t *testing.T) {
		empty := make(chan int, 1)
		Reply(empty, 1)
		assert.Equal(t, 1, <-empty)

		full := make(chan int, 1)
		full <- 1
		Reply(full, 2)
		assert.Equal(t, 1, <-full, "an answer nobody waits for is dropped")
		assert.Empty(t, full)

		unbuffered := make(chan int)
		Reply(unbuffered, 3) // no receiver: dropped, returns at once

		waiting := make(chan int)
		got := make(chan int, 1)
		go func() { got <- <-waiting }()
		synctest.Wait()
		Reply(waiting, 4)
		assert.Equal(t, 4, <-got, "a waiting receiver gets the answer")
	})
}

func TestIdleActorsHoldNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		actors := make([]*Actor[int], 1000)
		var handled atomic.Int64
		for i := range actors {
			actors[i] = Start(1, func(int) { handled.Add(1) }, nil)
			require.NoError(t, actors[i].Send(t.Context(), i))
		}
		synctest.Wait()
		assert.Equal(t, int64(len(actors)), handled.Load())
		for _, a := range actors {
			// With nothing pending no goroutine runs the actor; synctest.Wait
			// has seen every goroutine it started exit.
			assert.Zero(t, a.pending.Load())
		}
		for _, a := range actors {
			a.Stop()
		}
	})
}

func TestTryHandleRunsOnTheCallerWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ranOn uint64
		a := Start(1, func(int) { ranOn = goid() }, nil)
		defer a.Stop()
		require.True(t, a.TryHandle(1))
		assert.Equal(t, goid(), ranOn, "an idle actor's request runs on the caller")
		assert.True(t, a.Idle())
	})
}

func TestTryHandleRefusesWhileBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, handled, gate := blockedActor(t, 1, 1, nil)
		assert.False(t, a.TryHandle(2), "another goroutine runs the actor")
		close(gate)
		synctest.Wait()
		assert.Equal(t, []int{1}, *handled)
		a.Stop()
	})
}

// Messages sent while a caller handles its own are handled after it, in
// order: the first drainMax by the caller too (a goroutine started for
// them would wait for a processor while the caller runs on), the rest by
// a goroutine started for them.
func TestTryHandleDrainsWhatCameMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		caller := goid()
		var got []int
		var onCaller []bool
		var a *Actor[int]
		a = Start(drainMax+1, func(m int) {
			got = append(got, m)
			onCaller = append(onCaller, goid() == caller)
			if m == 0 {
				for i := range drainMax + 1 {
					require.NoError(t, a.Send(t.Context(), i+1))
				}
			}
		}, nil)
		defer a.Stop()
		require.True(t, a.TryHandle(0))
		synctest.Wait()
		want := []int{0}
		wantOn := []bool{true}
		for i := range drainMax + 1 {
			want = append(want, i+1)
			wantOn = append(wantOn, i < drainMax)
		}
		assert.Equal(t, want, got)
		assert.Equal(t, wantOn, onCaller, "drainMax on the caller, the rest on a goroutine of the actor's")
		assert.True(t, a.Idle())
	})
}

// A message the caller handles for another sender may panic too. The
// panic is not the caller's (it could recover it, and leave that sender
// waiting for good): the actor is released, and the panic goes on on a
// goroutine of its own, as it would have on the actor's.
func TestTryHandleRaisesADrainedPanicElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var raised any
		defer func(old func(any)) { repanic = old }(repanic)
		repanic = func(p any) { raised = p }
		var got []int
		var a *Actor[int]
		a = Start(4, func(m int) {
			switch m {
			case 1:
				require.NoError(t, a.Send(t.Context(), 2))
				require.NoError(t, a.Send(t.Context(), 3))
			case 2:
				panic("boom")
			}
			got = append(got, m)
		}, nil)
		defer a.Stop()
		assert.NotPanics(t, func() { a.TryHandle(1) }, "another sender's panic is not the caller's")
		require.IsType(t, drainedPanic{}, raised)
		assert.Equal(t, "boom", raised.(drainedPanic).value)
		assert.Contains(t, raised.(drainedPanic).String(), "boom [recovered from a handler run by actor.TryHandle")
		synctest.Wait()
		require.NoError(t, a.Send(t.Context(), 4))
		synctest.Wait()
		assert.Equal(t, []int{1, 3, 4}, got, "the actor still runs, in order")
		assert.True(t, a.Idle())
	})
}

// Messages sent while a caller handles its own are handled after it, in
// order; and a stop requested meanwhile is honoured.
func TestTryHandleHandsOnWhatCameMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []int
		var a *Actor[int]
		exited := false
		a = Start(4, func(m int) {
			got = append(got, m)
			if m == 1 { // handled on the caller: others send meanwhile
				require.NoError(t, a.Send(t.Context(), 2))
				require.NoError(t, a.Send(t.Context(), 3))
			}
		}, func() { exited = true })
		require.True(t, a.TryHandle(1))
		synctest.Wait()
		assert.Equal(t, []int{1, 2, 3}, got)
		assert.True(t, a.Idle())
		a.Stop()
		assert.True(t, exited)
	})
}

func TestTryHandleStopRequestedMeanwhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		entered, gate := make(chan struct{}), make(chan struct{})
		exited := false
		a := Start(1, func(int) { close(entered); <-gate }, func() { exited = true })
		go a.TryHandle(1)
		<-entered
		stopped := make(chan struct{})
		go func() { a.Stop(); close(stopped) }()
		synctest.Wait() // Stop waits for the caller to finish
		select {
		case <-stopped:
			t.Fatal("Stop returned while a caller was still handling a message")
		default:
		}
		close(gate)
		<-stopped
		assert.True(t, exited)
		assert.False(t, a.TryHandle(2), "a stopped actor handles nothing more")
	})
}

func TestTryHandleReleasesTheActorWhenTheHandlerPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []int
		a := Start(1, func(m int) {
			if m == 1 {
				panic("boom")
			}
			got = append(got, m)
		}, nil)
		defer a.Stop()
		assert.PanicsWithValue(t, "boom", func() { a.TryHandle(1) })
		require.NoError(t, a.Send(t.Context(), 2))
		synctest.Wait()
		assert.Equal(t, []int{2}, got, "the actor still runs")
	})
}

// A message queued by the caller itself before TryHandle must be handled
// before the caller's TryHandle message: Send's contract is "messages one
// goroutine sends are handled in the order it sent them". The pending
// count is not tied to particular messages: while another sender sits between
// `a.inbox <- m` and `a.schedule()` (simulated here by queueing B directly,
// exactly Send's first half), the goroutine handles B on X's count and
// goes idle with X still in the mailbox, pending at 0. At 752b290,
// TryHandle(Y) claimed the actor and handled Y before X, which this
// goroutine sent first; now it sees X queued and declines.
func TestTryHandleKeepsEachSendersOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		a := Start(4, func(m string) { got = append(got, m) }, nil)

		a.inbox <- "B" // another sender, queued but not yet counted (inside Send)
		require.NoError(t, a.Send(t.Context(), "X"))
		synctest.Wait() // the goroutine handled B on X's count and ended

		ran := a.TryHandle("Y") // same goroutine that sent X
		if !ran {
			require.NoError(t, a.Send(t.Context(), "Y"))
		}
		a.schedule() // B's sender finishes its Send
		synctest.Wait()
		a.Stop()

		assert.False(t, ran, "X was still queued: the actor was not idle")
		assert.Equal(t, []string{"B", "X", "Y"}, got, "Y overtook X, sent earlier by the same goroutine")
	})
}

// With room in the mailbox, a select would pick at random between queuing
// and a ctx already done; a caller told ctx.Err() must know nothing was
// queued.
func TestDoneCtxNeverDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		handled := 0
		a := Start(1024, func(int) { handled++ }, nil)
		defer a.Stop()
		done, cancel := context.WithCancel(context.Background())
		cancel()

		sent := 0
		for i := range 200 {
			if a.Send(done, i) == nil {
				sent++
			}
		}
		synctest.Wait()
		assert.Zero(t, sent, "Send with a ctx already done queued %d of 200 messages", sent)
		assert.Zero(t, handled)

		reply := make(chan int, 1)
		asked := 0
		b := Start(1, func(r chan int) { asked++; Reply(r, 1) }, nil)
		defer b.Stop()
		for range 200 {
			_, err := Ask(done, b, reply, reply)
			assert.ErrorIs(t, err, context.Canceled)
			synctest.Wait()
			select { // drain an answer given to an Ask that reported ctx.Err()
			case <-reply:
			default:
			}
		}
		assert.Zero(t, asked, "Ask returned ctx.Err() every time, yet the actor handled %d of the 200 requests", asked)
	})
}
