// Package llm guards calls to large language model providers with circuit
// breakers, so that calls to a provider or model that is down, rate
// limiting or out of quota fail fast instead of piling up. Start with
// [NewBreakerClient], and add [Fallback] to move on to another provider.
//
// Any type with a Chat method is a [Client]; [NewBreakerClient] wraps one
// for a provider and gives every call two breakers from an [engine.Engine]:
// one for the provider (transport, auth and quota failures) and one for the
// provider and model (rate limits, overload, server errors, timeouts). A
// call needs both to admit it. Errors are sorted into a [Kind] first, and
// the kind decides which breaker, if any, counts the call as a failure: a
// bad request or a caller that gave up never does. A rate limit that says
// when to come back (Retry-After) opens the model's breaker at once, for
// at least that long, and an exhausted quota opens the provider's breaker
// for a long while.
//
// [Fallback] tries a list of clients in order, skipping those whose circuit
// is open without touching the network. Streams ([Streamer]) count as one
// call each, admitted when the caller starts reading and reported when the
// stream ends.
//
// This package uses only the standard library and package engine. Adapters
// for the official OpenAI and Anthropic SDKs live in their own modules
// ([github.com/nodus/circuitbreaker/llm/openai] and
// [github.com/nodus/circuitbreaker/llm/anthropic]) so that their
// dependencies never reach programs that do not use them.
package llm
