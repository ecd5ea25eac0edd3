"""The Japanese edition: gettext catalogues, one execution, two languages.

The Japanese book is built from the same pages and the same executed
notebooks (jupyter-cache) as the English one; only the prose is
translated, through Sphinx's gettext machinery: message catalogues under
``locales/ja/LC_MESSAGES/`` (one ``.po`` file per page, made and updated
by ``sphinx-intl``). Numbers, claims and figures come from the one
execution.

* :func:`localize_glue` rewrites a translated message's glue roles into
  the cross-document form (``{glue:text}`minibatch.md::key:.2f```):
  Sphinx parses a translated paragraph again, outside the notebook, where
  only that form finds the page's glue data (myst-nb resolves it after
  parsing, from the page's glue cache).
* :func:`update` runs the catalogue step over a folder of catalogues.
* :func:`coverage` counts untranslated and fuzzy messages per catalogue,
  :func:`damaged` finds translations that lost a role, mathematics or
  code of their English (:func:`markup_problems`);
  ``python -m booktools.i18n check`` fails on any, so an English change
  cannot land without its Japanese.
* :func:`side_config` writes the Japanese build's ``_config.yml`` (and
  the catalogue build's): the English one with the language, the
  catalogues and the English build's execution cache.

Command line (from the book's root)::

    python -m booktools.i18n rewrite locales/ja/LC_MESSAGES
    python -m booktools.i18n check locales/ja/LC_MESSAGES
    python -m booktools.i18n config BUILD_DIR OUT_FILE
    python -m booktools.i18n gettext-config BUILD_DIR OUT_FILE
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from babel.messages.pofile import read_po, write_po
from docutils import nodes
from markdown_it import MarkdownIt
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.locale import init as init_locale
from sphinx.transforms import SphinxTransform
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.i18n import docname_to_domain

from batchlab import claims

LANGUAGE = "ja"
LOCALE_DIR = Path("locales")
#: glue roles: ``{glue}``, ``{glue:text}``, ``{glue:any}``, ``{glue:md}``.
GLUE_ROLE = re.compile(r"\{(glue(?::[a-z]+)?)\}`([^`]+)`")


def localize_glue(message: str, page: str) -> str:
    """``message`` with every same-page glue role in the cross-document
    form for ``page`` (the page's file name, ``minibatch.md``); roles
    already in that form are kept.

    Raises:
        ValueError: ``page`` is not a file name with a suffix.
    """
    if "/" in page or "." not in page:
        raise ValueError(
            f"page must be the page's file name (minibatch.md), got {page!r}"
        )

    def fix(match: re.Match) -> str:
        role, body = match.groups()
        if "::" not in body:
            body = f"{page}::{body}"
        if role == "glue:text" and ":" not in body.split("::", 1)[1]:
            # myst-nb splits a text role's format at its last colon, so
            # "page.md::key" would read as key "page.md:"; "s" is the
            # format it gives a role without one
            body += ":s"
        return f"{{{role}}}`{body}`"

    return GLUE_ROLE.sub(fix, message)


#: a MyST role with its target: ``{name}`target```.
ROLE = re.compile(r"\{([a-z][\w:-]*)\}`([^`]*)`")
#: a glossary link a translation may add at a term's first use.
GLOSSARY_LINK = re.compile(r"^.+ <glossary>$", re.S)
#: roles whose content is prose for the reader (the site's or the
#: print's words): a translation translates it, keeping the role.
PROSE_ROLES = ("web", "print")


def markup(message: str) -> dict[str, int]:
    """What a translation must keep of a message, counted: each role with
    its target (glue roles without the page prefix the catalogue step
    adds; glossary links left out, since a translation adds them), the
    dollar signs of its mathematics and its code spans."""
    counts: dict[str, int] = {}
    for name, target in ROLE.findall(message):
        if name == "ref" and GLOSSARY_LINK.match(target):
            continue
        if name.startswith("glue") and "::" in target:
            target = target.split("::", 1)[1]
        if name == "glue:text" and target.endswith(":s"):
            target = target[:-2]  # myst-nb's default format, made explicit
        if name in PROSE_ROLES:
            target = "..."
        key = f"{{{name}}}`{target}`"
        counts[key] = counts.get(key, 0) + 1
    bare = ROLE.sub("", message)
    counts["$"] = bare.count("$")
    counts["`code`"] = bare.count("`")
    return counts


def unrendered_emphasis(message: str) -> bool:
    """Whether Markdown leaves asterisks of ``message`` as text: CommonMark
    does not close ``**`` after punctuation that a letter follows
    (``**知見。**本文``), nor open it before punctuation after a letter
    (``の**「語」**``); ``**知見**。`` and ``「**語**」`` render."""
    tokens = MarkdownIt("commonmark").parseInline(message)[0].children or []
    return any(t.type == "text" and "*" in t.content for t in tokens)


def markup_problems(original: str, translation: str) -> list[str]:
    """How ``translation`` differs from ``original`` in the markup it must
    keep (roles, mathematics, code), and emphasis that would show its
    asterisks; empty when it keeps all of it."""
    want, got = markup(original), markup(translation)
    problems = []
    if unrendered_emphasis(translation) and not unrendered_emphasis(original):
        problems.append("** or * shows as text (move punctuation outside it)")
    for key in sorted(set(want) | set(got)):
        if want.get(key, 0) != got.get(key, 0):
            problems.append(
                f"{key}: {want.get(key, 0)} in English, "
                f"{got.get(key, 0)} in the translation"
            )
    return problems


def page_of(catalogue: Path, root: Path) -> str:
    """The file name of the page a catalogue translates
    (``.../chapters/minibatch.po`` -> ``minibatch.md``)."""
    relative = catalogue.relative_to(root)
    return relative.with_suffix(".md").name


def update(root: Path) -> int:
    """Rewrite the glue roles of every translation under ``root`` (the
    ``LC_MESSAGES`` folder); returns how many messages changed."""
    changed = 0
    for path in sorted(root.rglob("*.po")):
        with path.open("rb") as fh:
            catalog = read_po(fh)
        page = page_of(path, root)
        touched = False
        for message in catalog:
            if not message.id or not isinstance(message.string, str):
                continue
            new = localize_glue(message.string, page)
            if new != message.string:
                message.string = new
                touched = True
                changed += 1
        if touched:
            with path.open("wb") as fh:
                write_po(fh, catalog, width=76)
    return changed


def coverage(root: Path) -> dict[str, dict[str, int]]:
    """Per catalogue under ``root``: messages in all, translated,
    untranslated and fuzzy."""
    found = {}
    for path in sorted(root.rglob("*.po")):
        with path.open("rb") as fh:
            catalog = read_po(fh)
        counts = dict(total=0, translated=0, untranslated=0, fuzzy=0)
        for message in catalog:
            if not message.id:
                continue  # the header
            counts["total"] += 1
            if message.fuzzy:
                counts["fuzzy"] += 1
            elif message.string:
                counts["translated"] += 1
            else:
                counts["untranslated"] += 1
        found[path.relative_to(root).as_posix()] = counts
    return found


#: Words of the site that come from the configuration, not the pages:
#: myst-nb's buttons over a hidden cell's source and the footer's author.
SITE_WORDS = {
    "ja": {
        "sphinx": {
            "nb_code_prompt_show": "コードセルのソースを表示",
            "nb_code_prompt_hide": "コードセルのソースを隠す",
        },
        "book": {"author": "batchlab の著者たち"},
    }
}


def side_config(source: Path, build: Path, language: str | None) -> dict:
    """The configuration of a build beside the English one (the Japanese
    site, or the gettext catalogues): the English ``_config.yml`` at
    ``source``, reading the English build's execution cache under
    ``build`` (so no page runs twice), with ``language`` and its
    catalogues when given."""
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    sphinx = config.setdefault("sphinx", {}).setdefault("config", {})
    root = source.parent.resolve()
    sphinx["gettext_compact"] = False
    if language:
        sphinx.update(
            language=language,
            locale_dirs=[str(root / LOCALE_DIR)],
            html_search_language=language,
            # a translation links a term to the glossary at its first
            # use, a reference its English lacks (the check of
            # :func:`markup_problems` allows exactly those)
            suppress_warnings=[
                *sphinx.get("suppress_warnings", []),
                "i18n.inconsistent_references",
            ],
            **SITE_WORDS.get(language, {}).get("sphinx", {}),
        )
        config.update(SITE_WORDS.get(language, {}).get("book", {}))
    else:
        # The catalogue build: myst-nb renders no images for the gettext
        # builder by default, so the figures' alt texts (an image's, and
        # a glued figure's ``:alt:``) would never become messages.
        sphinx["nb_mime_priority_overrides"] = [
            ["gettext", "image/svg+xml", 1],
            ["gettext", "image/png", 2],
        ]
    execute = config.setdefault("execute", {})
    execute["execute_notebooks"] = "cache"
    execute["cache"] = str((build / ".jupyter_cache").resolve())
    bib = config.get("bibtex_bibfiles", [])
    config["bibtex_bibfiles"] = [str(root / b) for b in bib]
    return config


#: The other edition of each language, its label (in its own language)
#: and where its pages lie relative to this edition's root.
EDITIONS = {"en": ("ja", "日本語", "ja/"), "ja": ("en", "English", "../")}


def switch_href(pagename: str, language: str) -> tuple[str, str, str]:
    """``(href, label, language)`` of the same page in the other edition:
    the Japanese site lies in ``ja/`` under the English one."""
    other, label, prefix = EDITIONS["ja" if language == "ja" else "en"]
    up = "../" * pagename.count("/")
    return f"{up}{prefix}{pagename}.html", label, other


def language_switch(app: Sphinx, pagename, templatename, context, doctree):
    """``html-page-context``: a link at the top of every page to the same
    page in the other language, once the book has a Japanese edition
    (catalogues under ``locales/ja``)."""
    if app.builder.format != "html" or doctree is None:
        return
    if not (Path(app.srcdir) / LOCALE_DIR / LANGUAGE).is_dir():
        return
    href, label, other = switch_href(pagename, app.config.language or "en")
    link = (
        f'<p class="language-switch"><a href="{href}" hreflang="{other}" '
        f'lang="{other}">{label}</a></p>'
    )
    context["body"] = link + context.get("body", "")


class KeepNumbersOut(SphinxTransform):
    """Outputs of code cells that hold a number are not messages to
    translate: they change with every run (a table's values, a measured
    sentence) and are the same in every language; nor are codes such as
    claim ids. Their words (a table's header, a row's name) stay
    messages. Runs before Sphinx's Locale
    transform and before the catalogues are extracted."""

    default_priority = 15

    def apply(self, **kwargs) -> None:
        for box in self.document.findall(nodes.container):
            if "cell_output" not in box.get("classes", []):
                continue
            for text in box.findall(nodes.TextElement):
                words = text.astext()
                if (
                    DIGIT.search(words)
                    or words.strip() in claim_ids()
                    or words.strip() in VERDICT_WORDS
                ):
                    text["translatable"] = False


DIGIT = re.compile(r"\d")


@functools.cache
def claim_ids() -> frozenset[str]:
    """Every claim id of the book: codes, not words, where a table shows
    them."""
    return frozenset(claims.registry())


#: Words the experiments glue into sentences (verdicts of
#: :func:`batchlab.stats.verdict` and the chapters' names for them), in
#: Japanese: the Japanese page shows the same verdict in its own words.
GLUED_WORDS = {
    "ja": {
        "supports": "支持",
        "opposes": "反する",
        "undecided": "未決",
        "n/a": "該当なし",
        "not rerun": "未再実行",  # a ledger cell, while a claim has one
        "GroupNorm ahead": "グループ正規化が上",
        "BatchNorm ahead": "バッチ正規化が上",
        "larger without BatchNorm": "バッチ正規化なしのほうが大きい",
        "larger with BatchNorm": "バッチ正規化ありのほうが大きい",
        "lower with differentiated whole-data statistics": (
            "微分するデータ全体の統計量のほうが低い"
        ),
        "lower per batch": "バッチごとの統計量のほうが低い",
    }
}


#: Words and sentences the build prints in cells' outputs with numbers in
#: them (a table's header "95% low", a row "statistics 4, gradient 128",
#: the claims report), so they are not catalogue messages: per language,
#: ``locales/<language>/outputs.yml``, a list of ``{en: text, <language>:
#: text}`` (the whole text of a cell or paragraph) or ``{re: pattern,
#: <language>: template}`` whose groups fill ``{0}``, ``{1}``, ...
OUTPUTS_FILE = "outputs.yml"


def load_outputs(path: Path, language: str) -> list[tuple[re.Pattern, str]]:
    """The phrases of an ``outputs.yml`` as (pattern, template) pairs;
    a malformed entry is an error naming it."""
    if not path.exists():
        return []
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    phrases = []
    for n, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(
            entry.get(language), str
        ):
            raise ValueError(f"{path}: entry {n} has no {language!r} text")
        if isinstance(entry.get("re"), str):
            pattern = re.compile(entry["re"])
        elif isinstance(entry.get("en"), str):
            pattern = re.compile(re.escape(entry["en"]))
        else:
            raise ValueError(f"{path}: entry {n} needs 'en' or 're'")
        try:
            entry[language].format(*range(pattern.groups))
        except (IndexError, KeyError) as exc:
            raise ValueError(
                f"{path}: entry {n}'s {language!r} text uses a group its "
                f"pattern does not have ({exc})"
            ) from None
        phrases.append((pattern, entry[language]))
    return phrases


def output_sentence(
    text: str, phrases: Sequence[tuple[re.Pattern, str]]
) -> str:
    """``text`` as the first of ``phrases`` that matches it whole
    translates it (as it is when none does)."""
    for pattern, words in phrases:
        found = pattern.fullmatch(text.strip())
        if found:
            return words.format(*found.groups())
    return text


#: Every word :data:`GLUED_WORDS` translates, in any language: which of
#: them a table shows depends on the run, so they are never messages
#: (:class:`GluedWordsInLanguage` translates them instead).
VERDICT_WORDS = frozenset(w for words in GLUED_WORDS.values() for w in words)


def in_language(table: dict, language: str | None, default="en"):
    """The entry of ``table`` (keyed by language code) for ``language``
    ("ja_JP" reads "ja"); ``table[default]`` for a language it lacks, or
    an empty dict when ``default`` is None."""
    fallback = {} if default is None else table[default]
    return table.get((language or "en")[:2], fallback)


def glued_word(text: str, language: str | None) -> str:
    """A glued value as the page in ``language`` shows it: a verdict in
    that language's words, any other value (a number) as it is."""
    return in_language(GLUED_WORDS, language, None).get(text, text)


#: What an output's text may hold to be translated whole (it is then
#: set as plain text: a bold name in a translated note loses its bold;
#: a link or formula keeps the text English instead).
PLAIN = (nodes.Text, nodes.strong, nodes.emphasis, nodes.literal)


class GluedWordsInLanguage(SphinxPostTransform):
    """Glued verdicts (``pasted-text`` spans holding a word of
    :data:`GLUED_WORDS`), the same words alone in a cell of an output's
    table, and the output phrases of ``outputs.yml``
    (:func:`load_outputs`), in the page's language; runs after myst-nb
    pastes the glue."""

    default_priority = 900

    def run(self, **kwargs) -> None:
        language = self.config.language
        if not in_language(GLUED_WORDS, language, None):
            return
        spans = [
            span
            for span in self.document.findall(nodes.inline)
            if "pasted-text" in span.get("classes", [])
        ]
        cells = [
            text
            for box in self.document.findall(nodes.container)
            if "cell_output" in box.get("classes", [])
            for text in box.findall(nodes.TextElement)
            if text.children
            and all(isinstance(c, PLAIN) for c in text.children)
        ]
        phrases = [
            phrase
            for folder in self.config.locale_dirs or ()
            for phrase in load_outputs(
                Path(self.env.srcdir, folder, language, OUTPUTS_FILE),
                language,
            )
        ]
        for element in spans + cells:
            text = element.astext()
            word = glued_word(text.strip(), language)
            if word == text.strip():
                word = output_sentence(text, phrases)
            if word != text.strip() and word != text:
                element.children = [nodes.Text(word)]


class TocCaptionsInLanguage(SphinxTransform):
    """The table of contents' part captions ("The three questions") in
    the page's language. sphinx-external-toc inserts the toctrees after
    Sphinx's Locale transform has run, so their captions, which the
    catalogues do hold, would stay English in the sidebar."""

    default_priority = 101  # after sphinx-external-toc's InsertToctrees

    def apply(self, **kwargs) -> None:
        language = self.config.language
        if not language or language.startswith("en"):
            return
        domain = docname_to_domain(
            self.env.docname, self.config.gettext_compact
        )
        folders = [
            str(Path(self.env.srcdir, d)) for d in self.config.locale_dirs
        ]
        catalogue, found = init_locale(folders, language, domain)
        if not found:
            return
        for toc in self.document.findall(addnodes.toctree):
            caption = toc.get("caption")
            if caption:
                translated = catalogue.gettext(caption)
                toc["caption"] = translated
                toc["rawcaption"] = translated


#: The Japanese PDF's fonts: LuaTeX-ja (Japanese line breaking and
#: kinsoku shori) with IPAex Mincho for the body and IPAex Gothic for the
#: sans-serif headings (Debian: texlive-lang-japanese, texlive-luatex,
#: fonts-ipaexfont-mincho, fonts-ipaexfont-gothic).
JA_FONTS = r"\usepackage[ipaex]{luatexja-preset}"
#: Lines of the English preamble that only XeTeX understands: the {ja}
#: span's font switch and sphinx-jupyterbook-latex's script classes.
XETEX_ONLY = ("ucharclasses", "cjkfont", "XeTeXlinebreak")


def japanese_latex(app: Sphinx, config) -> None:
    """Typeset the Japanese edition's PDFs by Japanese rules: LuaLaTeX
    with LuaTeX-ja on A4 (sphinx-jupyterbook-latex sets XeLaTeX, whose
    script classes clash with it; this runs after it). The English
    preamble's ``\\bookja`` becomes plain text, as the whole text is
    Japanese; no babel or polyglossia (LuaTeX-ja sets the language)."""
    if config.language != LANGUAGE:
        return
    config.latex_engine = "lualatex"
    elements = dict(config.latex_elements)
    kept = [
        line
        for line in elements.get("preamble", "").splitlines()
        if not any(word in line for word in XETEX_ONLY)
    ]
    elements["preamble"] = "\n".join(
        [
            r"\providecommand{\addto}[2]{}",
            r"\providecommand{\bookja}[1]{#1}",
            *kept,
        ]
    )
    elements.update(
        fontpkg=JA_FONTS, babel="", polyglossia="", papersize="a4paper"
    )
    config.latex_elements = elements


def setup(app: Sphinx) -> None:
    """Connect the language switch, the Japanese PDF's engine and fonts,
    and keep measured outputs out of the catalogues (called by
    ``booktools.sphinxext``)."""
    app.connect("html-page-context", language_switch)
    app.connect("config-inited", japanese_latex, priority=900)
    app.add_transform(KeepNumbersOut)
    app.add_transform(TocCaptionsInLanguage)
    app.add_post_transform(GluedWordsInLanguage)


def main(argv: list[str]) -> int:
    """Command line; returns the exit status."""
    usage = (
        "usage: python -m booktools.i18n rewrite|check LC_MESSAGES_DIR\n"
        "       python -m booktools.i18n config BUILD_DIR OUT_FILE"
    )
    if len(argv) < 2:
        print(usage, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if command == "rewrite" and len(args) == 1:
        print(f"{update(Path(args[0]))} messages now glue across documents")
        return 0
    if command == "check" and len(args) == 1:
        return _check(Path(args[0]))
    if command in ("config", "gettext-config") and len(args) == 2:
        language = LANGUAGE if command == "config" else None
        config = side_config(Path("_config.yml"), Path(args[0]), language)
        Path(args[1]).write_text(
            yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
            encoding="utf-8",
        )
        return 0
    print(usage, file=sys.stderr)
    return 2


def damaged(root: Path) -> list[str]:
    """Translated messages under ``root`` whose markup differs from the
    English (:func:`markup_problems`), one line each."""
    found = []
    for path in sorted(root.rglob("*.po")):
        with path.open("rb") as fh:
            catalog = read_po(fh)
        for message in catalog:
            if not message.id or not message.string or message.fuzzy:
                continue
            for problem in markup_problems(message.id, message.string):
                first = message.id.splitlines()[0][:60]
                found.append(
                    f"{path.relative_to(root).as_posix()} "
                    f"({first!r}): {problem}"
                )
    return found


def _check(root: Path) -> int:
    counts = coverage(root)
    if not counts:
        print(f"no catalogues under {root}")
        return 1
    problems = damaged(root)
    for line in problems:
        print(f"  markup lost: {line}")
    bad = {
        name: c
        for name, c in counts.items()
        if c["untranslated"] or c["fuzzy"]
    }
    total = sum(c["total"] for c in counts.values())
    done = sum(c["translated"] for c in counts.values())
    print(f"{done} of {total} messages translated in {len(counts)} pages")
    for name, c in bad.items():
        print(
            f"  {name}: {c['untranslated']} untranslated, {c['fuzzy']} fuzzy"
        )
    outputs = root.parent / OUTPUTS_FILE
    try:
        phrases = load_outputs(outputs, root.parent.name)
    except (ValueError, re.error, yaml.YAMLError) as exc:
        print(f"  {outputs}: {exc}")
        return 1
    if outputs.exists():
        print(f"{len(phrases)} output phrases in {outputs}")
    return 1 if bad or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
