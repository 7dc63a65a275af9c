"""A local COD mirror: a directory of COD CIFs read as a source, without HTTP.

Two layouts are understood, and may be mixed:

* flat: ``<root>/<cod_id>.cif`` (e.g. the sample under ``shared/cod-sample/cif``);
* COD's rsync layout, searched recursively: ``<root>/cif/1/00/00/1000065.cif`` (from
  ``rsync -av --delete rsync://www.crystallography.net/cif/ cif/``).

A file whose name is not a COD id (``Fe.cif``, as the ``crystals`` package ships them)
gets its id from ``_cod_database_code``, else from a ``data_<digits>`` block name; files
with neither are listed in :attr:`CodMirror.unidentified`. The same id twice keeps the
first file by sorted relative path; the others are listed in :attr:`CodMirror.duplicates`.

:meth:`CodMirror.search` applies a :class:`~xrdpipe.config.CodQuery` to what the CIF
header says (formula, cell, names, bibliography): a criterion the CIF cannot answer (no
``_chemical_formula_sum`` for an element rule, no cell volume for ``vmin``) excludes the
entry, as COD's own SQL does with NULL columns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from xrdpipe.cod.cache import CifCache, DownloadResult, cif_problem, unique_ids, validate_cod_id
from xrdpipe.cod.client import CodRecord
from xrdpipe.config import CodQuery
from xrdpipe.errors import CodError

__all__ = ["CodMirror", "cif_header", "hill_formula", "package_mirror_dir", "record_matches"]

_DIGITS = re.compile(r"[0-9]{1,9}")
_DATA_NAME = re.compile(r"^data_([0-9]{1,9})\s*$", re.MULTILINE)
_COD_CODE = re.compile(r"^_cod_database_code\s+'?\"?([0-9]{1,9})", re.MULTILINE)
_ELEMENT_AMOUNT = re.compile(r"([A-Z][a-z]?)([0-9]*\.?[0-9]*)")
_AMOUNT = re.compile(r"[0-9]*\.?[0-9]*")
_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")

_TEXT_TAGS = (
    "_chemical_name_common",
    "_chemical_name_mineral",
    "_chemical_name_systematic",
    "_chemical_name_structure_type",
    "_publ_section_title",
    "_journal_name_full",
    "_journal_paper_doi",
    "_publ_author_name",
)
"""CIF items searched by ``text`` (COD: "names and bibliography")."""

_CELL_TAGS = {
    "a": "_cell_length_a",
    "b": "_cell_length_b",
    "c": "_cell_length_c",
    "alpha": "_cell_angle_alpha",
    "beta": "_cell_angle_beta",
    "gamma": "_cell_angle_gamma",
    "v": "_cell_volume",
}


def package_mirror_dir() -> Path:
    """The ``cifs`` folder of the ``crystals`` package: unmodified COD CIFs, offline."""
    return Path(str(resources.files("crystals") / "cifs"))


# -- reading a CIF header cheaply ------------------------------------------------------


def _value(text: str) -> str:
    """The first CIF value of ``text`` (quotes removed)."""
    text = text.strip()
    if text[:1] in ("'", '"'):
        # CIF quotes close only before whitespace or the end: 'O'Keeffe, M.' is one value.
        quote = text[0]
        match = re.match(rf"{quote}(.*?){quote}(?:\s|$)", text)
        return match.group(1) if match else text[1:]
    return text.split()[0] if text else ""


def cif_header(text: str) -> dict[str, str]:
    """Top-level ``_tag value`` items of the first data block of a CIF, lower-case tags.

    Loops are skipped except the author loop, whose names are joined under
    ``_publ_author_name``. Semicolon text fields are kept as their text. Values are raw
    (uncertainties such as ``7.8783(5)`` included). Cheap: no symmetry, no atoms.
    """
    items: dict[str, str] = {}
    lines = text.splitlines()
    n = len(lines)
    i = 0
    seen_block = False

    def semicolon_field(start: int) -> tuple[str, int]:
        body = [lines[start][1:]]
        j = start + 1
        while j < n and not lines[j].startswith(";"):
            body.append(lines[j])
            j += 1
        return "\n".join(body).strip(), j + 1

    while i < n:
        line = lines[i]
        stripped = line.strip()
        low = stripped.lower()
        if not stripped or stripped.startswith("#"):
            i += 1
        elif low.startswith("data_"):
            if seen_block:
                break
            seen_block = True
            i += 1
        elif low == "loop_" or low.startswith("loop_ "):
            i += 1
            tags: list[str] = []
            while i < n and lines[i].strip().startswith("_"):
                tags.append(lines[i].strip().split()[0].lower())
                i += 1
            values: list[str] = []
            while i < n:
                row = lines[i]
                head = row.strip().lower()
                if row.startswith(";"):
                    field, i = semicolon_field(i)
                    values.append(field)
                    continue
                if head.startswith(("_", "loop_", "data_")):
                    break
                if head and not head.startswith("#"):
                    values.append(row.strip())
                i += 1
            if "_publ_author_name" in tags:
                items["_publ_author_name"] = " ; ".join(values)
        elif stripped.startswith("_"):
            parts = stripped.split(None, 1)
            tag = parts[0].lower()
            rest = parts[1] if len(parts) > 1 else ""
            i += 1
            if rest:
                items.setdefault(tag, _value(rest))
                continue
            while i < n and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i < n and lines[i].startswith(";"):
                field, i = semicolon_field(i)
                items.setdefault(tag, field)
            elif i < n and not lines[i].strip().startswith(("_", "loop_", "data_")):
                items.setdefault(tag, _value(lines[i]))
                i += 1
        else:
            i += 1
    return items


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    match = _NUMBER.match(value)
    return float(match.group(1)) if match else None


def formula_counts(formula: str) -> dict[str, float] | None:
    """Element -> amount of a formula (``"Fe2 O3"``, ``"- Na Cl -"``, ``"Ca (Al Fe)2 O4"``).

    Groups in parentheses (with an optional multiplier) and parts separated by commas are
    added up. ``None`` if the text is not a formula (``"?"``, stray characters).
    """
    counts, end = _parse_formula(formula.strip().strip("-"), 0)
    if counts is None or end < len(formula.strip().strip("-")) or not counts:
        return None
    return {e: round(n, 6) for e, n in counts.items()}


def _parse_formula(text: str, i: int) -> tuple[dict[str, float] | None, int]:
    counts: dict[str, float] = {}
    while i < len(text):
        char = text[i]
        if char in "([":
            group, i = _parse_formula(text, i + 1)
            if group is None:
                return None, i
            amount = _AMOUNT.match(text, i)
            mult = float(amount.group()) if amount and amount.group() not in ("", ".") else 1.0
            i = amount.end() if amount else i
            for element, n in group.items():
                counts[element] = counts.get(element, 0.0) + n * mult
        elif char in ")]":
            return counts, i + 1
        elif char.isupper():
            match = _ELEMENT_AMOUNT.match(text, i)
            assert match is not None  # an upper-case letter always matches
            element, amount_text = match.groups()
            amount_value = float(amount_text) if amount_text not in ("", ".") else 1.0
            counts[element] = counts.get(element, 0.0) + amount_value
            i = match.end()
        elif char in " ,;\t\r\n":
            i += 1
        else:
            return None, i
    return counts, i


def hill_formula(formula: str) -> str:
    """A CIF formula in Hill order with spaces, as COD lists it (``"C2 H6 O"``, ``"Cl Na"``).

    Hill order: C first, then H, then the rest alphabetically when carbon is present;
    otherwise every element alphabetically. A formula that cannot be read is returned
    stripped, unchanged.
    """
    counts = formula_counts(formula)
    if not counts:
        return formula.strip()
    if "C" in counts:
        order = ["C"] + (["H"] if "H" in counts else [])
        order += sorted(e for e in counts if e not in ("C", "H"))
    else:
        order = sorted(counts)
    return " ".join(e if counts[e] == 1 else f"{e}{counts[e]:g}" for e in order)


def _record(cod_id: str, header: dict[str, str]) -> CodRecord:
    formula_sum = header.get("_chemical_formula_sum", "")
    counts = formula_counts(formula_sum) if formula_sum not in ("", "?", ".") else None
    year = _number(header.get("_journal_year"))

    def text(*tags: str) -> str | None:
        for tag in tags:
            value = header.get(tag)
            if value and value.strip() not in ("?", "."):
                return value.strip()
        return None

    return CodRecord(
        cod_id=cod_id,
        formula=hill_formula(formula_sum) if counts else "",
        a=_number(header.get("_cell_length_a")),
        b=_number(header.get("_cell_length_b")),
        c=_number(header.get("_cell_length_c")),
        alpha=_number(header.get("_cell_angle_alpha")),
        beta=_number(header.get("_cell_angle_beta")),
        gamma=_number(header.get("_cell_angle_gamma")),
        volume=_number(header.get("_cell_volume")),
        space_group=text("_symmetry_space_group_name_h-m", "_space_group_name_h-m_alt"),
        space_group_hall=text("_symmetry_space_group_name_hall", "_space_group_name_hall"),
        n_elements=len(counts) if counts else None,
        mineral=text("_chemical_name_mineral"),
        common_name=text("_chemical_name_common"),
        year=int(year) if year is not None else None,
        doi=text("_journal_paper_doi"),
    )


def record_matches(record: CodRecord, query: CodQuery, text: str = "") -> bool:
    """Whether a record satisfies ``query`` as COD's search would.

    Args:
        record: the entry.
        query: the search; every given criterion must hold.
        text: names and bibliography searched by ``query.text`` (case-insensitive).
    """
    if query.ids and record.cod_id not in query.ids:
        return False
    counts = formula_counts(record.formula) if record.formula else None
    needs_formula = (
        query.elements
        or query.exclude_elements
        or query.formula
        or query.min_elements is not None
        or query.max_elements is not None
    )
    if needs_formula and not counts:
        return False
    if counts is not None:
        elements = set(counts)
        if not set(query.elements) <= elements or elements & set(query.exclude_elements):
            return False
        if query.min_elements is not None and len(elements) < query.min_elements:
            return False
        if query.max_elements is not None and len(elements) > query.max_elements:
            return False
        if query.formula and formula_counts(query.formula) != counts:
            return False
    if query.text and query.text.lower() not in text.lower():
        return False
    for key, bound in query.cell.items():
        name, side = key[:-3], key[-3:]
        value = record.volume if name == "v" else getattr(record, name)
        if value is None or (value < bound if side == "min" else value > bound):
            return False
    return True


# -- the mirror -----------------------------------------------------------------------


class CodMirror:
    """A directory of COD CIFs (flat or COD's rsync layout) used as a COD source.

    Args:
        root: the mirror directory.

    Raises:
        CodError: ``root`` is not a directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise CodError(f"COD mirror {str(self.root)!r} is not a directory")
        self._entries: dict[str, Path] | None = None
        self._duplicates: dict[str, tuple[Path, ...]] = {}
        self._unidentified: tuple[Path, ...] = ()
        self._headers: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"CodMirror({str(self.root)!r})"

    def _scan(self) -> None:
        files: list[Path] = []
        for folder, dirs, names in os.walk(self.root):
            dirs.sort()
            files.extend(Path(folder) / n for n in names if n.lower().endswith(".cif"))
        files.sort(key=lambda p: p.relative_to(self.root).as_posix())
        found: dict[str, list[Path]] = {}
        unidentified: list[Path] = []
        for path in files:
            cod_id = self._id_of(path)
            if cod_id is None:
                unidentified.append(path)
            else:
                found.setdefault(cod_id, []).append(path)
        self._entries = {i: paths[0] for i, paths in sorted(found.items(), key=_id_key)}
        self._duplicates = {i: tuple(p) for i, p in found.items() if len(p) > 1}
        self._unidentified = tuple(unidentified)

    @staticmethod
    def _id_of(path: Path) -> str | None:
        if _DIGITS.fullmatch(path.stem):
            return path.stem
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        match = _COD_CODE.search(text) or _DATA_NAME.search(text)
        return match.group(1) if match else None

    def entries(self) -> dict[str, Path]:
        """COD id -> CIF path, sorted by id (scanned once per mirror object)."""
        if self._entries is None:
            self._scan()
        assert self._entries is not None
        return dict(self._entries)

    @property
    def duplicates(self) -> dict[str, tuple[Path, ...]]:
        """Ids found in more than one file -> all their paths (the first one is used)."""
        self.entries()
        return dict(self._duplicates)

    @property
    def unidentified(self) -> tuple[Path, ...]:
        """CIF files whose COD id could not be told (name, ``_cod_database_code``, block)."""
        self.entries()
        return self._unidentified

    def header(self, cod_id: str) -> dict[str, str]:
        """The parsed header items of one entry (see :func:`cif_header`), cached."""
        cod_id = validate_cod_id(cod_id)
        if cod_id not in self._headers:
            path = self.entries()[cod_id]
            text = path.read_text(encoding="utf-8", errors="replace")
            self._headers[cod_id] = cif_header(text)
        return self._headers[cod_id]

    def record(self, cod_id: str) -> CodRecord:
        """The :class:`CodRecord` of one entry, read from its CIF header."""
        return _record(validate_cod_id(cod_id), self.header(cod_id))

    def search(self, query: CodQuery) -> list[CodRecord]:
        """Entries matching ``query``, sorted by id (see :func:`record_matches`).

        Raises:
            InvalidCodIdError: never for a validated query; ids are digits.
        """
        entries = self.entries()
        ids = [i for i in query.ids if i in entries] if query.ids else list(entries)
        out = []
        for cod_id in ids:
            header = self.header(cod_id)
            record = _record(cod_id, header)
            text = " ".join(header.get(tag, "") for tag in _TEXT_TAGS)
            if record_matches(record, query, text):
                out.append(record)
        return sorted(out, key=lambda r: int(r.cod_id))

    def copy_into(
        self,
        ids: Iterable[str | int],
        cif_dir: Path,
        progress: Callable[[DownloadResult], None] | None = None,
    ) -> list[DownloadResult]:
        """Copy the CIFs of ``ids`` into ``cif_dir`` as ``<cod_id>.cif``, resuming.

        Same contract as :meth:`CodClient.download`: atomic writes, the provenance ledger
        (``url`` is the mirror file's ``file://`` URI), ``cached`` without reading the
        mirror when the sha256 matches, ``failed`` for ids not in the mirror or files
        that are not CIFs.

        Raises:
            InvalidCodIdError: an id is not 1 to 9 digits (nothing is copied).
        """
        wanted = unique_ids(ids)
        entries = self.entries()
        cache = CifCache(Path(cif_dir))
        results = []
        for cod_id in wanted:
            result = cache.cached(cod_id)
            if result is None:
                result = self._copy_one(cache, cod_id, entries.get(cod_id))
            results.append(result)
            if progress:
                progress(result)
        cache.ledger.compact()
        return results

    def _copy_one(self, cache: CifCache, cod_id: str, source: Path | None) -> DownloadResult:
        if source is None:
            where = self.root.resolve().as_uri()
            return cache.fail(cod_id, f"not found in mirror {self.root}", where)
        url = source.resolve().as_uri()
        try:
            data = source.read_bytes()
        except OSError as exc:
            return cache.fail(cod_id, f"cannot read {source}: {exc}", url)
        problem = cif_problem(data)
        if problem is not None:
            return cache.fail(cod_id, problem, url)
        try:
            return cache.store(cod_id, data, url)
        except OSError as exc:
            return cache.fail(cod_id, f"cannot write CIF: {exc}", url)


def _id_key(item: tuple[str, object]) -> int:
    return int(item[0])
