# Two commands do all the set-up on a fresh machine with Python 3 and pip:
#   make demo   -- create .venv, install, run the demo
#   make test   -- create .venv, install, run the test suite
# and, for developers and CI:
#   make crossover    -- re-derive the plan's thresholds on this machine (benchmarks/crossover.py)
#   make lint         -- ruff (lint and format), pyright, mypy on a user script, pyright --verifytypes
#   make docs         -- the API reference and guide, built in strict mode
#   make test-lowest  -- the lowest versions pyproject.toml allows, on a representative part of the suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KERAS_BACKEND := jax

.PHONY: demo test bench crossover lint docs test-lowest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# One stamp per set of extras, so `make demo` does not install the test oracles.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(subst +,$(comma),$*)]"
	touch $@

comma := ,

demo: $(VENV)/.installed-example
	$(BIN)/python examples/show_shapes.py
	$(BIN)/python -m examples.audio_upsampling.train --out runs/demo --overwrite
	$(BIN)/python -m examples.vocoder.stream --seconds 2

test: $(VENV)/.installed-test+example+bench
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests

bench: $(VENV)/.installed-test+example+bench
	$(BIN)/python -m benchmarks.run

# Prints each threshold's proposed value beside the current one; add --write to record the sweep
# in docs/performance.md, --only NAME to sweep one threshold.
crossover: $(VENV)/.installed-test+example+bench
	$(BIN)/python -m benchmarks.crossover

# pyright finds the venv's packages through the python first on PATH; the user script imports torch.
lint: $(VENV)/.installed-test+lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pyright
	$(BIN)/mypy
	$(BIN)/python .ci/verify_types.py

docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	@echo "site: docs/_build/html/index.html"

# A second environment with every direct dependency at its declared lower bound.
LOWEST := .venv-lowest
LOWEST_TESTS := tests/test_config.py tests/test_conv1d.py tests/test_linen.py tests/test_nnx.py \
	tests/test_streaming.py tests/test_interop.py tests/test_example_cli_safety.py tests/test_packaging.py \
	tests/test_numpy_oracle.py tests/test_smoke.py
# The two widest grids of those files; the main suite runs them on the newest versions.
LOWEST_DESELECT := not test_random_chunkings_reproduce_the_whole_signal and not test_every_padding_mode_output_padding

$(LOWEST)/.installed: pyproject.toml .ci/lowest_constraints.py
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST)/bin/python .ci/lowest_constraints.py test example > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/python -m pip install --quiet -c $(LOWEST)/constraints.txt -e ".[test,example]"
	touch $@

test-lowest: $(LOWEST)/.installed
	@echo "lowest versions:" $$(cat $(LOWEST)/constraints.txt)
	$(LOWEST)/bin/python -m pytest -q -n 2 --dist loadgroup $(LOWEST_TESTS) -k "$(LOWEST_DESELECT)"

clean:
	rm -rf $(VENV) $(LOWEST) runs .pytest_cache .hypothesis docs/_build
