# The two commands of the quick start, and a few more. Each sets up .venv when needed:
# creates it, installs the project with its dev tools (pip install -e), which generates the gRPC
# stubs and compiles the Cython extensions (build.py). Re-runs only when an input changed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.crosspark-installed
FONTS := $(VENV)/.crosspark-fonts
BUILD_INPUTS := pyproject.toml setup.py build.py $(shell find protos -name '*.proto') \
	$(shell find crosspark card_service settlement lot_node recognition_core -name '*.pyx' 2>/dev/null)

.PHONY: demo test bench lint typecheck install clean

demo: $(STAMP) $(FONTS)
	$(BIN)/crosspark demo

test: $(STAMP) $(FONTS)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/crosspark bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy crosspark card_service settlement lot_node recognition_core

install: $(STAMP)

$(STAMP): $(BUILD_INPUTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# Fonts for the synthetic plates (training, the demo's gate photos, tests): Debian packages.
$(FONTS): recognition_core/train/fonts.sh
	bash recognition_core/train/fonts.sh
	@mkdir -p $(VENV) && touch $@

clean:
	rm -rf $(VENV) build *.egg-info crosspark/v1
	find . -name '*.so' -not -path './$(VENV)/*' -delete
