package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/nodus/circuitbreaker/engine"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode reports err on stderr in one line and returns the process's
// exit status: 0, 2 for bad input, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "demo:", err)
		return 2
	}
	fmt.Fprintln(stderr, "demo:", err)
	return 1
}

// usageError is bad input: the command exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func badFlag(name string, format string, a ...any) error {
	return usageError{fmt.Sprintf("--%s: %s", name, fmt.Sprintf(format, a...))}
}

// options are the parsed flags.
type options struct {
	scenario    string
	duration    time.Duration
	rps         float64
	clients     int
	seed        uint64
	threshold   int
	recovery    time.Duration
	failureRate float64
	window      int
	probes      int
	width       int
	color       bool
	real        bool
	svg, json   string
}

// config is the breaker policy the flags describe.
func (o options) config() engine.Config {
	return engine.Config{
		FailureThreshold:     o.threshold,
		RecoveryTimeout:      o.recovery,
		HalfOpenProbes:       o.probes,
		FailureRateThreshold: o.failureRate,
		WindowSize:           o.window,
		Seed:                 o.seed,
	}
}

func parse(args []string, stdout, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.scenario, "scenario", "outage", "the story to tell: "+strings.Join(scenarioNames(), ", "))
	fs.DurationVar(&o.duration, "duration", 0, "how long the traffic runs (default 3m simulated, 12s with --real)")
	fs.Float64Var(&o.rps, "rps", 20, "calls per second to each upstream")
	fs.IntVar(&o.clients, "clients", 8, "concurrent clients (with --real)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of every random draw: the same seed gives the same run")
	fs.IntVar(&o.threshold, "threshold", 5, "consecutive failures that open a circuit (0: off when --failure-rate is set)")
	fs.DurationVar(&o.recovery, "recovery", 10*time.Second, "how long a circuit stays open before a probe (with --real, 1/18 of --duration unless set)")
	fs.Float64Var(&o.failureRate, "failure-rate", 0, "also open when this share of the window failed, in (0, 1]")
	fs.IntVar(&o.window, "window", 0, "calls in the failure-rate window (default 100 when --failure-rate is set)")
	fs.IntVar(&o.probes, "probes", 1, "probe calls at once in half-open")
	fs.IntVar(&o.width, "width", 72, "cells in the timeline")
	noColor := fs.Bool("no-color", false, "never color the output (colors are used only on a terminal, and never with NO_COLOR set)")
	fs.BoolVar(&o.real, "real", false, "run on the wall clock against a real HTTP upstream on 127.0.0.1")
	fs.StringVar(&o.svg, "svg", "", "write the timeline as an SVG picture to this `file`")
	fs.StringVar(&o.json, "json", "", "write the transitions as JSON lines to this `file`")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: demo [flags]\n\nShows circuit breakers at work on a flaky upstream.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("unexpected argument %q (flags start with --)", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.duration == 0 {
		o.duration = 3 * time.Minute
		if o.real {
			o.duration = 12 * time.Second
		}
	}
	if o.real && !set["recovery"] && o.duration > 0 {
		// Keep the story's proportions on the wall clock: 10s of 3m.
		o.recovery = max(o.duration/18, 50*time.Millisecond)
	}
	o.color = !*noColor && os.Getenv("NO_COLOR") == "" && isTerminal(stdout)
	switch {
	case o.duration < 0:
		return o, badFlag("duration", "must be positive, got %s", o.duration)
	case !(o.rps > 0 && o.rps <= 100_000):
		return o, badFlag("rps", "must be in (0, 100000], got %v", o.rps)
	case o.clients < 1:
		return o, badFlag("clients", "must be at least 1, got %d", o.clients)
	case o.width < 10 || o.width > 1000:
		return o, badFlag("width", "must be in [10, 1000], got %d", o.width)
	case o.duration > 24*time.Hour:
		return o, badFlag("duration", "must be at most 24h, got %s", o.duration)
	}
	if _, ok := findScenario(o.scenario); !ok {
		return o, badFlag("scenario", "unknown scenario %q (want one of %s)", o.scenario, strings.Join(scenarioNames(), ", "))
	}
	if err := o.config().Validate(); err != nil {
		var ce *engine.ConfigError
		if errors.As(err, &ce) {
			return o, badFlag(flagOf[ce.Field], "%s, got %v", ce.Rule, ce.Value)
		}
		return o, usageError{err.Error()}
	}
	return o, nil
}

// flagOf names the flag behind each Config field the flags set.
var flagOf = map[string]string{
	"FailureThreshold":     "threshold",
	"RecoveryTimeout":      "recovery",
	"HalfOpenProbes":       "probes",
	"FailureRateThreshold": "failure-rate",
	"WindowSize":           "window",
	"MinimumCalls":         "window",
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// run is the whole command: main only wires it to the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	// Open the output files first, so a bad path fails before the run.
	var svgFile, jsonFile *os.File
	if o.svg != "" {
		if svgFile, err = os.Create(o.svg); err != nil {
			return badFlag("svg", "%v", err)
		}
		defer svgFile.Close()
	}
	if o.json != "" {
		if jsonFile, err = os.Create(o.json); err != nil {
			return badFlag("json", "%v", err)
		}
		defer jsonFile.Close()
	}
	sc, _ := findScenario(o.scenario)

	var r *result
	switch {
	case sc.name == llmScenario.name && o.real:
		return badFlag("real", "the llm scenario runs only on the mock clock")
	case sc.name == llmScenario.name:
		r, err = simulateLLM(ctx, o, sc)
	case o.real:
		r, err = runReal(ctx, o, sc, stdout, stderr)
	default:
		r, err = simulate(ctx, o, sc)
	}
	if err != nil {
		return err
	}
	report(stdout, r)
	if svgFile != nil {
		if err := writeSVG(svgFile, r); err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
		if err := svgFile.Close(); err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
	}
	if jsonFile != nil {
		if err := writeJSON(jsonFile, r); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
		if err := jsonFile.Close(); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	return nil
}
