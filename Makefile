# Quick start:  make run   (whole stack, embedded servers, no Docker)
#               make test  (starts its own servers on free ports)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SCALE  ?= 1

.PHONY: install run stop status test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/msgctl stack up --scale $(SCALE)

stop:
	@if [ -x $(BIN)/msgctl ]; then $(BIN)/msgctl stack down; else echo "stack not running"; fi

status: install
	$(BIN)/msgctl stack status

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The seed's baseline (200 tenants, 1,500 sockets, 50 msg/s, 60 s) on the
# running stack, the same workload on the python-socketio peer, and the raw
# JetStream ceiling, with the ratios.
bench: run
	$(BIN)/msgctl bench

clean: stop
	rm -rf .data
