# `make test` brings up what the tests need and runs them all.
GO ?= go
TEST_FLAGS ?= -race -count=1 -timeout 25m

.PHONY: test services vet unit build bench fuzz

test: services vet unit

services:
	./scripts/services.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test $(TEST_FLAGS) ./...

build:
	$(GO) build -o bin/trellis ./cmd/trellis

bench:
	$(GO) run ./bench -scenario all
