# snapvisor — see README.md. Every target installs what it needs (scripts/deps.sh).
GO      ?= go
BIN     := bin/entrypoint
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all build test bench demo lint deps clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/entrypoint

deps:
	./scripts/deps.sh

# Tests run the real binary as PID 1 (unshare) and talk to real servers.
test: deps build
	@rc=0; $(GO) test -count=1 -timeout 25m ./... || rc=$$?; \
	if [ -f var/e2e-skipped.txt ]; then echo "WARNING: $$(cat var/e2e-skipped.txt)" >&2; fi; \
	exit $$rc

bench: deps build
	./scripts/bench.sh

demo: build
	./scripts/demo.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf bin var
