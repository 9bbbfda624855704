package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from this run")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func runDemo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), err
}

// TestGolden pins the default run's output: a fixed seed must give the
// same bytes every time. Regenerate with go test ./cmd/demo -update.
func TestGolden(t *testing.T) {
	got, err := runDemo(t)
	require.NoError(t, err)
	again, err := runDemo(t)
	require.NoError(t, err)
	require.Equal(t, got, again, "the same seed gives the same output")

	golden := filepath.Join("testdata", "default.golden")
	if *update {
		require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	require.NoError(t, err)
	assert.Equal(t, string(want), got)
	assert.NotContains(t, got, "\x1b[", "no color off a terminal")
}

func TestScenarios(t *testing.T) {
	for _, name := range scenarioNames() {
		t.Run(name, func(t *testing.T) {
			out, err := runDemo(t, "--scenario", name, "--duration", "2m")
			require.NoError(t, err)
			assert.Contains(t, out, "closed → open", "every story trips a breaker")
			assert.Contains(t, out, "half_open → closed", "and every story recovers")
			if name == "llm" {
				assert.Contains(t, out, "retry-after 20s from upstream")
				assert.Contains(t, out, "went straight to the secondary")
			} else {
				assert.Contains(t, out, "The breakers kept")
			}
		})
	}
}

func TestSlowScenarioTripsOnSlowCalls(t *testing.T) {
	out, err := runDemo(t, "--scenario", "slow")
	require.NoError(t, err)
	first := out[strings.Index(out, "closed → open"):]
	first = first[:strings.Index(first, "\n")]
	assert.Contains(t, first, "slow-call rate", "latency trips the breaker before errors do")
}

func TestSeedChangesTheRun(t *testing.T) {
	a, err := runDemo(t, "--seed", "1")
	require.NoError(t, err)
	b, err := runDemo(t, "--seed", "2")
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
}

func TestRealSmoke(t *testing.T) {
	out, err := runDemo(t, "--real", "--duration", "400ms", "--rps", "100", "--clients", "4")
	require.NoError(t, err)
	assert.Contains(t, out, "on the wall clock")
	assert.Contains(t, out, "calls attempted")
}

func TestSVG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.svg")
	_, err := runDemo(t, "--svg", path, "--duration", "1m")
	require.NoError(t, err)
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	dec := xml.NewDecoder(f)
	elements := map[string]int{}
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "the SVG is well-formed XML")
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			elements[se.Name.Local]++
		}
	}
	assert.Equal(t, "svg", root)
	assert.Greater(t, elements["rect"], 72, "a band of state cells")
	assert.Equal(t, 3, elements["polyline"], "error rate, attempted and reached")
	assert.Positive(t, elements["title"], "transitions carry their reason")
}

func TestJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.jsonl")
	out, err := runDemo(t, "--json", path)
	require.NoError(t, err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for _, l := range lines {
		var ev struct {
			At      float64 `json:"at_seconds"`
			Breaker string  `json:"breaker"`
			From    string  `json:"from"`
			To      string  `json:"to"`
			Reason  string  `json:"reason"`
			Seq     int     `json:"seq"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ev))
		assert.Equal(t, "api", ev.Breaker)
		assert.NotEmpty(t, ev.Reason)
	}
	assert.Contains(t, out, "Transitions ("+strconv.Itoa(len(lines))+",", "one line per transition")
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--rps", "-1"}, "--rps"},
		{[]string{"--rps", "0"}, "--rps"},
		{[]string{"--scenario", "nope"}, "--scenario"},
		{[]string{"--threshold", "-1"}, "--threshold"},
		{[]string{"--failure-rate", "2"}, "--failure-rate"},
		{[]string{"--duration", "-5s"}, "--duration"},
		{[]string{"--probes", "-3"}, "--probes"},
		{[]string{"--clients", "0"}, "--clients"},
		{[]string{"--svg", filepath.Join(t.TempDir(), "missing", "x.svg")}, "--svg"},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"stray"}, "stray"},
		{[]string{"--scenario", "llm", "--real"}, "--real"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := runDemo(t, tc.args...)
			require.Error(t, err)
			var errOut bytes.Buffer
			assert.Equal(t, 2, exitCode(err, &errOut))
			msg := errOut.String()
			assert.Contains(t, msg, tc.flag)
			assert.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
			assert.NotContains(t, msg, "goroutine", "no stack trace")
		})
	}
}

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out, &errOut)
	assert.Equal(t, 0, exitCode(err, &out))
	assert.Contains(t, errOut.String(), "-scenario")
}

func TestColor(t *testing.T) {
	r := &result{opts: options{color: true}}
	assert.Equal(t, ansiRed+"x"+ansiReset, r.paint(ansiRed, "x"))
	r.opts.color = false
	assert.Equal(t, "x", r.paint(ansiRed, "x"))
}

// TestREADME keeps the README's excerpt of the default run, and the picture
// in docs/, in step with the program. -update rewrites the picture.
func TestREADME(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	golden, err := os.ReadFile(filepath.Join("testdata", "default.golden"))
	require.NoError(t, err)
	text := string(readme)
	start := strings.Index(text, "```\ncircuitbreaker demo:")
	require.GreaterOrEqual(t, start, 0, "the README shows the demo's output")
	excerpt := text[start+4:]
	excerpt = excerpt[:strings.Index(excerpt, "```")]
	for _, line := range strings.Split(strings.TrimSpace(excerpt), "\n") {
		if strings.TrimSpace(line) == "..." || line == "" {
			continue
		}
		assert.Contains(t, string(golden), line+"\n", "README line not in the output")
	}

	var svg bytes.Buffer
	r, err := simulate(context.Background(), mustParse(t), mustScenario(t, "outage"))
	require.NoError(t, err)
	require.NoError(t, writeSVG(&svg, r))
	picture := filepath.Join("..", "..", "docs", "demo.svg")
	if *update {
		require.NoError(t, os.WriteFile(picture, svg.Bytes(), 0o644))
	}
	want, err := os.ReadFile(picture)
	require.NoError(t, err)
	assert.Equal(t, string(want), svg.String(), "docs/demo.svg is the default run's picture")
}

func mustParse(t *testing.T, args ...string) options {
	t.Helper()
	o, err := parse(args, io.Discard, io.Discard)
	require.NoError(t, err)
	return o
}

func mustScenario(t *testing.T, name string) scenario {
	t.Helper()
	sc, ok := findScenario(name)
	require.True(t, ok)
	return sc
}
