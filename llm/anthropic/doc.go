// Package anthropic adapts the official Anthropic Go SDK
// (github.com/anthropics/anthropic-sdk-go/v2) to [llm.Client] and
// [llm.Streamer], so its calls can go through [llm.NewBreakerClient].
// Start with [New]:
//
//	const model = "claude-sonnet-4-5"
//	client := llm.NewBreakerClient(anthropic.New(sdkClient, anthropic.WithModel(model)),
//		anthropic.Provider, llm.WithDefaultModel(model))
//
// The adapter turns the SDK's own retries off on every request (unless
// [WithSDKRetries] is given), maps the SDK's errors to [*llm.CallError]
// (kind by error type as well as status, since an error inside a stream
// arrives with the stream's 200), reads billing errors, spend-limit codes
// and the "credit balance is too low" bad request as quota exhaustion, and
// treats a stream that ends without message_stop, or is cut off, as
// truncated. System messages become the system prompt;
// [llm.WithTemperature] is not sent (the SDK has no such field), and calls
// that set no [llm.WithMaxTokens] ask for [DefaultMaxTokens].
package anthropic
