"""Coding an adverse-event term to CTCAE v5.0: the term list, synonyms and suggestions.

The term list is package data (`domain/ctcae/ctcae-5.0.csv`, provenance beside it). It is read
the first time an AE is walked and kept for the life of the process, so commands that walk no
AE never pay for it (see docs/safety.md); each term is made when first looked up.

Matching ignores case and runs of whitespace, nothing else: a misspelling is refused with the
closest terms, never guessed, because every rule of the label is keyed by the coded term.
"""

from __future__ import annotations

import csv
import io
import pkgutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from operator import itemgetter

from m22bol.domain.errors import BadInput

CTCAE_VERSION = "5.0"
OTHER_SPECIFY = " - Other, specify"

# MedDRA's internationally agreed order of the System Organ Classes, the order safety tables
# are printed in (the term list itself is alphabetical).
SOC_ORDER = (
    "Infections and infestations",
    "Neoplasms benign, malignant and unspecified (incl cysts and polyps)",
    "Blood and lymphatic system disorders",
    "Immune system disorders",
    "Endocrine disorders",
    "Metabolism and nutrition disorders",
    "Psychiatric disorders",
    "Nervous system disorders",
    "Eye disorders",
    "Ear and labyrinth disorders",
    "Cardiac disorders",
    "Vascular disorders",
    "Respiratory, thoracic and mediastinal disorders",
    "Gastrointestinal disorders",
    "Hepatobiliary disorders",
    "Skin and subcutaneous tissue disorders",
    "Musculoskeletal and connective tissue disorders",
    "Renal and urinary disorders",
    "Pregnancy, puerperium and perinatal conditions",
    "Reproductive system and breast disorders",
    "Congenital, familial and genetic disorders",
    "General disorders and administration site conditions",
    "Investigations",
    "Injury, poisoning and procedural complications",
    "Surgical and medical procedures",
    "Social circumstances",
)


@dataclass(frozen=True)
class Term:
    """One CTCAE v5.0 term with its MedDRA code, SOC and the grades defined for it."""

    term: str
    meddra_code: int
    soc: str
    grades: frozenset[int]

    @property
    def other_specify(self) -> bool:
        return self.term.endswith(OTHER_SPECIFY)

    def __str__(self) -> str:
        return f"{self.term} (MedDRA {self.meddra_code})"


@dataclass(frozen=True)
class Coded:
    term: Term
    synonym: str | None  # the protocol synonym the entry was coded through, if any


def key(text: str) -> str:
    return " ".join(text.split()).casefold()


@cache
def dictionary() -> Mapping[str, Term]:
    """Every CTCAE v5.0 term by its matching key (casefolded)."""
    # The loader's own read: `importlib.resources.files` first imports its machinery, which
    # cost about 11 ms of the entry that first codes an AE.
    text = pkgutil.get_data("m22bol.domain.ctcae", "ctcae-5.0.csv").decode("utf-8")
    rows = csv.reader(io.StringIO(text))
    columns = {name: i for i, name in enumerate(next(rows))}
    at = itemgetter(columns["term"], columns["meddra_code"], columns["soc"], columns["grades"])
    return _Terms({key(fields[0]): fields for fields in map(at, rows)})


class _Terms(Mapping[str, Term]):
    """The term list by matching key, each `Term` made when first asked for: coding an entry
    looks up a handful of the 837, and making them all was most of the list's 8-14 ms."""

    def __init__(self, rows: dict[str, tuple[str, str, str, str]]):
        self._rows = rows
        self._made: dict[str, Term] = {}

    def __getitem__(self, matching_key: str) -> Term:
        made = self._made.get(matching_key)
        if made is None:
            name, meddra_code, soc, grades = self._rows[matching_key]
            made = self._made[matching_key] = Term(
                term=name, meddra_code=int(meddra_code), soc=soc,
                grades=frozenset(int(g) for g in grades.split(",")))
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def lookup(text: str) -> Term | None:
    return dictionary().get(key(text))


def term(name: str) -> Term:
    """A CTCAE term named exactly by the protocol or the code; a bad name is a bug there."""
    found = lookup(name)
    if found is None:
        raise ValueError(f"{name!r} is not a CTCAE v{CTCAE_VERSION} term")
    return found


def suggest(text: str, n: int = 3) -> list[str]:
    """The n CTCAE terms closest to `text`.

    difflib, measured over the 837 terms: ~35 ms per refused term against ~2.5 ms for
    rapidfuzz. Only a refusal pays it, next to a process start of hundreds of milliseconds, so
    the standard library is enough and the program has one dependency less.
    """
    import difflib  # a refusal's only: every other command is spared its import

    terms = dictionary()
    close = difflib.get_close_matches(key(text), terms, n=n, cutoff=0.0)
    return [terms[k].term for k in close]


def code(text: str, synonyms: Mapping[str, str], *, verbatim: str | None = None) -> Coded:
    """The CTCAE term an entered term stands for, or BadInput (exit 2) naming the closest.

    `synonyms` maps a matching key (see `key`) to a CTCAE term; a CTCAE term wins over a
    synonym of the same spelling. "Other, specify" terms need the investigator's own words.
    """
    found = lookup(text)
    synonym = None
    if found is None and (target := synonyms.get(key(text))) is not None:
        found, synonym = term(target), text.strip()
    if found is None:
        raise BadInput(
            f"term: {text.strip()!r} is neither a CTCAE v{CTCAE_VERSION} term nor a synonym the "
            f"protocol lists; closest CTCAE terms: " + "; ".join(suggest(text))
            + f" (an event no term fits: '<SOC>{OTHER_SPECIFY}' with --verbatim)",
            field="term")
    if found.other_specify and not (verbatim and verbatim.strip()):
        raise BadInput(f"verbatim: {found.term} needs the investigator's term "
                       f"(--verbatim TEXT)", field="verbatim")
    return Coded(found, synonym)


def check_grade(term: Term, grade: int) -> None:
    """Grades the term list marks as not defined for the term are bad input (exit 2)."""
    if grade not in term.grades:
        raise BadInput(f"grade: grade {grade} does not exist for {term.term} in CTCAE "
                       f"v{CTCAE_VERSION} (grades {', '.join(map(str, sorted(term.grades)))})",
                       field="grade")


def soc_rank(soc: str | None) -> int:
    """Where a SOC's rows go in a safety table; uncoded terms (None) come last."""
    return SOC_ORDER.index(soc) if soc in SOC_ORDER else len(SOC_ORDER)
