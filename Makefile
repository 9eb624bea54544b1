# The two commands a newcomer needs: `make demo` and `make test`. Everything they need is
# installed by the project's own files (pinned, into .venv/), and only loopback is contacted.

CARGO ?= cargo
PYTHON := .venv/bin/python

.PHONY: demo test bootstrap browser build fmt-check clippy python-check terraform-check cdk-check package package-smoke bench-lambda-init bench-stream bench-reconcile bench-variants bench-serve bench-memory bench-inventory loadtest loadtest-corpus clean-stack

## demo: bring up the local stack, run ingest and workers, replicate sample images, show the result
demo: bootstrap build
	$(PYTHON) scripts/demo.py

## test: formatting, clippy (warnings are errors), ruff, the terraform and CDK checks, unit and end-to-end
## tests, then what AWS runs: the arm64 package built and smoke-tested under qemu (package-smoke)
test: bootstrap browser python-check terraform-check cdk-check fmt-check clippy build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	$(MAKE) package-smoke

## package: build what AWS runs (docs/DEPLOY.md, step 2): the arm64 Lambda zips of ingest and the
## worker, the Fargate image as an OCI archive, target/package/manifest.json; then a CDK synth of
## both stages from them, linted with cfn-lint. Installs its tools (pinned Debian packages, the
## rustup target) itself.
package: bootstrap
	$(PYTHON) scripts/package.py
	$(PYTHON) scripts/check_cfn.py --assembly target/package/cdk.out

## package-smoke: the package (without the synth), then the smoke tests that run its arm64
## binaries under qemu-user against the local stack: the zips under the loopback Lambda Runtime
## API, the image's worker and reconciler as its user on a read-only root
package-smoke: bootstrap build
	$(PYTHON) scripts/package.py --no-synth
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run -p yuba-e2e --run-ignored only -E 'test(/^package::/)' --no-fail-fast; \
	else \
		$(CARGO) test -p yuba-e2e --test e2e package:: -- --ignored; \
	fi

bootstrap:
	scripts/bootstrap.sh

## browser: Debian's chromium (unpinned, as root), the headless browser of the e2e gallery test
browser: bootstrap
	$(PYTHON) scripts/debian.py chromium

build:
	$(CARGO) build --workspace --bins

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## python-check: ruff over scripts/ (ruff.toml): the lint rules, and the formatting checked, not applied
python-check: bootstrap
	$(PYTHON) -m ruff check scripts
	$(PYTHON) -m ruff format --check scripts

## cdk-check: the AWS side offline: npm ci (again only when the lockfile changes), tsc, jest
## (template assertions and cdk-nag), cdk synth of both stages with placeholder Lambda code, and
## cfn-lint on every template the synth wrote (0 errors; scripts/check_cfn.py self-checks first);
## then the same for prod with a sharded reconcile (its state machine), which no stage turns on
SHARDED_PROD = {"reconciler":{"sourceInventory":{"bucket":"yuba-prod-inventories","folder":"reports/yuba-prod-images/daily/","storageGiB":100},"shards":4}}
cdk-check: bootstrap
	cd cdk && stamp=$$(sha256sum package-lock.json | cut -d' ' -f1) && \
		if [ "$$(cat node_modules/.yuba-stamp 2>/dev/null)" != "$$stamp" ]; then \
			npm ci --no-audit --no-fund && echo "$$stamp" > node_modules/.yuba-stamp; \
		fi && \
		npm test && npm run synth && \
		npm run synth -- -c yuba:stages=prod -c 'yuba:prod=$(SHARDED_PROD)' -o cdk.out.sharded
	$(PYTHON) scripts/check_cfn.py
	$(PYTHON) scripts/check_cfn.py --assembly cdk/cdk.out.sharded

## terraform-check: the GCP side offline: HCL assertions (and their self-test), checkov, terraform fmt
terraform-check: bootstrap
	$(PYTHON) scripts/check_terraform.py

## bench-lambda-init: init time of the Lambda functions under the loopback Runtime API, a proxy
## (native builds of the dist profile the zips use; docs/BENCHMARKS.md, "What AWS runs")
bench-lambda-init: bootstrap
	$(CARGO) build --profile dist -p yuba-ingest -p yuba-worker
	$(CARGO) run -p yuba-e2e --example lambda_init -- --runs 20 target/dist/yuba-ingest target/dist/yuba-worker

