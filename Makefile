# The two commands a new user runs: `make demo` and `make test`. Both create .venv and install.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO_STORE ?= demo-results

.PHONY: install test test-all demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# constraints.txt pins torch to the CPU wheel (an unpinned torch pulls GBs of CUDA)
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install -q -c constraints.txt -e '.[dev,dist,rl,nlp,integrations]'
	touch $(STAMP)

install: $(STAMP)

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-all: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m ''

demo: install
	OMP_NUM_THREADS=1 $(VENV)/bin/ticketlab demo --store $(DEMO_STORE)

bench: install
	OMP_NUM_THREADS=1 TICKETLAB_DATA=$${TICKETLAB_DATA:-../shared/data} $(PY) benchmarks/speed/run.py

clean:
	rm -rf $(VENV) $(DEMO_STORE) ticketlab-results
