# snapvisor — see README.md. Every target installs what it needs (scripts/deps.sh).
GO      ?= go
BIN     := bin/entrypoint
BIN_INIT := bin/entrypoint-init
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all build build-init test fuzz bench demo lint deps clean

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/entrypoint

# The init-only build: the supervisor alone (no stores, encryption, metrics,
# scheduler or snapshot engine linked in); see README, "Init-only build".
build-init:
	$(GO) build -tags initonly -trimpath -ldflags "$(LDFLAGS)" -o $(BIN_INIT) ./cmd/entrypoint

deps:
	./scripts/deps.sh

# Tests run the real binary as PID 1 (unshare) and talk to real servers.
test: deps build build-init
	@rc=0; $(GO) test -count=1 -timeout 25m ./... || rc=$$?; \
	if [ -f var/e2e-skipped.txt ]; then echo "WARNING: $$(cat var/e2e-skipped.txt)" >&2; fi; \
	exit $$rc

# Fuzzing (not part of test; the seed corpora in <pkg>/testdata/fuzz run in
# test as ordinary tests): every Fuzz target of FUZZ_PKGS, found with
# go test -list, for FUZZTIME each, one after the other. A crash is written
# to <pkg>/testdata/fuzz/<target>/ by go test: commit it with its fix.
FUZZTIME  ?= 60s
FUZZ_PKGS ?= ./snapshot ./seal ./store ./jobs ./config

fuzz:
	@failed=; for pkg in $(FUZZ_PKGS); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$t for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg || failed="$$failed $$pkg:$$t"; \
	  done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed" >&2; exit 1; fi

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
