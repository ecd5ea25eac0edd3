# Two commands for a newcomer: `make book` and `make test`.
# Each creates .venv if it is missing and installs the exact pins first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= book
# The seed set (batchlab.runtime): every seed of the experiments is offset
# by it. `make robust` executes the pages with the seed sets in ROBUST_SEEDS.
BATCHLAB_SEED ?= 0
export BATCHLAB_SEED
ROBUST_SEEDS ?= 1 2
# Where the build goes: $(OUT)/_build (tests build into a temporary OUT).
# Captioned tables are numbered MyST tables in the book's build
# (batchlab.plots.table); a reader's plain Jupyter gets plain Markdown.
export BATCHLAB_MYST := 1
OUT    ?= .
BUILD  := $(OUT)/_build
# Any warning or failed cell fails the build; every problem is reported.
JBFLAGS := -W -n --keep-going
# A single page (`make chapter`): links to other pages cannot resolve, so
# warnings are reported without failing; failed cells and claims still fail.
PAGEFLAGS := -n --keep-going
# Everything the executed chapters depend on besides their own code cells.
# jupyter-cache keys only on code cells, so a change here must throw the
# cache (and Sphinx's doctrees) away, or a stale figure gets published.
DEPS   := $(shell find code -type f \( -name '*.py' -o -name '*.mplstyle' \) | sort) requirements.txt pyproject.toml

PHONY_I18N := book-ja pdf-ja catalogues i18n-check
.PHONY: help venv cache-check book execute chapter robust ledger test test-fast lint bench bench-build bench-threads survey pdf pdf-check clean $(PHONY_I18N)

help:
	@echo "make book      execute every chapter and build the HTML (_build/html)"
	@echo "make test      run the test suite"
	@echo "make chapter NAME=normalization   rebuild one chapter alone (fast)"
	@echo "make robust    every page again with seed sets 1 and 2 (every claim must hold)"
	@echo "make ledger    every claim under 10 seed sets and its section's variants"
	@echo "               (CHAPTERS=minibatch SECTIONS=noise for a part; recorded in"
	@echo "               benchmarks/results/ledger/)"
	@echo "make pdf       the book and, per chapter, a student handout and an"
	@echo "               instructor edition (with solutions), as PDF (_build/pdf)"
	@echo "make lint      ruff on code/, tests/ and benchmarks/"
	@echo "make bench     the ratio benchmarks (tables on stdout)"
	@echo "make bench-build / bench-threads   build time and thread benchmarks"
	@echo "make survey    every chapter as a script at SCALE (SCALE=full for the"
	@echo "               full records), timed, listing every failed claim"
	@echo "make catalogues  update the Japanese catalogues (locales/ja) from the"
	@echo "               English pages; translate what comes in untranslated or fuzzy"
	@echo "make i18n-check  fail on any untranslated, fuzzy or damaged message"
	@echo "EDITIONS=en    build the English edition only (default: en ja)"
	@echo "make clean     remove the build (keeps .venv)"
	@echo "SCALE=quick|book|full chooses the experiment size (default book)"

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

# Throw away cached execution when the helpers, pins, scale or seed set
# changed, and the Japanese edition's doctrees with it (its pages would
# otherwise keep the old run's values where their source did not change).
cache-check: $(STAMP)
	@h="$$(cat $(DEPS) | sha256sum | cut -c1-16)-$(SCALE)-seed$(BATCHLAB_SEED)"; \
	old="$$(cat $(BUILD)/.deps-hash 2>/dev/null)"; \
	if [ "$$h" != "$$old" ]; then \
	  echo "code/, pins, scale or seed set changed: dropping cached execution"; \
	  rm -rf $(BUILD)/.jupyter_cache $(BUILD)/.doctrees \
	         $(BUILD)/jupyter_execute $(BUILD)/html $(BUILD)/ja \
	         $(BUILD)/gettext; \
	  mkdir -p $(BUILD); echo "$$h" > $(BUILD)/.deps-hash; \
	fi

# A failed build forgets its doctrees: Sphinx re-reads only changed pages,
# so otherwise a rerun would not repeat the warnings and would pass.
# Pages execute first, in parallel, into the cache (booktools.execute);
# Sphinx then renders them from it.
book: execute
	BATCHLAB_SCALE=$(SCALE) $(BIN)/jupyter-book build . --path-output $(OUT) $(JBFLAGS) \
	  || { rm -rf $(BUILD)/.doctrees; exit 1; }
	@if [ -d $(LOCALES) ] && [ -n "$(filter ja,$(EDITIONS))" ]; then \
	  $(MAKE) --no-print-directory book-ja; fi

# Every page executed into the cache, checking its claims (no site).
execute: cache-check
	BATCHLAB_SCALE=$(SCALE) $(BIN)/python -m booktools.execute $(BUILD)

