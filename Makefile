# payhook: every workflow is a target here. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)
PORT      ?= 4242
DB        ?= .payhook/dev.db
EVENT     ?= payment_intent.succeeded
STACK     ?= payhook
REGION    ?= us-east-1

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Install the Python tools (moto, cfn-lint, SAM CLI, cargo-lambda) into .venv, idempotently
	@scripts/tools.sh

# --- local pipeline -----------------------------------------------------------

.PHONY: dev
dev: ## Build and run the whole pipeline locally on an embedded SQLite store (port $(PORT))
	cargo run --profile local -p payhook -- dev --port $(PORT) --db $(DB)

.PHONY: trigger
trigger: ## Send a realistic signed event to `make dev` (EVENT=payment_intent.succeeded)
	@secret=$${STRIPE_WEBHOOK_SECRET:-$$(cargo run --profile local -q -p payhook -- dev --print-secret --db $(DB))}; \
	cargo run --profile local -q -p payhook -- trigger $(EVENT) --to http://127.0.0.1:$(PORT)/webhooks/stripe --secret "$$secret"

# --- tests --------------------------------------------------------------------

.PHONY: test
test: tools lint test-unit test-browser test-aws test-template test-lambda ## Everything CI runs: lint, unit, local e2e, console in a browser, moto integration, template checks, emulator e2e

.PHONY: lint
lint: ## rustfmt and clippy (warnings are errors)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-features --all-targets -- -D warnings

.PHONY: test-unit
test-unit: ## Unit tests, the local pipeline end to end (starts its own payhook dev), and the effects of Stripe's real flows
	cargo test --workspace --all-features --exclude payhook-tests
	cargo test -p payhook-tests --all-features --test flows
	# The HTTP effects target as `payhook dev` alone links it (no AWS SDK clients).
	cargo test -p payhook-shared --features local --lib http_target

.PHONY: test-browser
test-browser: ## The console of payhook dev end to end in headless Chromium (Debian's chromium + playwright-core); screenshots in target/console-screenshots/
	scripts/browser.sh
	cargo build -p payhook
	cd tests/browser && node --test console.test.mjs

.PHONY: test-aws
test-aws: tools ## Integration tests against moto server through the real AWS SDK
	scripts/moto.sh -- cargo test -p payhook-tests --all-features --lib --test '*_aws'

.PHONY: test-template
test-template: tools ## cfn-lint, sam validate --lint and our own wiring test of template.yaml
	scripts/check_template.sh

.PHONY: test-lambda
test-lambda: tools ## The six real binaries under cargo lambda watch against moto
	scripts/e2e_lambda.sh

.PHONY: fuzz
fuzz: ## cargo-fuzz targets on nightly, one at a time for FUZZ_SECONDS each (default 900), seeded from the fixtures; not part of `make test`
	scripts/fuzz.sh

# --- benchmarks ---------------------------------------------------------------

.PHONY: bench
bench: ## Criterion benches of the receive path and the stripe-node peer comparison
	cargo bench -p payhook-shared --all-features --bench receive_path
	bench/peers/compare.sh

.PHONY: bench-coldstart
bench-coldstart: tools ## Binary size, init time and peak RSS per Lambda function
	bench/coldstart.sh

.PHONY: bench-scaling
bench-scaling: tools ## Per accepted event: AWS calls, DynamoDB units, SQS requests, Lambda ms (receive, fulfill, Node peer) on moto
	bench/scaling.sh

.PHONY: bench-load
bench-load: ## payhook dev end to end vs Express + stripe-node under load
	bench/load.sh

.PHONY: bench-load-effects
bench-load-effects: ## payhook dev end to end with every effect POSTed to a local endpoint: effects/s
	bench/load.sh --effects

# --- AWS ----------------------------------------------------------------------

.PHONY: local-aws
local-aws: tools ## Start moto server with the deployment's tables and queues; prints the exports
	scripts/moto.sh -- scripts/local_aws.py --hold

.PHONY: build
build: tools ## The six arm64 Lambda artifacts (target/lambda/<fn>/bootstrap) via cargo-lambda
	scripts/build.sh

.PHONY: sam-build
sam-build: tools ## sam build (runs cargo lambda build --release --arm64 per function)
	sam build --template-file template.yaml

.PHONY: deploy
deploy: sam-build ## Deploy with SAM (guided the first time: writes samconfig.toml)
	@if [ -f samconfig.toml ]; then sam deploy; else sam deploy --guided --stack-name $(STACK) --region $(REGION) --capabilities CAPABILITY_IAM; fi

.PHONY: logs
logs: ## Tail a deployed function's CloudWatch logs (FN=receive)
	sam logs --cw-log-group /aws/lambda/$(STACK)-$(or $(FN),receive) --region $(REGION) --tail

.PHONY: watch
watch: tools ## Run the six functions under cargo lambda watch against moto (for `make invoke`)
	scripts/moto.sh -- bash -c 'eval "$$(.venv/bin/python scripts/local_aws.py)"; STRIPE_WEBHOOK_SECRET=$${STRIPE_WEBHOOK_SECRET:-whsec_payhook_local_test_secret} cargo-lambda lambda watch --invoke-address 127.0.0.1 --invoke-port 9000'

.PHONY: invoke
invoke: ## Invoke a function under `make watch` with an event file (FN=receive EVENT=events/receive-payment-intent-succeeded.json)
	cargo-lambda lambda invoke $(or $(FN),receive) --data-file $(EVENT) --invoke-address 127.0.0.1 --invoke-port 9000

.PHONY: events
events: ## Re-sign the sample events in events/ (STRIPE_WEBHOOK_SECRET, else the documented test secret)
	cargo run -q -p payhook -- events --out events

.PHONY: dlq-redrive
dlq-redrive: ## Move dead letters back to their queue (QUEUE=fulfill; LOCAL=1 for the local database)
	@if [ -n "$(LOCAL)" ]; then cargo run -q -p payhook -- dlq redrive --db $(DB) --queue $(QUEUE); \
	else cargo run -q -p payhook -- dlq redrive --queue $(STACK)-$(QUEUE); fi

.PHONY: destroy
destroy: ## Delete the deployed stack
	sam delete --stack-name $(STACK) --region $(REGION) --no-prompts
