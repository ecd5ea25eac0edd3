"""booktools.i18n: translated glue glues across documents, coverage counts
untranslated and fuzzy messages, the Japanese build reads the English
build's execution cache."""

import re
from pathlib import Path

import pytest
import yaml
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po
from conftest import ROOT, toc_files
from docutils import nodes

from booktools import i18n


def test_local_glue_roles_become_cross_document():
    msg = (
        "比は {glue:text}`ratio:.2f` で、{glue:text}`n` 回、"
        "{glue}`fig` と {glue:text}`other.md::k:.1f`{claim}`mb-noise-law`。"
    )
    assert i18n.localize_glue(msg, "minibatch.md") == (
        "比は {glue:text}`minibatch.md::ratio:.2f` で、"
        "{glue:text}`minibatch.md::n:s` 回、{glue}`minibatch.md::fig` と "
        "{glue:text}`other.md::k:.1f`{claim}`mb-noise-law`。"
    )
    # a text role already cross-document but without a format gets one
    assert i18n.localize_glue(
        "{glue:text}`minibatch.md::n`", "minibatch.md"
    ) == ("{glue:text}`minibatch.md::n:s`")
    with pytest.raises(ValueError, match="file name"):
        i18n.localize_glue(msg, "chapters/minibatch")


def catalogue(path: Path, messages: dict, fuzzy=()) -> None:
    cat = Catalog(locale="ja")
    for msgid, msgstr in messages.items():
        cat.add(msgid, msgstr, flags=("fuzzy",) if msgid in fuzzy else ())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_po(fh, cat)


def test_update_rewrites_each_catalogue_for_its_own_page(tmp_path):
    root = tmp_path / "LC_MESSAGES"
    catalogue(
        root / "chapters" / "minibatch.po",
        {"A {glue:text}`x`.": "エー {glue:text}`x`。", "B": ""},
    )
    assert i18n.update(root) == 1
    with (root / "chapters" / "minibatch.po").open("rb") as fh:
        cat = read_po(fh)
    assert cat["A {glue:text}`x`."].string == (
        "エー {glue:text}`minibatch.md::x:s`。"
    )
    assert i18n.update(root) == 0  # idempotent


def test_coverage_counts_untranslated_and_fuzzy(tmp_path, capsys):
    root = tmp_path / "LC_MESSAGES"
    catalogue(
        root / "intro.po",
        {"One": "一", "Two": "", "Three": "三"},
        fuzzy=("Three",),
    )
    assert i18n.coverage(root) == {
        "intro.po": dict(total=3, translated=1, untranslated=1, fuzzy=1)
    }
    assert i18n.main(["check", str(root)]) == 1
    assert "1 untranslated, 1 fuzzy" in capsys.readouterr().out
    catalogue(root / "intro.po", {"One": "一"})
    assert i18n.main(["check", str(root)]) == 0


def test_the_japanese_build_reads_the_english_cache(tmp_path):
    config = i18n.side_config(ROOT / "_config.yml", tmp_path / "_build", "ja")
    sphinx = config["sphinx"]["config"]
    assert sphinx["language"] == "ja"
    assert sphinx["locale_dirs"] == [str(ROOT / "locales")]
    assert config["execute"]["cache"] == str(
        (tmp_path / "_build" / ".jupyter_cache").resolve()
    )
    assert all(Path(b).is_absolute() for b in config["bibtex_bibfiles"])
    english = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["title"] == english["title"]
    assert "i18n.inconsistent_references" in sphinx["suppress_warnings"]
    plain = i18n.side_config(ROOT / "_config.yml", tmp_path, None)
    assert "language" not in plain["sphinx"]["config"]


def test_the_switch_leads_to_the_same_page_in_the_other_edition():
    assert i18n.switch_href("chapters/minibatch", "en") == (
        "../ja/chapters/minibatch.html",
        "日本語",
        "ja",
    )
    assert i18n.switch_href("chapters/minibatch", "ja") == (
        "../../chapters/minibatch.html",
        "English",
        "en",
    )
    assert i18n.switch_href("index", "ja")[0] == "../index.html"


