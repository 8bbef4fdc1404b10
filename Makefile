# SageMaker stateful sessions module for nginx.
#
#   make          build build/ngx_http_sagemaker_sessions_module.so
#   make run      start nginx with the module in front of a demo engine
#   make test     Swift unit tests, integration tests against real nginx, then
#                 the Debian package built and checked (make packaging), then
#                 Debian 13's package and nginx 1.30.6 in a trixie root (make trixie),
#                 the suite against nginx 1.18.0, 1.26.3 and 1.30.6 (make versions), then make dist
#   make versions the integration suite against nginx 1.18.0 and 1.26.3 built from
#                 their released source, with and without the NDK (Tests/versions),
#                 and against unstable's nginx 1.30.6 in the trixie root (make versions-sid)
#   make dist     dist/: the module for nginx 1.18.0, 1.22.1, 1.26.3 and 1.30.6,
#                 with SHA256SUMS, each checked to load only into its own nginx
#   make asan     the integration tests against the module built with
#                 AddressSanitizer: no memory error, no leak (see README)
#   make bench    the module's cost per request, against plain nginx and the
#                 Python library (writes bench/results.md)
#   make callgrind  the same cost in instructions a request, steady on a busy machine
#   make consistency  a minute of sessions created, used and closed at
#                 saturation, with a reload: no inconsistent answer
#                 (writes Tests/load/results.md)
#   make fuzz     libFuzzer targets (Tests/Fuzz), 10 million executions each
#                 with ASan and leak detection: no crash, hang, leak or wrong answer
#   make deb      build/libnginx-mod-http-sagemaker-sessions_<VERSION>_amd64.deb,
#                 built by Debian's tooling (debian/, dh_nginx), checked by lintian
#   make deb DIST=trixie  Debian 13's package, built in a debootstrapped trixie
#                 root: build/trixie/libnginx-mod-http-sagemaker-sessions_<VERSION>_amd64.deb
#   make trixie   Debian 13's package tested in that root (Tests/packaging/test_trixie.py)
#   make install  the module, its load_module snippet and the modules-enabled
#                 link, in Debian's layout; DESTDIR and the NGINX_* paths below
#                 change where (make uninstall removes them)
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
# the nginx Development Kit's source for set_sagemaker_session_value: DIR,
# or none; empty: Debian's libnginx-mod-http-ndk-dev (see nginx/config)
NDK_SRC        ?=

APT_PACKAGES   := nginx nginx-dev libnginx-mod-http-ndk libnginx-mod-http-ndk-dev \
                  libjansson-dev curl
DEB_APT_PACKAGES := $(APT_PACKAGES) debhelper dpkg-dev fakeroot lintian
PIP_PACKAGES   := pytest model-hosting-container-standards==0.1.16 prometheus_client boto3