## bench-stream: replicate a 2 GiB object and report throughput and peak RSS beside rclone
bench-stream: bootstrap
	$(CARGO) build --release --bins
	$(PYTHON) scripts/bench_stream.py --size-gib 2

## bench-reconcile: yuba-reconciler diff / backfill --inline beside rclone check / copy (hours: see scripts/README.md)
bench-reconcile: bootstrap
	$(CARGO) build --release -p yuba-reconciler
	$(PYTHON) scripts/bench_reconcile.py

## bench-variants: three JPEG variants of real photos, yuba's transform beside vipsthumbnail
bench-variants: bootstrap
	$(CARGO) build --release -p yuba-transform --example render
	$(PYTHON) scripts/bench_variants.py

## bench-serve: yuba-serve (release) beside a direct GET from fake-gcs-server: hits/s and p50/p99
## of an original and a stored variant (wrk, Debian's, pinned), then renders on demand per second;
## the debug reconciler only puts the replicas in place (docs/BENCHMARKS.md)
bench-serve: bootstrap build
	$(CARGO) build --release -p yuba-serve
	$(PYTHON) scripts/bench_serve.py

## bench-memory: images at once through one worker, the build of BEFORE_MEMORY (the commit before
## issue 16) beside this one: peak RSS and images/s for the amplification PNG and a 24 MP photo
BEFORE_MEMORY ?= 72316bb
bench-memory: bootstrap loadtest-corpus
	rm -rf target/bench-memory/src && git worktree prune
	git worktree add --detach target/bench-memory/src $(BEFORE_MEMORY)
	cd target/bench-memory/src && CARGO_TARGET_DIR=$(CURDIR)/target $(CARGO) build --release -p yuba-worker
	cp target/release/yuba-worker target/bench-memory/yuba-worker-$(BEFORE_MEMORY)
	git worktree remove --force target/bench-memory/src
	$(CARGO) build --release --bins
	@if cmp -s target/release/yuba-worker target/bench-memory/yuba-worker-$(BEFORE_MEMORY); then \
		echo "the worker built from $(BEFORE_MEMORY) is this one: nothing to compare"; exit 1; fi
	target/release/yuba-loadtest burst --images amplification \
		--worker before=target/bench-memory/yuba-worker-$(BEFORE_MEMORY) \
		--worker after=target/release/yuba-worker \
		--worker after-512MiB=target/release/yuba-worker,YUBA_MEMORY_MIB=512
	target/release/yuba-loadtest burst --images photo --repeat 3 \
		--worker before=target/bench-memory/yuba-worker-$(BEFORE_MEMORY) \
		--worker after=target/release/yuba-worker

## bench-inventory: yuba-reconciler diff of a synthetic S3 Inventory report of 10 million keys
## (CSV and Parquet) against a synthetic replica with seeded drift: keys/s, CPU, peak RSS, exact
## findings, the projected daily run over a billion keys; then a variant profile added to
## replicated photos: bytes sent per repaired image, and its cost over a billion (docs/BENCHMARKS.md)
bench-inventory: bootstrap loadtest-corpus
	$(CARGO) build --release -p yuba-reconciler -p yuba-loadtest
	target/release/yuba-loadtest inventory
	target/release/yuba-loadtest profile-change

## loadtest-corpus: fetch the photos the load test uploads (Debian's lomiri-wallpapers-20.04, apt-get download)
loadtest-corpus: bootstrap
	$(PYTHON) scripts/bench_variants.py --corpus-only

## loadtest: a few minutes of load on the local stack, release build: pass-through copies at
## 50 objects/s, then photos with three variants; reports under target/loadtest/ (docs/BENCHMARKS.md)
loadtest: bootstrap loadtest-corpus
	$(CARGO) build --release --bins
	target/release/yuba-loadtest run --scenario pass-through --rate 50 --duration 120
	target/release/yuba-loadtest run --scenario photos --rate 6 --duration 120

## clean-stack: stop a stack left running in .stack/ by `stack.py up --detach`
clean-stack:
	-$(PYTHON) scripts/stack.py down
