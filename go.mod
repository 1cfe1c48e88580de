module snapvisor

go 1.26.0

require (
	github.com/kelseyhightower/envconfig v1.4.0
	go.uber.org/zap v1.28.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/klauspost/compress v1.20.4 // indirect
	github.com/klauspost/pgzip v1.3.0 // indirect
	go.uber.org/multierr v1.10.0 // indirect
)