def test_a_translation_that_loses_markup_is_reported(tmp_path, capsys):
    english = (
        "B = {glue:text}`b` gives $\\lambda$ {claim}`mb-x` ({cite:p}`cho`), "
        "see `plots.table`."
    )
    good = (
        "{ref}`汎化 <glossary>` B = {glue:text}`minibatch.md::b` で "
        "$\\lambda$ {claim}`mb-x`（{cite:p}`cho`）、`plots.table` を参照。"
    )
    assert i18n.markup_problems(english, good) == []
    dropped = good.replace("{claim}`mb-x`", "")
    assert i18n.markup_problems(english, dropped) == [
        "{claim}`mb-x`: 1 in English, 0 in the translation"
    ]
    renamed = good.replace("`minibatch.md::b`", "`c`")
    assert len(i18n.markup_problems(english, renamed)) == 2
    assert i18n.markup_problems(english, good.replace("$", "")) == [
        "$: 2 in English, 0 in the translation"
    ]
    # the site's and the print's words are translated inside their roles
    assert not i18n.markup_problems(
        "{web}`Click here.`", "{web}`ここを押す。`"
    )
    # bold that CommonMark leaves as asterisks after Japanese punctuation
    assert i18n.markup_problems("**Finding.** Text", "**知見。**本文")
    assert not i18n.markup_problems("**Finding.** Text", "**知見**。本文")
    assert i18n.markup_problems("the **term** is", "その**「語」**は")
    # a link to another label is not a glossary link a translation adds
    assert i18n.markup_problems("x", "{ref}`y <hessian>`x")
    root = tmp_path / "LC_MESSAGES"
    catalogue(root / "chapters" / "minibatch.po", {english: dropped})
    assert i18n.main(["check", str(root)]) == 1
    assert "markup lost" in capsys.readouterr().out
    catalogue(root / "chapters" / "minibatch.po", {english: good})
    assert i18n.main(["check", str(root)]) == 0


class _Config(dict):
    """Sphinx's config as far as the LaTeX hook reads it."""

    __getattr__ = dict.__getitem__
    __setattr__ = dict.__setitem__


def test_the_japanese_pdf_is_set_by_lualatex_with_japanese_fonts():
    english = yaml.safe_load((ROOT / "_config.yml").read_text())
    preamble = english["sphinx"]["config"]["latex_elements"]["preamble"]
    # what sphinx-jupyterbook-latex adds for XeLaTeX before our hook runs
    preamble += (
        "\n\\usepackage[Latin,Greek]{ucharclasses}\n\\usepackage{unicode-math}"
    )
    config = _Config(
        language="ja",
        latex_engine="xelatex",
        latex_elements={"preamble": preamble, "papersize": "letterpaper"},
    )
    i18n.japanese_latex(None, config)
    elements = config.latex_elements
    assert config.latex_engine == "lualatex"
    assert "luatexja" in elements["fontpkg"] and "ipaex" in elements["fontpkg"]
    assert elements["papersize"] == "a4paper"
    assert elements["babel"] == elements["polyglossia"] == ""
    for xetex in ("ucharclasses", "XeTeX", "cjkfont"):
        assert xetex not in elements["preamble"]
    assert "unicode-math" in elements["preamble"]
    assert "\\bookja" in elements["preamble"]
    english_config = _Config(
        language="en",
        latex_engine="xelatex",
        latex_elements={"preamble": preamble},
    )
    i18n.japanese_latex(None, english_config)
    assert english_config.latex_engine == "xelatex"
    assert english_config.latex_elements["preamble"] == preamble


def _pasted(page: Path, language: str = "en") -> list[str]:
    """The glued values of a built page, verdicts in ``language``."""
    found = re.findall(r'class="pasted-text">([^<]*)<', page.read_text())
    return sorted(i18n.glued_word(v, language) for v in found)


