# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs.
.PHONY: run test setup build lint bench bench-numeric bench-docker bench-middleware bench-fairness bench-energy images k8s-up k8s-down k8s-images k8s-deploy test-k8s bench-k8s

CARGO ?= cargo

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release --bin cola

## Run cola on http://127.0.0.1:8080 (dev mode: API token in .cola/dev-token).
run: build
	./target/release/cola up --dev

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Run every test (formatting and lints first): the workspace against real NATS, bubblewrap,
## Docker and a browser; schemathesis against a live `cola up --dev` with its own OpenAPI
## document (every check, a few minutes at most); then the Kubernetes manifests offline, the
## alert rules, and the energy bench's trace, load and replay through a real MQTT client.
test: setup lint
	$(CARGO) test --workspace
	scripts/test-openapi.sh
	scripts/test-k8s-manifests.sh
	scripts/test-monitoring.sh
	scripts/test-energy.sh

## Measure latency and throughput against the targets (see BENCHMARKS.md).
bench: build
	scripts/bench.sh

## Numeric jobs through the HTTP API with wrk: latency and throughput (see BENCHMARKS.md).
bench-numeric: setup
	scripts/bench-numeric.sh

## The Docker backend against a bare `docker run` of the same image (see BENCHMARKS.md).
bench-docker: setup
	scripts/bench-docker.sh

## The middleware's CPU at 100 jobs/s and its memory with 10,000 queued jobs (see BENCHMARKS.md).
bench-middleware: setup
	scripts/bench-middleware.sh

## One user floods the queue, another user's hello world is timed: queue time p50/p95 (see
## BENCHMARKS.md). COLA_UP_ARGS passes more arguments to `cola up` (e.g. quota flags).
bench-fairness: setup
	scripts/bench-fairness.sh

## Energy-aware placement against energy-blind on a replayed solar day: three nodes, 1,000 jobs,
## the telemetry through NATS's MQTT listener; figures and an SVG (see BENCHMARKS.md).
bench-energy: setup
	scripts/bench-energy.sh

## Build cola's images (service and one executor per language) into the local Docker daemon,
## making the Debian base locally when no registry answers (see docker/Dockerfile).
images:
	scripts/images.sh

## A two-node Kubernetes cluster on this machine, built from Debian's kubernetes source package
## (binaries cached in ~/.cache/cola/k8s), with cola's images imported when Docker has them;
## prints the KUBECONFIG to use (see k8s/README.md, "A local cluster").
k8s-up:
	scripts/k8s-local.sh up

## Stop the local cluster and remove everything it made (the binary cache and logs stay).
k8s-down:
	scripts/k8s-local.sh down

## Import cola's images from Docker into the local cluster again, after rebuilding them.
k8s-images:
	scripts/k8s-local.sh images

## Deploy the whole system on the local cluster with k8s/README.md's steps (images tagged dev,
## Secrets, the local-test-login overlay, rollouts).
k8s-deploy:
	scripts/k8s-deploy.sh

## Against the local cluster (make k8s-up first; not part of `make test`): the cluster smoke test
## (a Pod, 4 Pods spread 2 and 2, a job as a Pod), the deployment, a person's journey through
## port-forward (login with the test provider, C, Go, JavaScript and numeric jobs, zips), and the
## end-to-end checks (spread, Pod hardening, limit reasons, NATS permissions, a 200-job burst
## with a middleware Pod deleted, a 100-job burst with a kubelet stopped, Pods started ahead,
## executor Pods following the sun from readings over MQTT).
test-k8s:
	scripts/k8s-smoke.sh
	scripts/k8s-deploy.sh
	scripts/k8s-journey.sh
	scripts/k8s-e2e.sh

## Against the local cluster with cola deployed (make k8s-up k8s-deploy): a C job's latency as a
## Pod, made per job and started ahead, against the process backend in the same run.
bench-k8s:
	scripts/bench-k8s.sh
