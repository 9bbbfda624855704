package redisfleet

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nodus/circuitbreaker/engine"
)

// replicaProcess runs this test binary as one replica of the fleet, in a
// process of its own: it reads commands on stdin ("fail", "ok", "state")
// and answers each with one line on stdout. See TestSeparateProcesses.
func replicaProcess(sock, id string) {
	e, err := engine.New(engine.Config{FailureThreshold: 1, RecoveryTimeout: 300 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	rdb := unixClient(sock)
	f, err := New(e, rdb, Options{Replica: id, Quorum: 1, Resync: 50 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	b := e.Breaker("db")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "fail":
			fmt.Println(b.Call(func() error { return errDown }))
		case "ok":
			fmt.Println(b.Call(func() error { return nil }))
		case "state":
			fmt.Println(b.State())
		}
	}
	_ = f.Close()
	_ = e.Close()
	_ = rdb.Close()
}

type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (c *child) ask(t *testing.T, cmd string) string {
	t.Helper()
	_, err := fmt.Fprintln(c.in, cmd)
	require.NoError(t, err)
	require.True(t, c.out.Scan(), "the replica process answered")
	return strings.TrimSpace(c.out.Text())
}

// awaitState asks the replica for its state until it is want, within a
// bound: Redis's pub/sub crosses processes in real time.
func (c *child) awaitState(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.ask(t, "state") != want {
		require.True(t, time.Now().Before(deadline), "replica never became %s", want)
		time.Sleep(10 * time.Millisecond) // polling another process
	}
}

// TestSeparateProcesses runs two replicas as separate OS processes: one
// sees the outage and trips, the other opens through Redis; one successful
// probe then closes both.
func TestSeparateProcesses(t *testing.T) {
	s := startRedis(t)
	start := func(id string) *child {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "REDISFLEET_REPLICA="+id, "REDISFLEET_SOCK="+s.sock)
		in, err := cmd.StdinPipe()
		require.NoError(t, err)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		c := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
		t.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
		return c
	}
	a, b := start("proc-a"), start("proc-b")
	require.Equal(t, "closed", a.ask(t, "state"))
	require.Equal(t, "closed", b.ask(t, "state"))

	require.Equal(t, errDown.Error(), a.ask(t, "fail"))
	b.awaitState(t, "open")
	require.Contains(t, b.ask(t, "ok"), "circuit \"db\" open", "b rejects without having seen a failure")

	a.awaitState(t, "half_open")
	require.Equal(t, "<nil>", a.ask(t, "ok"), "a's probe succeeds")
	b.awaitState(t, "closed")
}