SWIFT_SOURCES  := Package.swift $(shell find Sources CInterop -type f 2>/dev/null)
SHIM_SOURCES   := VERSION $(wildcard nginx/config nginx/*.c nginx/*.h)

.PHONY: all build deps apt-deps deb-apt-deps pip-deps bench-deps unit integration packaging test run bench clean

all: build

build: $(SO)

deps: apt-deps pip-deps

# $(call apt_install,PACKAGES): installs those that are missing, one update first
define apt_install
	@missing=""; \
	for p in $(1); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $$missing; \
	fi
endef

apt-deps:
	$(call apt_install,$(APT_PACKAGES))

deb-apt-deps:
	$(call apt_install,$(DEB_APT_PACKAGES))

pip-deps:
	@$(PYTHON) -c "import pytest, model_hosting_container_standards, prometheus_client, boto3" 2>/dev/null || \
	    $(PYTHON) -m pip install -q --root-user-action=ignore $(PIP_PACKAGES)

$(SWIFT_LIB): $(SWIFT_SOURCES) | apt-deps
	$(SWIFT) build -c release --product SageMakerSessionsModule

# The source tree last configured (and NDK_SRC), rewritten only when
# NGINX_SRC or NDK_SRC names another one: such a build configures again.
$(BUILD)/nginx-src: FORCE
	@mkdir -p $(BUILD); [ "$$(cat $@ 2>/dev/null)" = "$(abspath $(NGINX_SRC)) $(NDK_SRC)" ] || echo "$(abspath $(NGINX_SRC)) $(NDK_SRC)" > $@

.PHONY: FORCE
FORCE:

# nginx's module build needs a writable copy of its source tree.
$(BUILD)/nginx/objs/Makefile: $(NGINX_SRC)/configure $(BUILD)/nginx-src nginx/config VERSION | apt-deps
	rm -rf $(BUILD)/nginx && mkdir -p $(BUILD) && cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && SMS_SWIFT_LIB=$(SWIFT_LIB) SMS_SWIFT_STATIC=$(SWIFT_STATIC) NDK_SRC=$(NDK_SRC) \
	    ./configure --with-compat --with-threads --add-dynamic-module=$(CURDIR)/nginx > $(BUILD)/configure.log

$(SO): $(SWIFT_LIB) $(SHIM_SOURCES) $(BUILD)/nginx/objs/Makefile
	rm -f $(BUILD)/nginx/objs/$(MODULE).so   # nginx's Makefile does not know the Swift library
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/$(MODULE).so $@.tmp && mv -f $@.tmp $@   # renamed into place: a running nginx keeps the module it mapped
	@if ldd $@ | grep -qi swift; then echo "error: $@ links a Swift library" >&2; exit 1; fi

unit: | apt-deps
	$(SWIFT) test

# the module built without NDK, for Tests/integration/test_build.py
NONDK_SO       := $(BUILD)/nondk/$(MODULE).so

$(NONDK_SO): $(SWIFT_LIB) $(SHIM_SOURCES)
	$(MAKE) BUILD=$(BUILD)/nondk NDK_SRC=none build

integration: build $(NONDK_SO) pip-deps
	SMS_NONDK_MODULE=$(NONDK_SO) SMS_REQUIRE_NONDK=1 $(PYTHON) -m pytest -q Tests/integration

test: deps unit integration packaging trixie versions dist

run: build pip-deps
	$(PYTHON) Tests/integration/demo.py

bench-deps: pip-deps
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	@$(PYTHON) -c "import uvicorn" 2>/dev/null || $(PYTHON) -m pip install -q --root-user-action=ignore uvicorn

bench: build bench-deps
	$(PYTHON) bench/bench.py

# the module's cost in instructions a request (callgrind), which a busy
# machine does not change: affinity and the status counters included
.PHONY: callgrind
callgrind: build bench-deps
	@command -v valgrind >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind)
	$(PYTHON) bench/callgrind.py

# one minute of create/use/close at saturation with a reload half way: every
# inconsistent answer counted (must be 0); writes Tests/load/results.md
.PHONY: consistency
consistency: build bench-deps
	@$(PYTHON) -c "import uvloop" 2>/dev/null || $(PYTHON) -m pip install -q --root-user-action=ignore uvloop
	$(PYTHON) Tests/load/consistency.py

clean:
	rm -rf $(BUILD) $(DIST) .build $(ASAN_BUILD) .build-asan

# --- Sanitizers ----------------------------------------------------------------
# `make asan`: the module built with AddressSanitizer (Swift core and C shim,
# toolchain clang) into build-asan/, then the whole integration suite against it.
# The stock nginx runs with ASan's runtime preloaded (Tests/sanitizers/nginx-asan);
# a test fails if an nginx process it ran wrote an ASan or LeakSanitizer report.
ASAN_BUILD     := $(CURDIR)/build-asan
ASAN_SO        := $(ASAN_BUILD)/$(MODULE).so
ASAN_SWIFT_LIB := $(CURDIR)/.build-asan/release/libSageMakerSessionsModule.a
ASAN_CC        := $(SWIFT_BIN)/clang
ASAN_REPORTS   := $(ASAN_BUILD)/reports

.PHONY: asan asan-build

asan-build: $(ASAN_SO)

$(ASAN_SWIFT_LIB): $(SWIFT_SOURCES) | apt-deps
	$(SWIFT) build -c release --scratch-path $(CURDIR)/.build-asan \
	    --product SageMakerSessionsModule --sanitize=address -Xswiftc -g

$(ASAN_BUILD)/nginx/objs/Makefile: $(NGINX_SRC)/configure $(BUILD)/nginx-src nginx/config VERSION | apt-deps
	rm -rf $(ASAN_BUILD)/nginx && mkdir -p $(ASAN_BUILD) && cp -r $(NGINX_SRC) $(ASAN_BUILD)/nginx
	cd $(ASAN_BUILD)/nginx && SMS_SWIFT_LIB=$(ASAN_SWIFT_LIB) SMS_SWIFT_STATIC=$(SWIFT_STATIC) \
	    ./configure --with-compat --with-threads --with-cc=$(ASAN_CC) \
	        --with-cc-opt='-fsanitize=address -fno-omit-frame-pointer' --with-ld-opt=-fsanitize=address \
	        --add-dynamic-module=$(CURDIR)/nginx > $(ASAN_BUILD)/configure.log

$(ASAN_SO): $(ASAN_SWIFT_LIB) $(SHIM_SOURCES) $(ASAN_BUILD)/nginx/objs/Makefile
	rm -f $(ASAN_BUILD)/nginx/objs/$(MODULE).so
	$(MAKE) -C $(ASAN_BUILD)/nginx -f objs/Makefile modules
	cp $(ASAN_BUILD)/nginx/objs/$(MODULE).so $@.tmp && mv -f $@.tmp $@
	@if ldd $@ | grep -qi swift; then echo "error: $@ links a Swift library" >&2; exit 1; fi

asan: asan-build pip-deps
	rm -rf $(ASAN_REPORTS) && mkdir -p $(ASAN_BUILD) && mkdir -m 1777 $(ASAN_REPORTS)
	SMS_MODULE=$(ASAN_SO) SMS_NGINX=$(CURDIR)/Tests/sanitizers/nginx-asan \
	SMS_ASAN_RUNTIME=$$($(ASAN_CC) -print-file-name=libclang_rt.asan-x86_64.so) \
	SMS_ASAN_SYMBOLIZER=$(SWIFT_BIN)/llvm-symbolizer SMS_ASAN_LOG_DIR=$(ASAN_REPORTS) \
	    $(PYTHON) -m pytest -q Tests/integration

# --- Fuzzing -------------------------------------------------------------------
# `make fuzz`: every target in Tests/Fuzz built with swiftc -sanitize=fuzzer,address
# into build/fuzz/, each run to FUZZ_RUNS executions (FUZZ_JOBS at a time) from
# the seeds in Tests/Fuzz/corpus/; prints a table, fails on any finding.
FUZZ_RUNS      ?= 10000000
FUZZ_JOBS      ?= 2

.PHONY: fuzz
fuzz: | apt-deps
	FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_JOBS=$(FUZZ_JOBS) SWIFTC=$(SWIFT_BIN)/swiftc Tests/Fuzz/run.sh

# --- Debian package ------------------------------------------------------------
# `make deb`: dpkg-buildpackage -b on a copy of the tree in build/deb/, with
# debian/changelog written from VERSION (the version's one place) and the
# Swift library already built here passed in (debian/rules builds it only
# when it is not given). The nginx_mod build system of dh_nginx configures in
# /usr/share/nginx/src, which writes a Makefile there: it runs in a mount
# namespace of its own where that directory is a writable copy, so the
# machine's nginx-dev is left as it was, as in a build chroot. The .so and
# build/nginx of `make build` are not touched.
DEB_NAME       := libnginx-mod-http-sagemaker-sessions
DEB_VERSION    := $(shell cat VERSION)
DEB            := $(BUILD)/$(DEB_NAME)_$(DEB_VERSION)_amd64.deb
DEB_WORK       := $(BUILD)/deb
DEB_TREE       := $(DEB_WORK)/$(DEB_NAME)-$(DEB_VERSION)
DEB_MAINTAINER := $(shell sed -n 's/^Maintainer: //p' debian/control)
DEB_SOURCES    := $(shell find debian -type f) README.md docs/reference.md nginx/example.conf nginx/sglang.conf

# debian/changelog for $(1), the distribution it is built for
define deb_changelog
	{ echo "$(DEB_NAME) ($(DEB_VERSION)) $(1); urgency=medium"; echo; \
	  echo "  * Version $(DEB_VERSION) of the SageMaker stateful sessions module."; echo; \
	  echo " -- $(DEB_MAINTAINER)  $$(git log -1 --format=%aD -- VERSION 2>/dev/null | grep . || date -R)"; \
	} > $(2)
endef

.PHONY: deb lintian

$(DEB): $(SWIFT_LIB) $(SHIM_SOURCES) $(DEB_SOURCES) | deb-apt-deps
	rm -rf $(DEB_WORK) && mkdir -p $(DEB_TREE)
	cp -r debian nginx CInterop Sources Package.swift VERSION README.md docs $(DEB_TREE)/
	rm -f $(DEB_TREE)/debian/changelog
	$(call deb_changelog,bookworm,$(DEB_TREE)/debian/changelog)
	cd $(DEB_TREE) && SMS_SWIFT_LIB=$(SWIFT_LIB) SMS_SWIFT_STATIC=$(SWIFT_STATIC) \
	    unshare --mount --propagation private sh -ec ' \
	        cp -a /usr/share/nginx/src $(DEB_WORK)/nginx-src; \
	        mount --bind $(DEB_WORK)/nginx-src /usr/share/nginx/src; \
	        dpkg-buildpackage -b -us -uc' > $(DEB_WORK)/build.log 2>&1 \
	    || { tail -40 $(DEB_WORK)/build.log; echo "error: dpkg-buildpackage failed, see $(DEB_WORK)/build.log" >&2; exit 1; }
	cp $(DEB_WORK)/$(notdir $(DEB)) $@.tmp && mv -f $@.tmp $@
	dpkg-deb --info $@
	lintian --fail-on error --info $@

lintian: $(DEB)
	lintian --fail-on error --info $<

# `make packaging`: the package built and checked, and the glibc and
# libstdc++ floor of the modules built here (Tests/packaging)
packaging: build deb pip-deps
	$(PYTHON) -m pytest -q Tests/packaging --ignore=Tests/packaging/test_trixie.py

# --- Debian 13 (trixie) --------------------------------------------------------
# `make deb DIST=trixie`: the same package built for Debian 13 inside a
# debootstrapped trixie root (Tests/roots/debian-root.sh, kept in
# build/roots/trixie), with trixie's own nginx-dev, dh_nginx, ABI pin
# (nginx-abi-1.26.3-*) and NDK. The Swift library does not depend on nginx's
# version: the one built here is bound into the root and passed in. The root's
# /usr/share/nginx/src is replaced by a writable copy for the build only.
ROOT_SH        := $(CURDIR)/Tests/roots/debian-root.sh
TRIXIE         := $(BUILD)/trixie
TRIXIE_DEB     := $(TRIXIE)/$(DEB_NAME)_$(DEB_VERSION)_amd64.deb
TRIXIE_TREE    := $(TRIXIE)/deb/$(DEB_NAME)-$(DEB_VERSION)
TRIXIE_BUILD_PACKAGES := build-essential debhelper dpkg-dev fakeroot lintian \
                  nginx-dev libnginx-mod-http-ndk-dev libjansson-dev
TRIXIE_SWIFT_LIB = $(realpath $(SWIFT_LIB))
TRIXIE_SWIFT_STATIC = $(realpath $(SWIFT_STATIC))

$(TRIXIE_DEB): $(SWIFT_LIB) $(SHIM_SOURCES) $(DEB_SOURCES) $(ROOT_SH)
	$(ROOT_SH) trixie install $(TRIXIE_BUILD_PACKAGES)
	rm -rf $(TRIXIE)/deb && mkdir -p $(TRIXIE_TREE)
	cp -r debian nginx CInterop Sources Package.swift VERSION README.md docs $(TRIXIE_TREE)/
	rm -f $(TRIXIE_TREE)/debian/changelog
	$(call deb_changelog,trixie,$(TRIXIE_TREE)/debian/changelog)
	SMS_ROOT_BIND="$(TRIXIE) $(dir $(TRIXIE_SWIFT_LIB)) $(TRIXIE_SWIFT_STATIC)" \
	    $(ROOT_SH) trixie run sh -ec ' \
	        rm -rf /tmp/nginx-src; cp -a /usr/share/nginx/src /tmp/nginx-src; \
	        mount --bind /tmp/nginx-src /usr/share/nginx/src; \
	        cd $(TRIXIE_TREE); \
	        SMS_SWIFT_LIB=$(TRIXIE_SWIFT_LIB) SMS_SWIFT_STATIC=$(TRIXIE_SWIFT_STATIC) dpkg-buildpackage -b -us -uc' \
	    > $(TRIXIE)/deb/build.log 2>&1 \
	    || { tail -40 $(TRIXIE)/deb/build.log; echo "error: dpkg-buildpackage failed in the trixie root (nginx 1.26.3), see $(TRIXIE)/deb/build.log" >&2; exit 1; }
	cp $(TRIXIE)/deb/$(notdir $(TRIXIE_DEB)) $@.tmp && mv -f $@.tmp $@
	dpkg-deb --info $@
	SMS_ROOT_BIND="$(TRIXIE)" $(ROOT_SH) trixie run lintian --fail-on error --info $@

# nginx 1.30.6: Debian unstable's nginx, nginx-dev and NDK packages, fetched
# in the trixie root with a sources list of its own (the archive's sid Release
# may be older than its Valid-Until), unpacked under build/sid/root; the
# module is built against that nginx-dev tree into build/nginx-1.30.6/.
# unstable's nginx needs OpenSSL 3.5, so it runs in the trixie root.
SID            := $(BUILD)/sid
SID_NGINX_VERSION := 1.30.6
SID_SO         := $(BUILD)/nginx-$(SID_NGINX_VERSION)/$(MODULE).so
SID_PACKAGES   := nginx nginx-common nginx-dev libnginx-mod-http-ndk libpcre2-8-0
SID_APT        := -o Dir::Etc::SourceList=/var/lib/sms-sid/sources.list -o Dir::Etc::SourceParts=/dev/null \
                  -o Dir::State::Lists=/var/lib/sms-sid/lists -o Dir::Cache=/var/cache/sms-sid \
                  -o Acquire::Check-Valid-Until=false

$(SID)/.unpacked: $(ROOT_SH)
	rm -rf $(SID) && mkdir -p $(SID)/debs
	SMS_ROOT_BIND="$(SID)" $(ROOT_SH) trixie run sh -ec ' \
	    mkdir -p /var/lib/sms-sid/lists/partial /var/cache/sms-sid/archives/partial; \
	    echo "deb http://deb.debian.org/debian sid main" > /var/lib/sms-sid/sources.list; \
	    apt-get $(SID_APT) update -qq; \
	    cd $(SID)/debs && apt-get $(SID_APT) download $(SID_PACKAGES)' > $(SID)/download.log 2>&1 \
	    || { cat $(SID)/download.log; echo "error: unstable's nginx $(SID_NGINX_VERSION) packages could not be fetched" >&2; exit 1; }
	for d in $(SID)/debs/*.deb; do dpkg-deb -x $$d $(SID)/root; done
	@grep -q '"$(SID_NGINX_VERSION)"' $(SID)/root/usr/share/nginx/src/src/core/nginx.h \
	    || { echo "error: unstable's nginx-dev is not nginx $(SID_NGINX_VERSION)" >&2; exit 1; }
	touch $@

$(SID_SO): $(SID)/.unpacked $(SWIFT_LIB) $(SHIM_SOURCES)
	$(MAKE) BUILD=$(BUILD)/nginx-$(SID_NGINX_VERSION) NGINX_SRC=$(SID)/root/usr/share/nginx/src build \
	    || { echo "error: the module does not build against nginx $(SID_NGINX_VERSION)" >&2; exit 1; }

SID_NONDK_SO   := $(BUILD)/nginx-$(SID_NGINX_VERSION)/nondk/$(MODULE).so
$(SID_NONDK_SO): $(SID)/.unpacked $(SWIFT_LIB) $(SHIM_SOURCES)
	$(MAKE) BUILD=$(BUILD)/nginx-$(SID_NGINX_VERSION)/nondk NGINX_SRC=$(SID)/root/usr/share/nginx/src NDK_SRC=none build \
	    || { echo "error: the module does not build against nginx $(SID_NGINX_VERSION) without NDK" >&2; exit 1; }

# `make versions-sid`: the whole integration suite against unstable's nginx
# 1.30.6 with its NDK, inside the trixie root (that nginx needs OpenSSL 3.5).
# Python and the test packages are installed in the root; pip there trusts
# the CA bundle this machine's pip does.
SID_CA         := $(firstword $(wildcard $(PIP_CERT) /etc/ssl/certs/ca-certificates.crt))
SID_SUITE_ENV  := SMS_NGINX=$(SID)/root/usr/sbin/nginx \
                  SMS_NDK_MODULE=$(SID)/root/usr/lib/nginx/modules/ndk_http_module.so \
                  SMS_MODULE=$(SID_SO) SMS_NONDK_MODULE=$(SID_NONDK_SO) SMS_REQUIRE_NONDK=1

.PHONY: versions-sid
versions-sid: $(SID_SO) $(SID_NONDK_SO)
	$(ROOT_SH) trixie install python3 python3-pip nginx libjansson4
	mkdir -p $(SID)/pip
	$(if $(SID_CA),cp -L $(SID_CA) $(SID)/pip/ca.crt,rm -f $(SID)/pip/ca.crt)
	SMS_ROOT_BIND="$(SID)" $(ROOT_SH) trixie run sh -ec ' \
	    python3 -c "import pytest, model_hosting_container_standards, prometheus_client, boto3" 2>/dev/null || \
	    python3 -m pip install -q --break-system-packages --root-user-action=ignore \
	        $$( [ -f $(SID)/pip/ca.crt ] && echo --cert $(SID)/pip/ca.crt ) $(PIP_PACKAGES)'
	@echo "== the integration suite against nginx $(SID_NGINX_VERSION) (Debian unstable's, in the trixie root)"
	SMS_ROOT_BIND="$(CURDIR) $(if $(filter $(CURDIR)/%,$(BUILD)),,$(BUILD))" $(ROOT_SH) trixie run sh -ec \
	    'cd $(CURDIR) && $(SID_SUITE_ENV) python3 -m pytest -q -rs Tests/integration' \
	    || { echo "error: the integration suite failed against nginx $(SID_NGINX_VERSION)" >&2; exit 1; }

# `make trixie`: in the trixie root, Debian 13's package next to its stock
# nginx 1.26.3, and unstable's nginx 1.30.6 with the module built for it
.PHONY: trixie
trixie: $(TRIXIE_DEB) $(SID_SO) pip-deps
	$(ROOT_SH) trixie install nginx libnginx-mod-http-ndk
	$(PYTHON) -m pytest -q Tests/packaging/test_trixie.py

# make deb: Debian 12's package; make deb DIST=trixie: Debian 13's
ifeq ($(DIST),trixie)
deb: $(TRIXIE_DEB)
else ifneq ($(filter-out bookworm,$(DIST)),)
deb:
	@echo "error: DIST=$(DIST): packages are built for bookworm (the default) and trixie" >&2; exit 1
else
deb: $(DEB)
endif

# --- nginx versions: the source matrix and dist/ ------------------------------
# `make versions`: for nginx 1.18.0 and 1.26.3, nginx and the NDK built from
# the released source Debian's archive holds (Tests/versions/nginx-source.sh,
# nginx-build.sh; cached under build/versions/VERSION), the module built
# against each into build/versions/VERSION/module, and the whole integration
# suite run against that nginx; then the same suite with no NDK loaded, where
# the tests that need it are skipped. A failure names the nginx version.
VERSIONS_DIR   := $(CURDIR)/Tests/versions
MATRIX         := 1.18.0 1.26.3
# nginx's own build: 1.18.0 needs PCRE1, 1.26.3 takes PCRE2
VERSIONS_APT_PACKAGES := $(APT_PACKAGES) build-essential libpcre3-dev libpcre2-dev libssl-dev zlib1g-dev

.PHONY: versions versions-apt-deps
versions-apt-deps:
	$(call apt_install,$(VERSIONS_APT_PACKAGES))

versions: $(SWIFT_LIB) pip-deps | versions-apt-deps
	@failed=""; \
	for v in $(MATRIX); do \
	    PYTHON=$(PYTHON) $(VERSIONS_DIR)/suite.sh $$v || failed="$$failed $$v"; \
	    PYTHON=$(PYTHON) $(VERSIONS_DIR)/suite.sh $$v no-ndk || failed="$$failed $$v(no-ndk)"; \
	done; \
	$(MAKE) --no-print-directory versions-sid || failed="$$failed $(SID_NGINX_VERSION)"; \
	if [ -n "$$failed" ]; then echo "error: the integration suite failed against nginx$$failed" >&2; exit 1; fi

# `make dist`: the module for every nginx version reachable from Debian's
# archive, one file each, and SHA256SUMS:
#   dist/ngx_http_sagemaker_sessions_module-<VERSION>-nginx-<nginx version>-<arch>.so
# 1.18.0 and 1.26.3 against their released source, 1.22.1 against this
# machine's nginx-dev (make build), 1.30.6 against unstable's nginx-dev (as
# make trixie). Tests/versions/test_dist.py then checks that each loads into
# an nginx of its version and is refused, with nginx's message, by the others.
DIST           := $(CURDIR)/dist
DIST_ARCH      := $(shell uname -m)
dist_file       = $(DIST).tmp/$(MODULE)-$(DEB_VERSION)-nginx-$(1)-$(DIST_ARCH).so

.PHONY: dist
dist: $(SO) $(SID_SO) pip-deps | versions-apt-deps
	@[ "$(abspath $(NGINX_SRC))" = /usr/share/nginx/src ] || \
	    { echo "error: make dist builds against each nginx itself: do not set NGINX_SRC" >&2; exit 1; }
	for v in $(MATRIX); do $(VERSIONS_DIR)/nginx-build.sh $$v > /dev/null || exit 1; done
	$(ROOT_SH) trixie install nginx libjansson4   # the libraries unstable's nginx and the module need
	rm -rf $(DIST).tmp && mkdir -p $(DIST).tmp
	cp $(BUILD)/versions/1.18.0/module/$(MODULE).so $(call dist_file,1.18.0)
	cp $(SO) $(call dist_file,1.22.1)
	cp $(BUILD)/versions/1.26.3/module/$(MODULE).so $(call dist_file,1.26.3)
	cp $(SID_SO) $(call dist_file,$(SID_NGINX_VERSION))
	cd $(DIST).tmp && sha256sum *.so > SHA256SUMS
	rm -rf $(DIST) && mv $(DIST).tmp $(DIST)
	$(PYTHON) -m pytest -q Tests/versions/test_dist.py
	@cat $(DIST)/SHA256SUMS

# --- make install --------------------------------------------------------------
# Debian's layout by default; for another nginx set the paths, e.g.
#   make install NGINX_MODULES_PATH=/etc/nginx/modules NGINX_MODULES_AVAILABLE=/etc/nginx/modules-available
# NGINX_MODULES_ENABLED= (empty) installs no link: include the snippet yourself.
# The snippet names the module by its absolute path, so it works whatever
# nginx's prefix is.
NGINX_MODULES_PATH      ?= /usr/lib/nginx/modules
NGINX_MODULES_AVAILABLE ?= /usr/share/nginx/modules-available
NGINX_MODULES_ENABLED   ?= /etc/nginx/modules-enabled
SNIPPET                 := mod-http-sagemaker-sessions.conf
SNIPPET_PRIORITY        := 60

.PHONY: install uninstall
install: build
	install -d $(DESTDIR)$(NGINX_MODULES_PATH) $(DESTDIR)$(NGINX_MODULES_AVAILABLE)
	install -m 644 $(SO) $(DESTDIR)$(NGINX_MODULES_PATH)/$(MODULE).so
	echo "load_module $(NGINX_MODULES_PATH)/$(MODULE).so;" > $(DESTDIR)$(NGINX_MODULES_AVAILABLE)/$(SNIPPET)
	chmod 644 $(DESTDIR)$(NGINX_MODULES_AVAILABLE)/$(SNIPPET)
	if [ -n "$(NGINX_MODULES_ENABLED)" ]; then \
	    install -d $(DESTDIR)$(NGINX_MODULES_ENABLED) && \
	    ln -sfn $(NGINX_MODULES_AVAILABLE)/$(SNIPPET) $(DESTDIR)$(NGINX_MODULES_ENABLED)/$(SNIPPET_PRIORITY)-$(SNIPPET); \
	fi

uninstall:
	rm -f $(DESTDIR)$(NGINX_MODULES_PATH)/$(MODULE).so $(DESTDIR)$(NGINX_MODULES_AVAILABLE)/$(SNIPPET)
	if [ -n "$(NGINX_MODULES_ENABLED)" ]; then rm -f $(DESTDIR)$(NGINX_MODULES_ENABLED)/$(SNIPPET_PRIORITY)-$(SNIPPET); fi