# The Japanese edition (booktools.i18n): the same pages rendered from the
# same executed notebooks (the English build's cache: nothing runs twice),
# the prose from the catalogues in locales/ja; the site goes to
# $(BUILD)/html/ja, beside the English pages.
LOCALES := locales/ja/LC_MESSAGES
# The editions `make book` and `make pdf` build.
EDITIONS ?= en ja
JA     := $(BUILD)/ja
book-ja: $(STAMP)
	$(BIN)/python -m booktools.i18n rewrite $(LOCALES)
	$(BIN)/python -m booktools.i18n config $(BUILD) $(BUILD)/_config_ja.yml
	BATCHLAB_SCALE=$(SCALE) $(BIN)/jupyter-book build . --config $(BUILD)/_config_ja.yml \
	  --path-output $(JA) $(JBFLAGS) || { rm -rf $(JA)/_build/.doctrees; exit 1; }
	rm -rf $(BUILD)/html/ja && cp -r $(JA)/_build/html $(BUILD)/html/ja

# The catalogues, from the pages as they are now (run after make book:
# the messages come from the executed pages): new English messages come
# in untranslated, changed ones fuzzy. `make i18n-check` fails on either.
catalogues: $(STAMP)
	$(BIN)/python -m booktools.i18n gettext-config $(BUILD) $(BUILD)/_config_gettext.yml
	BATCHLAB_SCALE=$(SCALE) $(BIN)/jupyter-book build . --config $(BUILD)/_config_gettext.yml \
	  --path-output $(BUILD)/gettext --builder custom --custom-builder gettext $(JBFLAGS)
	$(BIN)/sphinx-intl update -p $(BUILD)/gettext/_build/gettext -l ja -d locales
	$(BIN)/python -m booktools.i18n rewrite $(LOCALES)

i18n-check: catalogues
	$(BIN)/python -m booktools.i18n check $(LOCALES)

# One page alone, for quick iteration. Its links to other pages and its
# citations (the bibliography is a page of its own) cannot resolve in a
# single-page build, so warnings do not fail it; failed cells and claims
# still do. `make book` remains the full check.
PAGE := $(BUILD)/_page/$(NAME)
chapter: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make chapter NAME=normalization"; exit 2; }
	@test -f chapters/$(NAME).md || { echo "no chapters/$(NAME).md"; exit 2; }
	BATCHLAB_SCALE=$(SCALE) $(BIN)/jupyter-book build chapters/$(NAME).md --path-output $(OUT) $(PAGEFLAGS) \
	  || { rm -rf $(PAGE)/.doctrees; exit 1; }

# Every page again with other seed sets, each executed into its own
# folder (the claims are checked as the pages run; no site is rendered):
# a claim that held only for the default seeds fails here. Ctrl-C or SIGTERM stops the
# loop, not just the build under way, and so does a build that a signal
# ended (status above 128); its finished pages stay cached.
robust: $(STAMP)
	@trap 'echo "make robust: stopped at seed set $$s"; exit 130' INT; \
	trap 'echo "make robust: stopped at seed set $$s"; exit 143' TERM; \
	failed=""; for s in $(ROBUST_SEEDS); do \
	  $(MAKE) execute BATCHLAB_SEED=$$s OUT=$(BUILD)/robust/seed$$s; rc=$$?; \
	  if [ $$rc -gt 128 ]; then \
	    echo "make robust: stopped at seed set $$s"; exit $$rc; fi; \
	  [ $$rc -eq 0 ] || failed="$$failed $$s"; \
	done; \
	if [ -n "$$failed" ]; then echo "make robust: seed sets$$failed failed"; exit 1; fi

# The robustness ledger (booktools.ledger): every claim rerun under
# LEDGER_SEEDS seed sets and every variant of its section, without a
# notebook; a recorded run, refreshed whenever a section changes.
LEDGER_SEEDS ?= 10
LEDGER_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ledger: $(STAMP)
	$(BIN)/python -m booktools.ledger --seed-sets $(LEDGER_SEEDS) \
	  --jobs $(LEDGER_JOBS) \
	  $(if $(CHAPTERS),--chapters $(CHAPTERS)) \
	  $(if $(SECTIONS),--sections $(SECTIONS)) \
	  $(if $(VARIANTS),--variants $(VARIANTS))

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not book"

lint: $(STAMP)
	$(BIN)/ruff check code tests benchmarks
	$(BIN)/ruff format --check code tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -r benchmarks/requirements.txt
	for f in benchmarks/bench_curvature.py benchmarks/bench_sgd.py; do \
	  echo "== $$f"; $(BIN)/python $$f || exit 1; done

