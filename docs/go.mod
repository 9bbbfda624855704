module github.com/nodus/circuitbreaker/docs

go 1.26.0

replace (
	github.com/nodus/circuitbreaker => ../
	github.com/nodus/circuitbreaker/engine/prometheus => ../engine/prometheus
	github.com/nodus/circuitbreaker/engine/redisfleet => ../engine/redisfleet
	github.com/nodus/circuitbreaker/llm/anthropic => ../llm/anthropic
	github.com/nodus/circuitbreaker/llm/openai => ../llm/openai
)

require (
	github.com/anthropics/anthropic-sdk-go/v2 v2.15.0
	github.com/benbjohnson/clock v1.3.5
	github.com/nodus/circuitbreaker/engine/prometheus v0.0.0-00010101000000-000000000000
	github.com/nodus/circuitbreaker/engine/redisfleet v0.0.0-00010101000000-000000000000
	github.com/nodus/circuitbreaker/llm/anthropic v0.0.0-00010101000000-000000000000
	github.com/nodus/circuitbreaker/llm/openai v0.0.0-00010101000000-000000000000
	github.com/openai/openai-go/v3 v3.98.0
	github.com/prometheus/client_golang v1.25.0
	github.com/sony/gobreaker/v2 v2.4.0
	github.com/stretchr/testify v1.12.1
)

require (
	github.com/bahlo/generic-list-go v0.2.0 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/buger/jsonparser v1.1.2 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/coder/websocket v1.8.15 // indirect
	github.com/go-logr/logr v1.4.2 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/invopop/jsonschema v0.14.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/nodus/circuitbreaker v0.0.0-00010101000000-000000000000 // indirect
	github.com/pb33f/ordered-map/v2 v2.3.1 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/redis/go-redis/v9 v9.23.0 // indirect
	github.com/standard-webhooks/standard-webhooks/libraries v0.0.1 // indirect
	github.com/tidwall/gjson v1.20.0 // indirect
	github.com/tidwall/match v1.1.1 // indirect
	github.com/tidwall/pretty v1.2.1 // indirect
	github.com/tidwall/sjson v1.2.5 // indirect
	go.opentelemetry.io/auto/sdk v1.1.0 // indirect
	go.opentelemetry.io/otel v1.33.0 // indirect
	go.opentelemetry.io/otel/metric v1.33.0 // indirect
	go.opentelemetry.io/otel/trace v1.33.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	go.yaml.in/yaml/v4 v4.0.0-rc.2 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
