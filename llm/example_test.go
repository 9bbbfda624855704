package llm_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nodus/circuitbreaker/engine"
	"github.com/nodus/circuitbreaker/llm"
)

// echo stands in for a provider's client; the adapters in llm/openai and
// llm/anthropic turn the official SDKs into llm.Clients.
type echo struct{ err error }

func (e echo) Chat(ctx context.Context, msgs []llm.Message, opts ...llm.Option) (*llm.Response, error) {
	if e.err != nil {
		return nil, e.err
	}
	return &llm.Response{Content: "echo: " + msgs[len(msgs)-1].Content, Model: llm.NewRequest(opts...).Model}, nil
}

// The seed's CircuitBreakerLLMClient: a client guarded per provider and per
// model.
func ExampleNewBreakerClient() {
	client := llm.NewBreakerClient(echo{}, "openai", llm.WithDefaultModel("gpt-4o-mini"))
	defer client.Close()

	resp, err := client.Chat(context.Background(), []llm.Message{{Role: llm.RoleUser, Content: "hello"}})
	fmt.Println(resp.Content, err)
	// Output: echo: hello <nil>
}

// A rate limit with Retry-After opens the model's circuit at once; the next
// call fails fast without reaching the provider.
func ExampleNewBreakerClient_retryAfter() {
	limited := echo{err: &llm.CallError{Kind: llm.KindRateLimited, StatusCode: 429, RetryAfter: 20 * time.Second}}
	client := llm.NewBreakerClient(limited, "anthropic", llm.WithDefaultModel("claude-sonnet"))
	defer client.Close()

	ctx := context.Background()
	msgs := []llm.Message{{Role: llm.RoleUser, Content: "hello"}}
	_, err := client.Chat(ctx, msgs)
	fmt.Println(llm.KindOf(err))
	_, err = client.Chat(ctx, msgs)
	var open *llm.CircuitOpenError
	fmt.Println(errors.Is(err, engine.ErrOpen), errors.As(err, &open) && open.Model == "claude-sonnet")
	// Output:
	// rate_limited
	// true true
}

// Fallback tries each target in order, skipping open circuits without a
// network call.
func ExampleFallback() {
	overloaded := echo{err: &llm.CallError{Kind: llm.KindOverloaded, StatusCode: 529}}
	primary := llm.NewBreakerClient(overloaded, "anthropic")
	secondary := llm.NewBreakerClient(echo{}, "openai")
	defer primary.Close()
	defer secondary.Close()

	client := llm.Fallback(
		llm.Pin(primary, "claude-sonnet"),
		llm.Pin(secondary, "gpt-4o-mini"),
	)
	resp, err := client.Chat(context.Background(), []llm.Message{{Role: llm.RoleUser, Content: "hi"}})
	fmt.Println(resp.Model, resp.Content, err)
	// Output: gpt-4o-mini echo: hi <nil>
}
