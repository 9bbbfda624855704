// Package openai adapts the official OpenAI Go SDK
// (github.com/openai/openai-go/v3) to [llm.Client] and [llm.Streamer], so
// its calls can go through [llm.NewBreakerClient]. Start with [New]:
//
//	const model = "gpt-4o-mini"
//	client := llm.NewBreakerClient(openai.New(sdkClient, openai.WithModel(model)),
//		openai.Provider, llm.WithDefaultModel(model))
//
// The adapter turns the SDK's own retries off on every request (unless
// [WithSDKRetries] is given): the SDK would otherwise sleep through rate
// limits and retry failures without the breaker seeing them. It maps the
// SDK's errors to [*llm.CallError] with the status, the kind, the
// Retry-After wait and the request id (an insufficient_quota error is
// [llm.KindQuotaExhausted]), and it treats a stream that ends without a
// finish reason as truncated, since the SDK reports that as a clean end. An
// answer that arrived but cannot be read (a body cut off, or not the JSON
// expected) is the far end's failure, not a bad request.
package openai
