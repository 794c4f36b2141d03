# Two commands do all the set-up on a fresh machine with Python 3 and pip:
#   make demo   -- create .venv, install, run the demo
#   make test   -- create .venv, install, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KERAS_BACKEND := jax

.PHONY: demo test bench clean

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
	$(BIN)/python -m pytest -q -n 2 tests

bench: $(VENV)/.installed-test+example+bench
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
