# autodeploy Makefile (kubebuilder conventions). `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG ?= autodeploy:dev
# The image's OCI labels (org.opencontainers.image.version, .revision, .created).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
CREATED ?= $(shell git log -1 --format=%cI 2>/dev/null)
CONTROLLER_GEN ?= go tool controller-gen
# Packages the tests run; the fuzz and long drills have their own targets.
TEST_PKGS ?= ./...
TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

# The Helm chart carries the same generated CRD and controller rules (test/helm_test.go checks).
.PHONY: manifests
manifests: ## Generate the CRD and RBAC manifests from the markers (config/ and charts/autodeploy).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	rm -f charts/autodeploy/crds/*.yaml
	cp config/crd/bases/*.yaml charts/autodeploy/crds/
	cp config/rbac/role.yaml charts/autodeploy/files/manager-role.yaml

.PHONY: generate
generate: ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for the tests into bin/ (once).
	@hack/setup-envtest.sh >/dev/null

.PHONY: test
test: envtest ## Run all tests against a real kube-apiserver and etcd, the ECS simulator and real HTTP.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" go test $(TEST_FLAGS) $(TEST_PKGS)
	$(MAKE) --no-print-directory fuzz-short

# Fuzz targets as <package>:<FuzzName>. Their seed corpora (testdata/fuzz/<FuzzName>/) run with
# the ordinary tests; `make fuzz` explores beyond them.
FUZZ_TARGETS ?= \
	./internal/manifest:FuzzParse \
	./internal/manifest:FuzzVerify \
	./internal/receiver:FuzzParseEvent \
	./internal/receiver:FuzzManifestFromCodeBuild \
	./internal/receiver:FuzzManifestFromECR \
	./internal/receiver:FuzzParseAPIKey
FUZZTIME ?= 10s

.PHONY: drill-outage
drill-outage: envtest ## The API-server outage drill with a 5-minute outage (AUTODEPLOY_DRILL_OUTAGE; make test runs 20s).
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" AUTODEPLOY_DRILL_OUTAGE=$${AUTODEPLOY_DRILL_OUTAGE:-5m} \
		go test -race -count=1 -timeout 30m -v -run 'TestDrillAPIServerOutageRealProcessLosesNothing' ./internal/app

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (10s) each; a failing input lands in testdata/fuzz.
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
	done

.PHONY: fuzz-short
fuzz-short: ## The bounded fuzz run of CI: 20,000 inputs per target (a count, not a duration: a timed run can end in the fuzzer's own "context deadline exceeded" on a loaded machine).
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

.PHONY: bench
bench: ## Go benchmarks of the hot pure paths (parse, verify, decide, task-definition cloning).
	go test -run '^$$' -bench . -benchmem ./internal/manifest ./internal/taskdef ./controllers

.PHONY: bench-fanout
bench-fanout: envtest ## One build fanned out to 1,000 services under AWS's ECS limits (scaled by AUTODEPLOY_BENCH_SCALE, default 20), and ECS calls per rollout of a blue/green fleet.
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" go test -run '^$$' -bench 'BenchmarkFanOut1000|BenchmarkBlueGreenFleet' -benchtime 1x -timeout 60m ./internal/app

.PHONY: bench-memory
bench-memory: envtest ## What one cached Environment costs the manager's heap, at N = 1,000, 5,000 and 20,000 (AUTODEPLOY_BENCH_CACHE_SIZES).
	for n in $${AUTODEPLOY_BENCH_CACHE_SIZES:-1000 5000 20000}; do \
		KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" AUTODEPLOY_BENCH_CACHE_N=$$n go test -run '^$$' -bench BenchmarkCachedEnvironmentMemory -benchtime 1x -timeout 60m ./internal/app || exit 1; \
	done

.PHONY: bench-shard-list
bench-shard-list: envtest ## What a sharded receiver's lookup of a build's Environments costs (a field-selector LIST) against the cache, at N = 1,000, 5,000 and 20,000 (AUTODEPLOY_BENCH_LIST_SIZES).
	for n in $${AUTODEPLOY_BENCH_LIST_SIZES:-1000 5000 20000}; do \
		KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" AUTODEPLOY_BENCH_LIST_N=$$n go test -run '^$$' -bench BenchmarkReceiverListByApplication -benchtime 1x -timeout 60m ./internal/app || exit 1; \
	done

BENCH_SEED ?= 42
AUTODEPLOY_BENCH = KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" go run ./cmd/autodeploy-bench --seed $(BENCH_SEED)

.PHONY: bench-compare
bench-compare: envtest ## autodeploy against the polling cron it replaces at N = 100, 1,000 and 10,000 (about 75 min on 2 cores); writes docs/benchmarks.md.
	$(AUTODEPLOY_BENCH) --n 100@60,1000@15 --out docs/benchmarks.md
	$(AUTODEPLOY_BENCH) --n 10000@5/10 --build-interval 1h --out docs/benchmarks.md --append

.PHONY: bench-compare-quick
bench-compare-quick: envtest ## The same comparison at N = 100 and 1,000 only (about 15 min); prints the tables.
	$(AUTODEPLOY_BENCH) --n 100@60,1000@15

##@ Build

.PHONY: build
build: ## Build the manager and the ECS simulator into bin/.
	CGO_ENABLED=0 go build -trimpath -o bin/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -o bin/ecssim ./cmd/ecssim

PLUGIN_DIR ?= /usr/local/bin

.PHONY: kubectl-plugin
kubectl-plugin: ## Build the kubectl plugin into bin/kubectl-autodeploy (`kubectl autodeploy ...` once it is on PATH).
	CGO_ENABLED=0 go build -trimpath -o bin/kubectl-autodeploy ./cmd/kubectl-autodeploy

.PHONY: install-kubectl-plugin
install-kubectl-plugin: kubectl-plugin ## Install the kubectl plugin into PLUGIN_DIR (/usr/local/bin).
	install -m 0755 bin/kubectl-autodeploy $(PLUGIN_DIR)/kubectl-autodeploy

.PHONY: run
run: build envtest ## Run autodeploy locally against a local control plane and the ECS simulator.
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" go run ./cmd/autodeployctl dev

.PHONY: image
image: ## Build the container image without a container engine, as an OCI image layout in bin/image.
	go run ./cmd/autodeploy-image --out bin/image --version $(VERSION) --revision $(REVISION) $(if $(CREATED),--created $(CREATED))

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg CREATED=$(CREATED) -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	kubectl apply -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the controller (image IMG) to the cluster of the current kubeconfig.
	kubectl kustomize config/default | sed 's#image: autodeploy:dev#image: $(IMG)#' | kubectl apply -f -

.PHONY: undeploy
undeploy: ## Remove the controller and the CRD (and so every Environment) from the cluster.
	kubectl delete -k config/default --ignore-not-found
