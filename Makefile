# The two commands of README.md:
#   make up    build the components and the host, run the whole system on embedded defaults
#   make test  build what the tests need and run every test, the format check and clippy
# Everything else here is a step of those two.

CARGO ?= cargo
COMPONENTS := data-service data-remote symbol-service ml-service execution-service notification-service
TEST_COMPONENTS := host-test-guest data-client
LISTEN ?= 127.0.0.1:3000
ADMIN_LISTEN ?= 127.0.0.1:9090

# The tools `scripts/setup.sh test` installs for the tests: the project's own
# Python environment and bin/ come first on the PATH of every recipe.
export PATH := $(CURDIR)/.venv/bin:$(CURDIR)/bin:$(PATH)

.PHONY: up test setup-up setup-test components component-tests host compile check fmt clippy k8s bench clean-state

## What the two commands need on this machine, installed when missing (scripts/setup.sh).
setup-up:
	@scripts/setup.sh up

setup-test:
	@scripts/setup.sh test

## Build every component for wasm32-wasip2 (profile `component`: release, opt-level "s").
components:
	@echo "build: the five components and the test guest for wasm32-wasip2 (a first build takes ~10 min on 2 cores; later ones only what changed)"
	$(CARGO) build --profile component --target wasm32-wasip2 $(addprefix -p ,$(COMPONENTS) $(TEST_COMPONENTS))

host:
	@echo "build: runtime-host, release (a first build takes ~5 min on 2 cores)"
	$(CARGO) build --release -p runtime-host

## Compile the components to native code before serving (cached under .spin/compiled:
## ~40 s the first time, ml-service most of it; milliseconds afterwards).
compile: components host
	./target/release/runtime-host compile -f spin.toml

up: setup-up compile
	./target/release/runtime-host up -f spin.toml --listen $(LISTEN) --admin-listen $(ADMIN_LISTEN)

test: setup-test
	$(MAKE) components
	$(CARGO) test
	$(MAKE) component-tests
	$(MAKE) check

## The components' own tests (their adapters: routing, parsing, errors, the
## typed bindings), built for wasm32-wasip2 and run by runtime-host as cargo's
## runner, with the component's grants and dependencies from spin.toml.
COMPONENT_TESTS := data-service symbol-service
component-tests:
	CARGO_TARGET_WASM32_WASIP2_RUNNER="$(CURDIR)/target/debug/runtime-host test" \
	  $(CARGO) test --profile component --target wasm32-wasip2 $(addprefix -p ,$(COMPONENT_TESTS))

check: fmt clippy k8s

## Kubernetes manifests: yamllint, strict schemas, cross-references (and the validator's own tests).
k8s:
	python3 scripts/pods_manifest.py --check
	python3 k8s/validate.py
	python3 -m unittest k8s/test_validate.py
	checkov -d k8s --config-file k8s/.checkov.yaml
	hadolint Dockerfile
	checkov -f Dockerfile --framework dockerfile --quiet --compact
	amtool check-config k8s/monitoring/alertmanager.yml
	promtool check config k8s/monitoring/prometheus.yml
	cd k8s/monitoring && promtool test rules rules_test.yml

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --target wasm32-wasip2 --all-targets $(addprefix -p ,$(COMPONENTS) $(TEST_COMPONENTS) daytrade-bindings) -- -D warnings

## Benchmarks (print figures): host req/s, latency, instantiation, RSS; indicator
## throughput natively and in Wasm; data-service and symbol-service latencies;
## ml-service: tract native, in the component (fresh / reused), onnxruntime;
## execution-service: orders/s (library, through the host), fills, the cycle.
bench: setup-test components host
	$(CARGO) run --release -p runtime-host --example bench
	$(CARGO) run --release -p market-data --example indicators_bench
	$(CARGO) build --release --target wasm32-wasip2 -p market-data --example indicators_bench
	$(CARGO) run --release -p runtime-host --example run_command -- target/wasm32-wasip2/release/examples/indicators_bench.wasm
	$(CARGO) run --release -p runtime-host --example services_bench
	$(CARGO) run --release -p runtime-host --example ml_bench
	$(CARGO) run --release -p runtime-host --example execution_bench

clean-state:
	rm -rf .spin
