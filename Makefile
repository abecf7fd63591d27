# The two quick-start commands:
#   make lab    the local lab: real control plane + simulated nodes (needs root)
#   make test   every test: type-check, lint, unit and integration tests, leftover check
# Both install what they need first (scripts/setup.sh), doing only what is missing.

.PHONY: setup build lab test lint clean

setup:
	@bash scripts/setup.sh

build: setup
	npx tsc -p tsconfig.build.json

lab: build
	node dist/cli/main.js lab $(ARGS)

test: setup
	npm test
	@bash scripts/lint-dockerfile.sh
	@bash scripts/check-leftovers.sh

lint:
	npx biome check .
	bash scripts/lint-dockerfile.sh

clean:
	rm -rf dist coverage .cache/bin
