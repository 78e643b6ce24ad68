# Lode's build and test entry points. `make help` lists them.

GO      ?= go
BIN     ?= bin/lode
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X lode.dev/lode/internal/cli.Version=$(VERSION)
TRAINER := examples/mnist/trainer
FUZZTIME ?= 30s

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the lode binary into bin/
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/lode

.PHONY: mnist
mnist: ## Train the MNIST example on an embedded control plane
	$(GO) run ./cmd/lode run --local examples/mnist/job.yaml

.PHONY: fmt-check
fmt-check: ## Fail when a Go file is not gofmt-formatted
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not formatted (run gofmt -w):"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet the module and the example trainer
	$(GO) vet ./...
	cd $(TRAINER) && $(GO) vet ./...

.PHONY: test
test: fmt-check vet ## Vet, then run every test: units, the store suite, end-to-end runs with real processes, a short chaos run
	$(GO) test -count=1 -race ./internal/...
	$(GO) test -count=1 ./e2e/...
	$(GO) test -count=1 ./chaos/
	cd $(TRAINER) && $(GO) test -count=1 ./...

.PHONY: chaos
chaos: ## Chaos suite: real server and agents under seeded faults (SEED= JOBS= AGENTS= KILLS= STALLS= PARTITIONS= RESTARTS=)
	LODE_CHAOS=1 CHAOS_SEED=$(SEED) CHAOS_JOBS=$(JOBS) CHAOS_AGENTS=$(AGENTS) CHAOS_KILLS=$(KILLS) CHAOS_STALLS=$(STALLS) \
	  CHAOS_PARTITIONS=$(PARTITIONS) CHAOS_RESTARTS=$(RESTARTS) $(GO) test -count=1 -timeout 30m -run '^TestChaos$$' -v ./chaos/

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done
	cd $(TRAINER) && $(GO) test -run '^$$' -fuzz '^FuzzReadIDX$$' -fuzztime $(FUZZTIME) .

.PHONY: bench
bench: ## Run the benchmarks; figures are ratios against baselines measured in the same run
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bench/...
	$(GO) test -run '^$$' -bench . ./internal/...

.PHONY: clean
clean: ## Remove build outputs
	rm -rf bin lode-outputs

.PHONY: engines
engines: ## Build the Kubernetes engines the tests use into ~/.cache/lode/engines
	scripts/kube/build.sh

.PHONY: image
image: ## Build the minimal lode image (static binary at /lode, from scratch) into bin/lode-image.tar, for `docker load`
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o bin/lode-static ./cmd/lode
	$(GO) run ./scripts/image -binary bin/lode-static -tag lode:$(VERSION) -o bin/lode-image.tar
