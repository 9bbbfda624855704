package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found: CI must install it")
		}
		t.Skip("redis-server not installed")
	}
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), &out, 3*time.Second))
	text := out.String()
	assert.Contains(t, text, "replica c  closed    → open       fleet: opened by", "c learns from the fleet")
	assert.Contains(t, text, "probe succeeded")
	assert.True(t, strings.Count(text, "→ closed") >= 3, "all three close again:\n%s", text)
}
