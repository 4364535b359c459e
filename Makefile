# l3fabric: `make demo` and `make test` each do the whole set-up first.
# Run as root on Debian 12.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A real Keystone for the tests (tests/clients/keystone.py), a server in its own venv:
# its pins are none of the controller's business.
KEYSTONE_VENV := .venv-keystone
APT_PACKAGES := bird2 nftables iproute2 iputils-ping iperf3 conntrack traceroute \
                tcpdump socat python3-venv procps conntrackd

.PHONY: setup apt venv keystone demo test unit integration lint bench clean lab-down

setup: apt venv keystone

# Install Debian packages only when one is missing, so repeated runs are fast.
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@# BIRD is started by our agents inside namespaces, never as the system service.
	@systemctl disable --now bird >/dev/null 2>&1 || true

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.stamp-install: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test,keystone]'
	touch $@

venv: $(VENV)/.stamp-install

$(KEYSTONE_VENV)/.stamp-install:
	$(PYTHON) -m venv $(KEYSTONE_VENV)
	$(KEYSTONE_VENV)/bin/pip install -q keystone
	touch $@

keystone: $(KEYSTONE_VENV)/.stamp-install

demo: setup
	$(BIN)/l3fabric lab demo

test: setup lint
	$(BIN)/pytest -q tests

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup
	$(BIN)/pytest -q tests/integration

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

bench: setup
	$(BIN)/l3fabric bench api --json

lab-down: venv
	$(BIN)/l3fabric lab down --all

clean:
	rm -rf $(VENV) $(KEYSTONE_VENV) build src/*.egg-info .pytest_cache .ruff_cache
