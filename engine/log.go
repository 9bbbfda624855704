package engine

import (
	"context"
	"log/slog"
)

// LogTransitions logs every transition it receives through logger, with
// structured fields, until transitions is closed or ctx is done. Openings
// are logged at Warn, everything else at Info. Run it on a goroutine of
// its own:
//
//	go engine.LogTransitions(ctx, slog.Default(), e.Subscribe(ctx))
func LogTransitions(ctx context.Context, logger *slog.Logger, transitions <-chan Transition) {
	for {
		select {
		case <-ctx.Done():
			return
		case t, ok := <-transitions:
			if !ok {
				return
			}
			level := slog.LevelInfo
			if t.To == Open {
				level = slog.LevelWarn
			}
			attrs := []slog.Attr{
				slog.String("breaker", t.Name),
				slog.String("from", t.From.String()),
				slog.String("to", t.To.String()),
				slog.String("reason", t.Reason),
				slog.Uint64("seq", t.Seq),
				slog.Uint64("failures", t.Counts.Failures),
				slog.Uint64("consecutive_failures", t.Counts.ConsecutiveFailures),
				slog.Uint64("rejected", t.Counts.Rejected),
			}
			if !t.OpenUntil.IsZero() {
				attrs = append(attrs, slog.Duration("open_for", t.OpenUntil.Sub(t.At)))
			}
			if t.Missed > 0 {
				attrs = append(attrs, slog.Uint64("missed", t.Missed))
			}
			logger.LogAttrs(ctx, level, "circuit breaker "+t.To.String(), attrs...)
		}
	}
}
