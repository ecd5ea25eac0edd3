"""One author-year style for citations in the text and the reference list.

sphinxcontrib-bibtex cites "(Goyal et al., 2017)" in the text with
``bibtex_reference_style = author_year``, but its default bibliography
style labels the list alphabetically ("[GDollarG+17]", mangled by the
accent in Dollár). Here the list's labels are the same author-year text
("Goyal et al., 2017"), two works of one author and year become "2020a"
and "2020b" in the list and in the text alike, and entries are sorted by
author and year.

Registered as the pybtex style ``authoryear`` and the reference style
``author_year_label`` (see ``_config.yml``).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

import latexcodec  # noqa: F401  (registers the "ulatex" codec)
from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting import BaseSortingStyle
from pybtex.style.template import node
from sphinxcontrib.bibtex.plugin import (
    register_plugin as register_bibtex_plugin,
)
from sphinxcontrib.bibtex.style.referencing import author_year as ay
from sphinxcontrib.bibtex.style.referencing import basic_author_year as bay
from sphinxcontrib.bibtex.style.template import (
    join,
    join2,
    post_text,
    pre_text,
    reference,
)

STYLE = "authoryear"
REFERENCE_STYLE = "author_year_label"


def plain_name(last_names: list[str]) -> str:
    """A BibTeX last name as text: accents decoded, braces dropped."""
    raw = " ".join(last_names)
    text = codecs.decode(raw, "ulatex")
    return re.sub(r"[{}]", "", text).strip()


def authors_text(entry) -> str:
    """ "Bottou", "Smith and Le" or "Goyal et al." (authors, else
    editors, else the short title, else the title: a work that names no
    author is cited by its title, never as "Anonymous")."""
    persons = entry.persons.get("author") or entry.persons.get("editor")
    if not persons:
        title = entry.fields.get("shorttitle") or entry.fields.get("title")
        if not title:
            raise ValueError(f"{entry.key}: no author, editor or title")
        return plain_name([title])
    # "van Laarhoven", as sphinxcontrib-bibtex writes it in the text.
    names = [
        plain_name(p.prelast_names + p.last_names or p.first_names)
        for p in persons
    ]
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


def fold(text: str) -> str:
    """Lower case without accents, for sorting."""
    decomposed = unicodedata.normalize("NFKD", plain_name([text]))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Author, year", with a, b, ... where author and year repeat
    (in the order of the sorted list)."""

    def format_labels(self, sorted_entries):
        bases = [
            f"{authors_text(e)}, {e.fields.get('year', 'n.d.')}"
            for e in sorted_entries
        ]
        counts = Counter(bases)
        seen: Counter = Counter()
        for base in bases:
            if counts[base] == 1:
                yield base
            else:
                yield base + "abcdefghijklmnopqrstuvwxyz"[seen[base]]
                seen[base] += 1


class AuthorYearStyle(PlainStyle):
    """pybtex's plain style with author-year labels, sorted by author,
    year and title."""

    default_label_style = "authoryear"
    default_sorting_style = "authoryear"


class AuthorYearSortingStyle(BaseSortingStyle):
    """By the label's author text, then year and title."""

    def sorting_key(self, entry):
        return (
            fold(authors_text(entry)),
            entry.fields.get("year", ""),
            fold(entry.fields.get("title", "")),
        )


@node
def label_year(children, data) -> Text:
    """The year as in the entry's label: "2020a" where the label has it."""
    assert not children
    label = data["formatted_entry"].label
    return Text(label.rsplit(", ", 1)[-1])


@node
def author_or_label(children, data) -> Text:
    """The authors (``children``'s template) or, for a work that names
    none, the label's author part (its short title), as in the list."""
    entry = data["entry"]
    if entry.persons.get("author") or entry.persons.get("editor"):
        return children[0].format_data(data)
    label = data["formatted_entry"].label
    return Text(label.rsplit(", ", 1)[0])


@dataclass
class _Parenthetical(bay.BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name: str):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[
                join(sep=self.author_year_sep)[
                    author_or_label[
                        self.person.author_or_editor_or_title(
                            full="s" in role_name
                        )
                    ],
                    label_year,
                ]
            ],
            post_text,
        ]


@dataclass
class _Textual(bay.BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name: str):
        return join(sep=self.text_reference_sep)[
            author_or_label[
                self.person.author_or_editor_or_title(full="s" in role_name)
            ],
            join[
                self.bracket.left,
                join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
                    pre_text,
                    reference[label_year],
                    post_text,
                ],
                self.bracket.right,
            ],
        ]


@dataclass
class AuthorYearLabelReferenceStyle(ay.AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author-year references, with the year taken
    from the label so that "2020a" in the list is "2020a" in the text."""

    def __post_init__(self):
        super().__post_init__()
        basic = self.styles[:2]
        self.styles[0] = _Parenthetical(
            bracket=basic[0].bracket,
            person=basic[0].person,
            author_year_sep=basic[0].author_year_sep,
            pre_text_sep=basic[0].pre_text_sep,
            post_text_sep=basic[0].post_text_sep,
        )
        self.styles[1] = _Textual(
            bracket=basic[1].bracket,
            person=basic[1].person,
            text_reference_sep=basic[1].text_reference_sep,
            pre_text_sep=basic[1].pre_text_sep,
            post_text_sep=basic[1].post_text_sep,
        )
        # The role -> style table was built from the replaced styles.
        for style in self.styles[:2]:
            self.role_style.update(
                (role, style) for role in style.role_names()
            )


def register() -> None:
    """Make both styles known to pybtex and sphinxcontrib-bibtex."""
    register_plugin(
        "pybtex.style.labels", STYLE, AuthorYearLabelStyle, force=True
    )
    register_plugin(
        "pybtex.style.sorting", STYLE, AuthorYearSortingStyle, force=True
    )
    register_plugin(
        "pybtex.style.formatting", STYLE, AuthorYearStyle, force=True
    )
    register_bibtex_plugin(
        "sphinxcontrib.bibtex.style.referencing",
        REFERENCE_STYLE,
        AuthorYearLabelReferenceStyle,
        force=True,
    )