def _markers(page: Path) -> list[str]:
    return sorted(
        re.findall(
            r'class="claim-marker[^"]*" href="#([^"]+)"', page.read_text()
        )
    )


@pytest.mark.book
@pytest.mark.parametrize("page", toc_files())
def test_every_japanese_page_shows_the_english_numbers(built, page):
    """One execution: the Japanese page glues the same values and marks
    the same claims as the English page (each number as many times)."""
    site = built.html()
    english, japanese = site / f"{page}.html", site / "ja" / f"{page}.html"
    assert japanese.exists(), f"no Japanese page for {page}"
    assert _pasted(japanese) == _pasted(english, "ja")
    assert _markers(japanese) == _markers(english)
    assert 'lang="ja"' in japanese.read_text()


def test_glued_verdicts_read_in_the_page_language():
    from batchlab.experiments.batchnorm import conv, hessian, wholedata

    assert i18n.glued_word("undecided", "ja") == "未決"
    assert i18n.glued_word("0.25", "ja") == "0.25"
    assert i18n.glued_word("undecided", "en") == "undecided"
    for section in (conv, hessian, wholedata):
        for word in section.VERDICTS.values():
            assert i18n.glued_word(word, "ja") != word, word


def test_link_words_and_titles_follow_the_build_language(tmp_path):
    from types import SimpleNamespace

    from booktools import sphinxext

    for language in ("ja", "en"):
        words = i18n.in_language(sphinxext.LINK_WORDS, language)
        assert set(words) == set(sphinxext.LINK_WORDS["en"])
        assert "{name}" in words["download"] and "{n}" in words["code"]
    assert (
        i18n.in_language(sphinxext.LINK_WORDS, "fr")
        == (sphinxext.LINK_WORDS["en"])
    )
    catalogue = Catalog(locale="ja")
    catalogue.add("Minibatch or one example?", "ミニバッチか、1 例か")
    catalogue.add("A fuzzy title", "あいまい", flags=["fuzzy"])
    folder = tmp_path / "locales" / "ja" / "LC_MESSAGES" / "chapters"
    folder.mkdir(parents=True)
    with (folder / "one.po").open("wb") as f:
        write_po(f, catalogue)
    config = SimpleNamespace(language="ja", locale_dirs=["locales"])
    title = sphinxext.translated_title
    assert title(
        config, tmp_path, "chapters/one", "Minibatch or one example?"
    ) == ("ミニバッチか、1 例か")
    # untranslated, fuzzy, no catalogue, or English: the title itself
    assert (
        title(config, tmp_path, "chapters/one", "A fuzzy title")
        == "A fuzzy title"
    )
    assert title(config, tmp_path, "chapters/one", "Other") == "Other"
    assert title(config, tmp_path, "chapters/two", "Two") == "Two"
    english = SimpleNamespace(language="en", locale_dirs=["locales"])
    assert title(
        english, tmp_path, "chapters/one", "Minibatch or one example?"
    ) == ("Minibatch or one example?")


@pytest.mark.book
def test_japanese_pages_link_in_japanese(built):
    """The links a directive writes (notebook, Colab, Binder, handouts)
    and the sidebar's captions read in Japanese on the Japanese site,
    chapter titles included."""
    site = built.html() / "ja"
    chapter = (site / "chapters" / "minibatch.html").read_text()
    assert "学生用配布資料" in chapter and "Colab で開く" in chapter
    assert "Download this chapter" not in chapter
    intro = (site / "chapters" / "intro.html").read_text()
    links = intro.split('class="handout-links"')[1].split("</ul>")[0]
    assert "本全体" in links and "student handout" not in links
    english_titles = [
        re.search(r"^# (.+)$", (ROOT / f"{p}.md").read_text(), re.M).group(1)
        for p in ("chapters/minibatch", "chapters/normalization")
    ]
    assert not any(t in links for t in english_titles), links[:400]
    # the sidebar's part captions, which the toc inserts after Locale ran
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for part in toc["parts"]:
        assert part["caption"] not in chapter, part["caption"]
    assert "三つの問い" in chapter
    # verdicts in output tables, which are not messages, in Japanese too
    for page in ("minibatch", "batchnorm"):
        text = (site / "chapters" / f"{page}.html").read_text()
        left = re.findall(r">\s*(supports|opposes|undecided)\s*<", text)
        assert not left, (page, left[:5])
        # output phrases with numbers (locales/ja/outputs.yml)
        assert "This build checked" not in text
        assert "このビルドは以下の" in text
    assert "% low<" not in chapter and "% high (Bonferroni)<" not in chapter


