# `make test` brings up what the tests need and runs them all.
GO ?= go
TEST_FLAGS ?= -race -count=1 -timeout 25m

.PHONY: test services vet unit build bench fuzz lint test-faults test-cluster test-load screenshots

test: services vet unit

services:
	./scripts/services.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test $(TEST_FLAGS) ./...

build:
	$(GO) build -o bin/trellis ./cmd/trellis

# golangci-lint (.golangci.yml), pinned; installed into bin/ on first use.
GOLANGCI_LINT_VERSION = v2.15.0
GOLANGCI_LINT = bin/golangci-lint-$(GOLANGCI_LINT_VERSION)
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

$(GOLANGCI_LINT):
	GOBIN=$(CURDIR)/bin/lint-tmp $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv bin/lint-tmp/golangci-lint $@ && rmdir bin/lint-tmp

bench:
	$(GO) run ./bench -scenario all

# The fault, security and Redis Cluster tests alone (make test runs them too).
test-faults: services
	$(GO) test $(TEST_FLAGS) ./faults/...

# A short run of each fuzz test from its committed corpus (testdata/fuzz):
# the envelope decoder, the graph validator, the CSV plan parser, the
# DOT/Mermaid escaping, When conditions, and the runner's reflection-free decoders held to
# encoding/json (jsonobj, a node's data blob, the envelope).
# The budget is a count of inputs, not a time: Go 1.26's coordinator can fail
# a run at a -fuzztime deadline with "context deadline exceeded" and no input
# (go.dev/issue/75804), so a time budget makes CI flaky on a busy machine. A
# count has no deadline, and a real finding still fails with its input
# written to testdata/fuzz. 20,000 inputs take 1-6 s per target here.
FUZZTIME ?= 20000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./faults
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./faults
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./steps/workout/csvplan
	$(GO) test -run '^$$' -fuzz '^FuzzEscape$$' -fuzztime $(FUZZTIME) ./dag/render
	$(GO) test -run '^$$' -fuzz '^FuzzMembers$$' -fuzztime $(FUZZTIME) ./internal/jsonobj
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeData$$' -fuzztime $(FUZZTIME) ./internal/store
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME) ./flow
	$(GO) test -run '^$$' -fuzz '^FuzzCondition$$' -fuzztime $(FUZZTIME) ./flow

# The core conformance suite (runner/) with its "redis" backend on a local
# 3-primary Redis Cluster that scripts/redis-cluster.sh starts and stops.
test-cluster:
	./scripts/redis-cluster.sh start
	REDIS_CLUSTER_ADDRS=$$(./scripts/redis-cluster.sh addrs) $(GO) test $(TEST_FLAGS) -run '/redis$$' ./runner/; \
		status=$$?; ./scripts/redis-cluster.sh stop; exit $$status

# About 200,000 nodes through four `trellis worker` processes on Redis and
# PostgreSQL (several minutes; not part of make test).
test-load: services
	$(GO) test -tags load -count=1 -timeout 40m -run '^TestLoad200k$$' -v ./faults

# The dashboard's pictures in docs/ (linked from the README), taken by the
# Chromium tests that show them.
screenshots: services
	TRELLIS_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run 'InBrowser' ./monitor
