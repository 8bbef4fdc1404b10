# SageMaker stateful sessions module for nginx.
#
#   make          build build/ngx_http_sagemaker_sessions_module.so
#   make run      start nginx with the module in front of a demo engine
#   make test     Swift unit tests, then integration tests against real nginx
#   make bench    the module's cost per request, against plain nginx and the
#                 Python library (writes bench/results.md)
#
# Every target installs the system packages it needs when they are missing.

SHELL          := /bin/bash
MODULE         := ngx_http_sagemaker_sessions_module
BUILD          := $(CURDIR)/build
SO             := $(BUILD)/$(MODULE).so
NGINX_SRC      := /usr/share/nginx/src
SWIFT          ?= swift
SWIFT_BIN      := $(shell dirname "$$(readlink -f "$$(command -v $(SWIFT))")" 2>/dev/null)
SWIFT_STATIC   := $(abspath $(SWIFT_BIN)/../lib/swift_static/linux)
SWIFT_LIB      := $(CURDIR)/.build/release/libSageMakerSessionsModule.a
PYTHON         ?= python3

APT_PACKAGES   := nginx nginx-dev libnginx-mod-http-ndk libnginx-mod-http-ndk-dev \
                  libjansson-dev curl
PIP_PACKAGES   := pytest model-hosting-container-standards==0.1.16

SWIFT_SOURCES  := Package.swift $(shell find Sources CInterop -type f 2>/dev/null)
SHIM_SOURCES   := nginx/config nginx/$(MODULE).c

.PHONY: all build deps apt-deps pip-deps bench-deps unit integration test run bench clean

all: build

build: $(SO)

deps: apt-deps pip-deps

apt-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

pip-deps:
	@$(PYTHON) -c "import pytest, model_hosting_container_standards" 2>/dev/null || \
	    $(PYTHON) -m pip install -q --root-user-action=ignore $(PIP_PACKAGES)

$(SWIFT_LIB): $(SWIFT_SOURCES) | apt-deps
	$(SWIFT) build -c release --product SageMakerSessionsModule

# nginx's module build needs a writable copy of its source tree.
$(BUILD)/nginx/objs/Makefile: $(NGINX_SRC)/configure nginx/config | apt-deps
	rm -rf $(BUILD)/nginx && mkdir -p $(BUILD) && cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && SMS_SWIFT_LIB=$(SWIFT_LIB) SMS_SWIFT_STATIC=$(SWIFT_STATIC) \
	    ./configure --with-compat --add-dynamic-module=$(CURDIR)/nginx > $(BUILD)/configure.log

$(SO): $(SWIFT_LIB) $(SHIM_SOURCES) $(BUILD)/nginx/objs/Makefile
	rm -f $(BUILD)/nginx/objs/$(MODULE).so   # nginx's Makefile does not know the Swift library
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/$(MODULE).so $@
	@if ldd $@ | grep -qi swift; then echo "error: $@ links a Swift library" >&2; exit 1; fi

unit: | apt-deps
	$(SWIFT) test

integration: build pip-deps
	$(PYTHON) -m pytest -q Tests/integration

test: deps unit integration

run: build pip-deps
	$(PYTHON) Tests/integration/demo.py

bench-deps: pip-deps
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	@$(PYTHON) -c "import uvicorn" 2>/dev/null || $(PYTHON) -m pip install -q --root-user-action=ignore uvicorn

bench: build bench-deps
	$(PYTHON) bench/bench.py

clean:
	rm -rf $(BUILD) .build
