# Quick start:  make run   (whole stack, embedded servers, no Docker)
#               make test  (starts its own servers on free ports)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SCALE  ?= 1

.PHONY: install run stop status test lint format bench clean promtool rules

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

# Prometheus rules: syntax, unit tests (infra/prometheus/tests) and both scrape
# configs (dev stack, compose). promtool comes from Debian's prometheus
# package, installed here when missing (needs root, as in CI); installing it
# starts no server.
PROMTOOL ?= promtool
PROM_DIR := infra/prometheus

promtool:
	@command -v $(PROMTOOL) >/dev/null 2>&1 || { \
	  echo "promtool missing: installing Debian's prometheus package"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y --no-install-recommends prometheus || \
	    { apt-get update && \
	      apt-get install -y --no-install-recommends prometheus; }; } \
	  >/dev/null || { echo "could not install prometheus (promtool); as root \
	run: apt-get install prometheus" >&2; exit 1; }; }

rules: promtool
	$(PROMTOOL) check rules $(PROM_DIR)/rules/*.yml
	$(PROMTOOL) test rules $(PROM_DIR)/tests/*.yml
	$(PROMTOOL) check config $(PROM_DIR)/prometheus.yml
	$(PROMTOOL) check config $(PROM_DIR)/prometheus.compose.yml

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
