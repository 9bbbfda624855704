// Package anthropic adapts the official Anthropic Go SDK
// (github.com/anthropics/anthropic-sdk-go/v2) to llm.Client and
// llm.Streamer, so its calls can go through llm.NewBreakerClient.
//
// The adapter turns the SDK's own retries off on every request (unless
// WithSDKRetries is given), maps the SDK's errors to *llm.CallError (kind by
// error type as well as status, since an error inside a stream arrives with
// the stream's 200), reads spend-limit codes as quota exhaustion, and treats
// a stream that ends without message_stop as truncated.
package anthropic
