# Switchboard: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create the virtualenv and install Switchboard with its dev tools

kafka: install ## fetch Apache Kafka's jars from Maven Central into kafka/libs (once)
	$(PY) -m switchboard broker fetch

run: kafka ## run the whole pipeline on embedded defaults (Ctrl-C stops everything)
	$(PY) -m switchboard run

test: kafka ## run the test suite (starts a real Kafka broker for the session)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install ## ruff lint and format check, then mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

typecheck: install ## mypy alone (strict on the stages; pyproject.toml says what is checked how)
	$(VENV)/bin/mypy

broker: kafka ## start a standalone local broker on 127.0.0.1:9092 (data under ./data/kafka)
	$(PY) -m switchboard broker start

broker-stop: install ## stop the standalone local broker
	$(PY) -m switchboard broker stop

bench: kafka ## run every benchmark and render BENCHMARKS.md (long: see BENCHMARKS.md)
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench all

grafana: install ## rebuild deploy/grafana's dashboard JSON from the reports' SQL
	$(PY) -m query.grafana

clean: ## remove the virtualenv, fetched jars and local data
	rm -rf $(VENV) kafka/libs data test-artifacts

.PHONY: help install kafka run test lint typecheck broker broker-stop bench clean grafana