def test_numbers_and_claim_ids_in_outputs_are_not_messages():
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    document = new_document("page", get_default_settings(Parser))
    box = nodes.container(classes=["cell_output"])
    texts = [
        "bn-edge-stable",
        "0.25",
        "test accuracy",
        "full-batch runs",
        "undecided",  # a verdict: which one a table shows depends on the run
    ]
    box += [nodes.paragraph(t, t) for t in texts]
    prose = nodes.paragraph("bn-edge-stable", "bn-edge-stable")
    document += [box, prose]
    i18n.KeepNumbersOut(document).apply()
    kept = [p.get("translatable", True) for p in box.children]
    assert kept == [False, False, True, True, False]
    assert prose.get("translatable", True)  # only outputs


def test_the_claims_report_reads_in_the_page_language():
    from batchlab import claims

    phrases = i18n.load_outputs(ROOT / "locales/ja" / i18n.OUTPUTS_FILE, "ja")
    english = (
        "This build checked all 11 claims listed below, and every one held."
    )
    assert i18n.output_sentence(english, phrases) == (
        "このビルドは以下の 11 件の主張をすべて検証し、いずれも成り立った。"
    )
    partial = (
        "This build checked 3 of the 11 claims listed below, and every one "
        "held; the others need the book's scale."
    )
    assert "11 件の主張のうち 3 件" in i18n.output_sentence(partial, phrases)
    assert i18n.output_sentence(english, []) == english
    assert i18n.output_sentence("something else", phrases) == "something else"
    # the patterns follow what claims.report writes
    assert "This build checked all {len(listed)} claims listed below" in (
        Path(claims.__file__).read_text()
    )


def test_a_malformed_outputs_file_is_an_error_naming_the_entry(tmp_path):
    path = tmp_path / "outputs.yml"
    path.write_text("- en: '95% low'\n  ja: '95% 下限'\n- en: 'x'\n")
    with pytest.raises(ValueError, match="entry 2 has no 'ja' text"):
        i18n.load_outputs(path, "ja")
    path.write_text("- re: 'a (\\d+)'\n  ja: '{0} と {1}'\n")
    with pytest.raises(ValueError, match="entry 1's 'ja' text uses a group"):
        i18n.load_outputs(path, "ja")
    path.write_text("- ja: 'x'\n")
    with pytest.raises(ValueError, match="needs 'en' or 're'"):
        i18n.load_outputs(path, "ja")
    assert i18n.load_outputs(tmp_path / "none.yml", "ja") == []


def test_the_catalogue_build_renders_figures_so_alt_texts_are_messages(
    tmp_path,
):
    (tmp_path / "_config.yml").write_text("title: t\n")
    gettext = i18n.side_config(tmp_path / "_config.yml", tmp_path, None)
    overrides = gettext["sphinx"]["config"]["nb_mime_priority_overrides"]
    assert ["gettext", "image/svg+xml", 1] in overrides
    japanese = i18n.side_config(tmp_path / "_config.yml", tmp_path, "ja")
    assert "nb_mime_priority_overrides" not in japanese["sphinx"]["config"]
    # the site's own words in Japanese too
    assert "ソース" in japanese["sphinx"]["config"]["nb_code_prompt_show"]
    assert japanese["author"] != "The batchlab authors"
