// Command fleetdemo shows fleet mode at work: it starts a throwaway
// redis-server, runs three replicas of a service that call the same flaky
// upstream, and prints every replica's transitions. Replicas a and b call
// often and trip on their own evidence; replica c calls rarely, and opens
// because the fleet reached its quorum, before its own calls fail. When the
// upstream recovers, one replica's probe closes all three.
//
// Usage, from engine/redisfleet, with redis-server on the PATH:
//
//	go run ./cmd/fleetdemo
//
// It takes no flags; the story lasts about three seconds. The exit status
// is 1 if anything fails, such as redis-server not starting.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nodus/circuitbreaker/engine"
	"github.com/nodus/circuitbreaker/engine/redisfleet"
)

func main() {
	if err := run(context.Background(), os.Stdout, 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "fleetdemo:", err)
		os.Exit(1)
	}
}

var errDown = errors.New("upstream down")

// run plays the story over total: the upstream is down from 15% to 65%
// of it.
func run(ctx context.Context, w io.Writer, total time.Duration) error {
	dir, err := os.MkdirTemp("", "fleetdemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "redis.sock")
	srv := exec.Command("redis-server", "--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no")
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting redis-server (apt-get install redis-server): %w", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	newClient := func() *redis.Client {
		return redis.NewClient(&redis.Options{Network: "unix", Addr: sock, ContextTimeoutEnabled: true,
			DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
			WriteTimeout: 200 * time.Millisecond, PoolTimeout: 200 * time.Millisecond, MaxRetries: -1})
	}
	probe := newClient()
	for deadline := time.Now().Add(5 * time.Second); probe.Ping(ctx).Err() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return errors.New("redis-server did not start")
		}
	}
	_ = probe.Close()

	start := time.Now()
	down := func() bool {
		f := float64(time.Since(start)) / float64(total)
		return f >= 0.15 && f < 0.65
	}
	fmt.Fprintf(w, "three replicas, quorum 2; the upstream is down from %s to %s\n",
		(total * 15 / 100).Round(10*time.Millisecond), (total * 65 / 100).Round(10*time.Millisecond))

	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	var out sync.WaitGroup
	lines := make(chan string, 256)
	out.Go(func() {
		for l := range lines {
			fmt.Fprintln(w, l)
		}
	})
	var replicas sync.WaitGroup
	for _, r := range []struct {
		name  string
		every time.Duration
	}{{"a", total / 300}, {"b", total / 300}, {"c", total / 4}} {
		e, err := engine.New(engine.Config{FailureThreshold: 3, RecoveryTimeout: total / 10})
		if err != nil {
			return err
		}
		rdb := newClient()
		fleet, err := redisfleet.New(e, rdb, redisfleet.Options{Replica: r.name, Quorum: 2, Resync: total / 30})
		if err != nil {
			return err
		}
		b := e.Breaker("upstream")
		transitions := b.Subscribe(ctx)
		replicas.Go(func() {
			defer rdb.Close()
			defer e.Close()
			defer fleet.Close()
			tick := time.NewTicker(r.every)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case t := <-transitions:
					lines <- fmt.Sprintf("%6s  replica %s  %-9s → %-9s  %s", time.Since(start).Round(10*time.Millisecond), r.name, t.From, t.To, t.Reason)
				case <-tick.C:
					_ = b.Call(func() error {
						if down() {
							return errDown
						}
						return nil
					})
				}
			}
		})
	}
	replicas.Wait()
	close(lines)
	out.Wait()
	return nil
}
