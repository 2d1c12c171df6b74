# Every target bootstraps its own environment: uv (installed with pip if missing), then
# `uv sync` against the committed uv.lock.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# Recursive (=) so it is looked up again after `env` has installed uv.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
RUN = $(UV) run --frozen

.PHONY: help env install-dagster-yaml demo real grid recover lint test dev bench clean

help:
	@echo "make demo   materialize every asset on the offline demo source"
	@echo "make real   the real-data run: every asset on 96 real ERA5-Land basins and the GFDL-ESM2M tables (data/real)"
	@echo "make grid   grid mode on the demo grid: every cell to the tile-partitioned core, projections and maps (data/grid_demo)"
	@echo "make test   lint (ruff, sqlfluff), then run the test suite"
	@echo "make dev    serve the Dagster UI (dagster dev -w workspace.yaml)"
	@echo "make recover  mark runs whose process died as failed and free their pool slots"

env:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@# --compile-bytecode: installed packages are compiled once, here. Where PYTHONDONTWRITEBYTECODE
	@# is set (CI images, this project's machines) Python would otherwise compile dbt, dagster and
	@# the rest from source in every process: 1.4 s of every dbt command, 4 s of loading the definitions.
	@$(UV) sync --frozen --quiet --compile-bytecode
	@# the dbt manifest (and the partial parse each dbt run reuses) for the lake the environment names
	@$(RUN) python -c "from dagster_project.dbt import dbt_project; dbt_project()"
	@$(MAKE) --no-print-directory install-dagster-yaml

# The instance settings (pools, run monitoring, slot release) go into $(DAGSTER_HOME) when it has
# none, and again when the repository's copy is newer; the replaced one is kept as dagster.yaml.~N~.
install-dagster-yaml:
	@mkdir -p "$(DAGSTER_HOME)"
	@if [ ! -f "$(DAGSTER_HOME)/dagster.yaml" ] || [ dagster_project/dagster.yaml -nt "$(DAGSTER_HOME)/dagster.yaml" ]; then \
		cmp -s dagster_project/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml" || cp --backup=numbered dagster_project/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"; \
	fi

demo: env
	$(RUN) python -m dagster_project.launcher.demo

# The real-data run: the whole graph on the real ERA5-Land basin tables and the real GFDL-ESM2M band
# tables (sources/real_basins.yaml), in a lake and a Dagster instance of its own, so its runs never
# mix with the demo's (data/real, .dagster_home_real). About an hour on 2 cores.
REAL_SOURCES := $(CURDIR)/sources/real_basins.yaml
REAL_LAKE := $(CURDIR)/data/real
REAL_DAGSTER_HOME := $(CURDIR)/.dagster_home_real
real: env
	@$(MAKE) --no-print-directory install-dagster-yaml DAGSTER_HOME=$(REAL_DAGSTER_HOME)
	DAGSTER_HOME=$(REAL_DAGSTER_HOME) PERMAFROST_SOURCES=$(REAL_SOURCES) PERMAFROST_LAKE_ROOT=$(REAL_LAKE) \
		$(RUN) python -m dagster_project.launcher.demo

# Grid mode on the demo grid (sources/demo_grid.yaml: the reanalysis delivers 1513 cells in 20 tiles):
# the cells through dbt to the tile-partitioned core, projections and maps on an embedded dask
# LocalCluster (or PERMAFROST_DASK_ADDRESS), in a lake and an instance of its own (data/grid_demo,
# .dagster_home_grid). GRID_SELECT picks the assets (Dagster's selection syntax).
GRID_SOURCES := $(CURDIR)/sources/demo_grid.yaml
GRID_LAKE := $(CURDIR)/data/grid_demo
GRID_DAGSTER_HOME := $(CURDIR)/.dagster_home_grid
GRID_SELECT ?= +key:grid_maps or +key:tile_network_history
grid: env
	@$(MAKE) --no-print-directory install-dagster-yaml DAGSTER_HOME=$(GRID_DAGSTER_HOME)
	DAGSTER_HOME=$(GRID_DAGSTER_HOME) PERMAFROST_SOURCES=$(GRID_SOURCES) PERMAFROST_LAKE_ROOT=$(GRID_LAKE) \
		$(RUN) python -m dagster_project.launcher.demo --select '$(GRID_SELECT)'

recover: env
	$(RUN) python -m dagster_project.launcher.recovery

lint: env
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	@# the dbt templater compiles the project against an in-memory DuckDB, beside sql/target
	cd sql && PERMAFROST_WAREHOUSE=:memory: DBT_TARGET_PATH=$$(mktemp -d) $(RUN) sqlfluff lint models tests

# one pytest worker per logical CPU (pytest-xdist), each test file on one worker so its module
# fixtures are built once
test: lint
	$(RUN) pytest -n logical --dist loadfile

dev: env
	$(RUN) dagster dev -w workspace.yaml

clean:
	rm -rf data .dagster_home .dagster_home_real .pytest_cache
