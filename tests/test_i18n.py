"""booktools.i18n: translated glue glues across documents, coverage counts
untranslated and fuzzy messages, the Japanese build reads the English
build's execution cache."""

from pathlib import Path

import pytest
import yaml
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po
from conftest import ROOT

from booktools import i18n


def test_local_glue_roles_become_cross_document():
    msg = (
        "比は {glue:text}`ratio:.2f` で、{glue:text}`n` 回、"
        "{glue}`fig` と {glue:text}`other.md::k:.1f`{claim}`mb-noise-law`。"
    )
    assert i18n.localize_glue(msg, "minibatch.md") == (
        "比は {glue:text}`minibatch.md::ratio:.2f` で、"
        "{glue:text}`minibatch.md::n` 回、{glue}`minibatch.md::fig` と "
        "{glue:text}`other.md::k:.1f`{claim}`mb-noise-law`。"
    )
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
        "エー {glue:text}`minibatch.md::x`。"
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
