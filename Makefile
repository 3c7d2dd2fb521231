# papo: `make run` installs everything and runs the whole stack locally; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SERVICES := ingest debounce transcribe llm persist deliver
UV_VERSION := 0.13.9
# Everything comes from uv.lock (`uv sync --frozen`), workspace members editable, except torch: this machine's
# CPU build comes from pip's local wheel cache, so uv leaves torch and its CUDA wheels alone. Elsewhere pass
# TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" for the CPU build.
TORCH_VERSION := 2.13.0
TORCH_PIP_ARGS ?=
TORCH_ONLY = torch $(shell grep -oE '^name = "(nvidia-[a-z0-9-]+|triton|cuda-[a-z0-9-]+)"' uv.lock | cut -d'"' -f2 | sort -u)
STAMP := $(VENV)/.installed
# `make run SKIP_INSTALL=1 VENV=...` runs from an environment that is already installed.
SKIP_INSTALL ?=

.PHONY: install infra run test test-unit test-integration lint typecheck bench fuzz clean lock

install: $(STAMP)

$(STAMP): pyproject.toml uv.lock libs/*/pyproject.toml services/*/pyproject.toml scripts/install-tools.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	UV_PROJECT_ENVIRONMENT=$(abspath $(VENV)) UV_PYTHON_DOWNLOADS=never $(BIN)/uv sync --frozen --inexact \
		--extra torch $(foreach p,$(TORCH_ONLY),--no-install-package $(p))
	$(BIN)/pip install -q $(TORCH_PIP_ARGS) torch==$(TORCH_VERSION)
	bash scripts/install-tools.sh --with-promtool
	touch $@

lock:
	$(BIN)/uv lock

infra:
	bash scripts/infra-up.sh

run: $(if $(SKIP_INSTALL),,install) infra
	$(BIN)/papo dev

# Every test, in two tiers: the unit tier with the network switched off (pytest-socket), so a unit test that
# reaches for a server fails instead of passing by luck; then everything that talks to real servers.
UNIT := -m "not integration and not e2e and not chaos" --disable-socket --allow-unix-socket
test: install infra
	$(BIN)/pytest $(UNIT)
	$(BIN)/pytest -m "integration or e2e or chaos"

test-unit: install
	$(BIN)/pytest $(UNIT)

test-integration: install infra
	$(BIN)/pytest -m "integration or e2e or chaos"

# the webhook fuzzer at depth: 10,000 fresh hostile bodies against ingest, and a larger sample through the stack
fuzz: install infra
	PAPO_FUZZ_PROFILE=deep PAPO_FUZZ_STACK_SAMPLE=600 $(BIN)/pytest tests/fuzz -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy -p papo_common -p papo_simulator $(foreach s,$(SERVICES),-p papo_$(s))

# every benchmark in its quick form, each bounded; the full runs and their figures are in docs/performance.md
BENCH_TIMEOUT ?= 300
bench: install infra
	for b in bench/*.py; do echo "== $$b"; PAPO_BENCH_QUICK=1 timeout $(BENCH_TIMEOUT) $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
