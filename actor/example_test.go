package actor_test

import (
	"context"
	"fmt"

	"github.com/nodus/circuitbreaker/actor"
)

// counterMsg either increments the count or, when get is set, asks for it.
type counterMsg struct {
	get chan int
}

// An actor owns a counter; Send increments it and Ask reads it. Messages
// from one sender are handled in order, so the read sees every increment.
func Example() {
	count := 0 // touched only by the actor's goroutine
	counter := actor.Start(8, func(m counterMsg) {
		if m.get != nil {
			actor.Reply(m.get, count)
			return
		}
		count++
	}, nil)
	defer counter.Stop()

	ctx := context.Background()
	for range 5 {
		if err := counter.Send(ctx, counterMsg{}); err != nil {
			fmt.Println(err)
		}
	}
	reply := make(chan int, 1)
	n, err := actor.Ask(ctx, counter, counterMsg{get: reply}, reply)
	fmt.Println(n, err)

	counter.Stop()
	_, err = actor.Ask(ctx, counter, counterMsg{get: reply}, reply)
	fmt.Println(err)
	// Output:
	// 5 <nil>
	// actor: stopped
}
