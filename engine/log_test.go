package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLogTransitions(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	b, err := NewBreaker("db", Config{FailureThreshold: 2})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	stream := b.Subscribe(ctx)
	go func() { LogTransitions(ctx, logger, stream); close(done) }()

	require.Error(t, b.Call(fail))
	require.Error(t, b.Call(fail))
	b.Reset()
	require.NoError(t, b.Close()) // closes the stream, which ends the logger
	<-done

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 2)
	var open, reset map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &open))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &reset))
	assert.Equal(t, "WARN", open["level"])
	assert.Equal(t, "db", open["breaker"])
	assert.Equal(t, "open", open["to"])
	assert.Equal(t, "2 consecutive failures", open["reason"])
	assert.EqualValues(t, 2, open["consecutive_failures"])
	assert.Contains(t, open, "open_for")
	assert.Equal(t, "INFO", reset["level"])
	assert.Equal(t, "manual reset", reset["reason"])
}

func ExampleLogTransitions() {
	e, _ := New(Config{FailureThreshold: 1})
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A text handler without times, so the example's output is stable.
	logger := slog.New(slog.NewTextHandler(exampleOut{}, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	done := make(chan struct{})
	stream := e.Subscribe(ctx)
	go func() { LogTransitions(ctx, logger, stream); close(done) }()

	_ = e.Breaker("payments").Call(func() error { return errBoom })
	_ = e.Close()
	<-done
	// Output: level=WARN msg="circuit breaker open" breaker=payments from=closed to=open reason="1 consecutive failure" seq=1 failures=1 consecutive_failures=1 rejected=0 open_for=1m0s
}
