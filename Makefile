# radostdb: set-up and run targets for a fresh Debian bookworm machine (as root).
#   make bench   deps + venv + radostdb-bench on a throwaway local Ceph cluster and etcd
#   make test    deps + venv + the whole test suite on a throwaway cluster
# Every target is idempotent.

PY_SYS   := /usr/bin/python3
VENV     := .venv
PY       := $(VENV)/bin/python
DEB_PKGS := ceph-mon ceph-osd ceph-common python3-rados librados-dev libradospp-dev \
            python3-tdb tdb-tools python3-dev python3-venv g++ make \
            etcd-server python3-etcd3 libsqlite3-mod-ceph libgoogle-perftools4 ctdb
STAMP    := $(VENV)/.installed
CLS_LIB  := cls/libcls_radostdb.so
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: deps venv cls test bench lint clean

# apt-get update runs once (when some package is missing), then installs.
deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	    grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing: $$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y --no-install-recommends $$missing; \
	else echo "deps: all Debian packages present"; fi

venv: $(STAMP) $(CLS_LIB)

$(STAMP): setup.py pyproject.toml radostdb/_native/build.py radostdb/_native/codec.c radostdb/_native/codec.h
	@test -x $(PY_SYS) || { echo "$(PY_SYS) missing: run 'make deps' first"; exit 1; }
	test -x $(PY) || $(PY_SYS) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	$(PY) -c "import rados, tdb, radostdb, radostdb._native._codec"
	touch $@

cls: $(CLS_LIB)

$(CLS_LIB): $(wildcard cls/radostdb/*) cls/Makefile radostdb/_native/codec.c radostdb/_native/codec.h
	$(MAKE) -C cls

test: deps venv lint
	RADOSTDB_REQUIRE_CLUSTER=1 RADOSTDB_REQUIRE_NATIVE=1 $(PY) -m pytest -q $(PYTEST_ARGS)

bench: deps venv
	$(VENV)/bin/radostdb-bench $(BENCH_ARGS)

lint: venv
	$(VENV)/bin/ruff check radostdb tests bench
	$(VENV)/bin/ruff format --check radostdb tests bench

clean:
	$(MAKE) -C cls clean
	rm -rf $(VENV) build *.egg-info radostdb/_native/_codec*.so