# How the build uses the machine (minutes each; run on a quiet machine):
# cold `make book` quiet and beside two busy processes, and each chapter
# with one and two threads.
bench-build: $(STAMP)
	$(BIN)/python benchmarks/bench_build.py --scale $(SCALE)

bench-threads: $(STAMP)
	$(BIN)/python benchmarks/bench_threads.py --scale $(SCALE)

# The chapters as scripts, one process each, two at a time; unlike the
# build it goes on past a failed claim and lists them all. SCALE defaults
# to book here as everywhere: run `make survey SCALE=full`.
survey: $(STAMP)
	$(BIN)/python benchmarks/bench_chapters.py --scale $(SCALE) --jobs 2 \
	  --out $(BUILD)/survey

# Debian packages `make pdf` needs (the test suite reads this list too).
PDF_DEBS := texlive-xetex texlive-latex-extra texlive-fonts-extra \
            texlive-fonts-recommended latexmk fonts-freefont-otf \
            fonts-ipaexfont-mincho poppler-utils \
            texlive-luatex texlive-lang-japanese fonts-ipaexfont-gothic

PDF_TOOLS ?= xelatex lualatex latexmk pdfinfo pdftotext pdfimages pdftoppm

pdf-check:
	@missing=""; \
	for t in $(PDF_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	for f in bbm.sty pzdr.tfm; do kpsewhich $$f >/dev/null 2>&1 || missing="$$missing $$f"; done; \
	for font in FreeSerif IPAexMincho; do fc-list "$$font" 2>/dev/null | grep -q . || missing="$$missing $$font"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make pdf needs LaTeX and fonts that are missing here:$$missing"; \
	  echo "On Debian/Ubuntu install them with:"; \
	  echo "  sudo apt-get install --no-install-recommends $(PDF_DEBS)"; \
	  exit 1; \
	fi

# The whole book (_build/pdf/book.pdf) and, per chapter, a student handout
# (<chapter>.pdf, no solutions) and an instructor edition
# (<chapter>-instructor.pdf): one LaTeX build writes them all
# (booktools.latex). When the site is built, the PDFs go under its pdf/.
# LaTeX reads no terminal: after Ctrl-C (or an error) it would wait at its
# "?" prompt, left behind when make returns.
# Jupyter Book runs `make all-pdf` in the LaTeX folder: the book and
# the handouts are separate documents, typeset two at a time.
LATEX_JOBS ?= -j2
pdf: cache-check pdf-check
	rm -rf $(BUILD)/latex $(BUILD)/pdf
	BATCHLAB_SCALE=$(SCALE) $(BIN)/python -m booktools.execute $(BUILD)
	BATCHLAB_SCALE=$(SCALE) MAKEFLAGS=$(LATEX_JOBS) $(BIN)/jupyter-book build . --path-output $(OUT) --builder pdflatex $(JBFLAGS) < /dev/null
	$(BIN)/python -m booktools.handouts $(BUILD)/latex _toc.yml $(BUILD)/pdf
	@if [ -d $(LOCALES) ] && [ -n "$(filter ja,$(EDITIONS))" ]; then \
	  $(MAKE) --no-print-directory pdf-ja; fi
	if [ -d $(BUILD)/html ]; then \
	  mkdir -p $(BUILD)/html/pdf && cp $(BUILD)/pdf/*.pdf $(BUILD)/html/pdf/; \
	fi
	if [ -d $(BUILD)/html/ja ] && [ -d $(BUILD)/pdf/ja ]; then \
	  mkdir -p $(BUILD)/html/ja/pdf && cp $(BUILD)/pdf/ja/*.pdf $(BUILD)/html/ja/pdf/; \
	fi

# The Japanese PDFs (_build/pdf/ja): the same book, handouts and
# instructor editions from the catalogues and the English build's
# execution cache, typeset by LuaLaTeX with LuaTeX-ja (booktools.i18n).
pdf-ja: $(STAMP)
	$(BIN)/python -m booktools.i18n rewrite $(LOCALES)
	$(BIN)/python -m booktools.i18n config $(BUILD) $(BUILD)/_config_ja.yml
	rm -rf $(JA)/_build/latex $(BUILD)/pdf/ja
	BATCHLAB_SCALE=$(SCALE) MAKEFLAGS=$(LATEX_JOBS) $(BIN)/jupyter-book build . --config $(BUILD)/_config_ja.yml \
	  --path-output $(JA) --builder pdflatex $(JBFLAGS) < /dev/null
	$(BIN)/python -m booktools.handouts $(JA)/_build/latex _toc.yml $(BUILD)/pdf/ja

clean:
	rm -rf $(BUILD) .pytest_cache

# `make print-JBFLAGS` prints a variable (the tests read the build flags).
print-%:
	@echo $($*)
