// Package docs holds the project's documentation: README.md at the root and
// the Markdown files in this folder. It has no code of its own; its test keeps
// the documents honest. Every Go block in them type-checks against the
// current API, every block marked as an example is the body of a runnable
// Example function, every relative link and anchor resolves, and every
// test, benchmark or example they name in backticks exists.
//
// # Go blocks
//
// A block whose info string is "go excerpt" shows internal code for
// explanation and is not checked. A block that starts with a package clause
// is checked as a file of its own. A block right after the line
//
//	<!-- example: engine/example_guide_test.go Example_name -->
//
// must be exactly the body of that function, one tab of indentation removed;
// the function itself runs with its package's tests. Any other block is a
// fragment, checked as the body of a function with these in scope:
//
//	ctx context.Context
//	b *engine.Breaker
//	e *engine.Engine
//	err error
//	callUpstream func(context.Context) error
//	msgs []llm.Message
//	providerClient, openaiClient, anthropicClient llm.Client
//	registry *prometheus.Registry // client_golang
//	rdb *redis.Client             // go-redis
//
// and the packages listed in docs_test.go under their usual names (slog, http,
// clock, engine, llm, cbprom for engine/prometheus, gobreaker, ...). Unused
// variables and imports are allowed in fragments.
package docs
