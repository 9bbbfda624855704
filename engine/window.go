package engine

import "time"

// window is the sliding window behind the rate policies: either the last N
// calls (a ring of outcome flags) or the calls of the last duration (a ring
// of time buckets).
type window struct {
	// count-based
	ring              []uint8
	pos               int
	calls, fails, slw uint64
	// time-based
	buckets []bucket
	width   int64 // nanoseconds per bucket
}

type bucket struct {
	idx               int64 // the bucket's start, in widths since the epoch
	calls, fails, slw uint64
}

const (
	flagCall uint8 = 1 << iota
	flagFail
	flagSlow
)

func newWindow(c *Config) *window {
	if c.WindowDuration > 0 {
		return &window{
			buckets: make([]bucket, c.WindowBuckets),
			width:   int64(c.WindowDuration) / int64(c.WindowBuckets),
		}
	}
	if c.WindowSize > 0 {
		return &window{ring: make([]uint8, c.WindowSize)}
	}
	return nil
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// slot returns the slot of now's bucket in a time-based window, and the
// bucket's index.
func (w *window) slot(now time.Time) (*bucket, int64) {
	idx := now.UnixNano() / w.width
	return &w.buckets[int(uint64(idx)%uint64(len(w.buckets)))], idx
}

// ahead reports whether now's slot in a time-based window holds a newer
// bucket than now's, as after the clock stepped back.
func (w *window) ahead(now time.Time) bool {
	b, idx := w.slot(now)
	return b.idx > idx
}

// bucket returns now's bucket of a time-based window, emptied if it last
// held another period (an older one, or a newer one if the clock stepped
// back).
func (w *window) bucket(now time.Time) *bucket {
	b, idx := w.slot(now)
	if b.idx != idx {
		*b = bucket{idx: idx}
	}
	return b
}

func (w *window) add(now time.Time, fail, slow bool) {
	if w.buckets != nil {
		b := w.bucket(now)
		b.calls++
		b.fails += b2u(fail)
		b.slw += b2u(slow)
		return
	}
	old := w.ring[w.pos]
	w.calls -= uint64(old & flagCall)
	w.fails -= b2u(old&flagFail != 0)
	w.slw -= b2u(old&flagSlow != 0)
	f := flagCall
	if fail {
		f |= flagFail
	}
	if slow {
		f |= flagSlow
	}
	w.ring[w.pos] = f
	w.pos = (w.pos + 1) % len(w.ring)
	w.calls++
	w.fails += b2u(fail)
	w.slw += b2u(slow)
}

// addTallied adds calls that were not slow, fails of them failures:
// outcomes counted apart, in no order, and folded late. If now's slot
// already holds a newer bucket, now has left the window (a slot is reused
// only a whole window later), and they count in no bucket. A count-based
// window, which keeps the order of its calls, only ever gets successes
// this way; it would take any failures first.
func (w *window) addTallied(now time.Time, calls, fails uint64) {
	if w.buckets != nil {
		if !w.ahead(now) {
			b := w.bucket(now)
			b.calls += calls
			b.fails += fails
		}
		return
	}
	// More calls than the ring holds leave nothing else in it.
	for i := range min(calls, uint64(len(w.ring))) {
		w.add(now, i < fails, false)
	}
}

// totals returns the calls, failures and slow calls in the window at now.
func (w *window) totals(now time.Time) (calls, fails, slow uint64) {
	if w.buckets == nil {
		return w.calls, w.fails, w.slw
	}
	cur := now.UnixNano() / w.width
	for _, b := range w.buckets {
		if b.idx > cur-int64(len(w.buckets)) && b.idx <= cur {
			calls += b.calls
			fails += b.fails
			slow += b.slw
		}
	}
	return calls, fails, slow
}

// with returns the totals at now as they would be with one more call
// added: w.add without the change.
func (w *window) with(now time.Time, fail, slow bool) (calls, fails, slw uint64) {
	calls, fails, slw = w.totals(now)
	if w.buckets == nil {
		old := w.ring[w.pos]
		calls -= uint64(old & flagCall)
		fails -= b2u(old&flagFail != 0)
		slw -= b2u(old&flagSlow != 0)
	}
	return calls + 1, fails + b2u(fail), slw + b2u(slow)
}

func (w *window) reset() {
	clear(w.ring)
	clear(w.buckets)
	w.pos, w.calls, w.fails, w.slw = 0, 0, 0, 0
}
