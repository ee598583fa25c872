# The two commands a user needs: `make demo` (the main job) and `make test` (the tests).
# Everything they need is set up on the way: the venv, the Docker engine, the images.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK ?= dev

.PHONY: demo test unit engine venv base-image down clean benchmark

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

engine:
	bash scripts/ensure-docker.sh

base-image: engine
	bash images/base/bootstrap.sh

demo: venv base-image
	$(BIN)/cutover up --stack $(STACK)
	$(BIN)/cutover rehearse --stack $(STACK)
	$(BIN)/cutover status --stack $(STACK)

test: venv base-image
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest tests/unit

benchmark: venv base-image
	$(BIN)/python -m loadtests.benchmark --stack ci

down: venv
	$(BIN)/cutover down --stack $(STACK)

clean: venv
	-$(BIN)/cutover down --stack dev --volumes
	-$(BIN)/cutover down --stack ci --volumes
	rm -rf $(VENV)
