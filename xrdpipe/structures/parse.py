"""Reading COD CIFs: a cheap site bound from the raw text, names, and pymatgen parsing.

The site bound exists because pymatgen's ``CifParser`` expands every symmetry operation over
every atom and then merges coincident sites, which takes minutes on cells of thousands of
sites. :func:`estimate_site_count` reads only the text, so huge cells are rejected first.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Structure
from pymatgen.io.cif import CifParser

from xrdpipe.errors import StructureError

OCCUPANCY_TOLERANCE = 1.05
"""Occupancies summing up to this are scaled to 1 (COD has sums like 1.0004 from rounding)."""

NAME_TAGS = (
    "_chemical_name_systematic",
    "_chemical_name_common",
    "_chemical_name_mineral",
)
"""The CIF name tags searched by the polymer rule."""

_SYMOP_TAGS = (
    "_space_group_symop_operation_xyz",
    "_symmetry_equiv_pos_as_xyz",
)
_SPACE_GROUP_SYMBOL_TAGS = (
    "_space_group_name_h-m_alt",
    "_symmetry_space_group_name_h-m",
)
_SPACE_GROUP_NUMBER_TAGS = (
    "_space_group_it_number",
    "_symmetry_int_tables_number",
)
_ATOM_COORD_TAGS = ("_atom_site_fract_x", "_atom_site_cartn_x")

_TOKEN = re.compile(r"""'(?:[^']|'(?=\S))*'(?=\s|$)|"(?:[^"]|"(?=\S))*"(?=\s|$)|\S+""")


@dataclass
class _Block:
    """The tags and loops of one CIF data block (tag names lower-cased)."""

    name: str
    items: dict[str, str] = field(default_factory=dict)
    loops: list[tuple[list[str], int]] = field(default_factory=list)

    def loop_rows(self, tags: tuple[str, ...]) -> int | None:
        """Rows of the first loop holding any of ``tags`` (``None`` if there is none)."""
        for loop_tags, n_values in self.loops:
            if any(t in loop_tags for t in tags):
                return n_values // max(len(loop_tags), 1)
        return None

    def has_atoms(self) -> bool:
        return self.loop_rows(_ATOM_COORD_TAGS) is not None


def _tokens(cif_text: str) -> Iterator[str]:
    """CIF 1.1 tokens: bare words, quoted strings, and ``;``-delimited text fields.

    Text fields and quoted strings are returned with a leading marker character (``;`` or
    the quote) so a value is never mistaken for a keyword.
    """
    lines = cif_text.splitlines()
    i = 0
    n = len(lines)
    while i < n:
        line = lines[i]
        if line.startswith(";"):
            # A text field runs to the next line that starts with ';'.
            i += 1
            while i < n and not lines[i].startswith(";"):
                i += 1
            yield ";"
            i += 1
            continue
        for match in _TOKEN.finditer(line):
            token = match.group()
            if token.startswith("#"):
                break
            yield token
        i += 1


def _blocks(cif_text: str) -> list[_Block]:
    """Split CIF text into blocks with their single-valued items and loop sizes."""
    blocks: list[_Block] = []
    block = _Block("")
    pending_tag: str | None = None
    loop_tags: list[str] | None = None
    loop_values = 0
    in_loop_header = False

    def close_loop() -> None:
        nonlocal loop_tags, loop_values, in_loop_header
        if loop_tags is not None:
            block.loops.append((loop_tags, loop_values))
        loop_tags, loop_values, in_loop_header = None, 0, False

    for token in _tokens(cif_text):
        lower = token.lower()
        is_keyword = token[0] not in "'\";"
        if is_keyword and lower.startswith("data_"):
            close_loop()
            pending_tag = None
            if block.name or block.items or block.loops:
                blocks.append(block)
            block = _Block(token[5:])
        elif is_keyword and lower == "loop_":
            close_loop()
            pending_tag = None
            loop_tags, in_loop_header = [], True
        elif is_keyword and token.startswith("_"):
            if loop_tags is not None and in_loop_header:
                loop_tags.append(lower)
            else:
                close_loop()
                pending_tag = lower
        elif loop_tags is not None:
            in_loop_header = False
            loop_values += 1
        elif pending_tag is not None:
            block.items[pending_tag] = _unquote(token)
            pending_tag = None
    close_loop()
    if block.name or block.items or block.loops:
        blocks.append(block)
    return blocks


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


@lru_cache(maxsize=512)
def _space_group_order(symbol: str | None, number: int | None) -> int:
    """Number of symmetry operations (centring included) of a space group, 1 if unknown."""
    from pymatgen.symmetry.groups import SpaceGroup

    try:
        if symbol:
            return len(SpaceGroup(symbol).symmetry_ops)
    except Exception:  # noqa: BLE001 - unknown settings fall back to the number
        pass
    try:
        if number is not None:
            return len(SpaceGroup.from_int_number(number).symmetry_ops)
    except Exception:  # noqa: BLE001 - an unknown number gives no information
        pass
    return 1


def _symop_count(block: _Block) -> int:
    rows = block.loop_rows(_SYMOP_TAGS)
    if rows:
        return rows
    symbol = next((block.items[t] for t in _SPACE_GROUP_SYMBOL_TAGS if t in block.items), None)
    number = None
    for tag in _SPACE_GROUP_NUMBER_TAGS:
        if tag in block.items and block.items[tag].isdigit():
            number = int(block.items[tag])
            break
    if symbol in ("?", "."):
        symbol = None
    return _space_group_order(symbol, number)


def estimate_site_count(cif_text: str) -> int:
    """An upper bound of the number of sites in the cell, read from the raw CIF text.

    Rows of the ``_atom_site_`` loop times the number of symmetry operations (rows of the
    ``_space_group_symop_operation_xyz`` or ``_symmetry_equiv_pos_as_xyz`` loop; if neither
    is given, the order of the space group named by its H-M symbol or number; else 1).
    Atoms on special positions make pymatgen merge images, so the true count is at most this.
    The first data block with atom coordinates is used, as :func:`parse_structure` does.

    Args:
        cif_text: the whole CIF file.

    Returns:
        The bound (0 when no block has an atom loop).
    """
    for block in _blocks(cif_text):
        if block.has_atoms():
            rows = block.loop_rows(_ATOM_COORD_TAGS) or 0
            return rows * _symop_count(block)
    return 0


def cif_names(cif_text: str) -> list[str]:
    """The systematic, common and mineral names of every block (for the polymer rule).

    Args:
        cif_text: the whole CIF file.

    Returns:
        The names in file order, without CIF placeholders (``?`` and ``.``).
    """
    names: list[str] = []
    for block in _blocks(cif_text):
        for tag in NAME_TAGS:
            value = block.items.get(tag)
            if value and value not in ("?", ".", ";"):
                names.append(value)
    # Names are often ';'-delimited text fields, which the tokenizer skips: read them here.
    names.extend(_text_field_names(cif_text))
    return list(dict.fromkeys(names))


def _text_field_names(cif_text: str) -> list[str]:
    """Name tags whose value is a multi-line ``;`` text field."""
    found: list[str] = []
    lines = cif_text.splitlines()
    for i, line in enumerate(lines[:-1]):
        tag = line.strip().lower()
        if tag in NAME_TAGS and lines[i + 1].startswith(";"):
            body = [lines[i + 1][1:]]
            for nxt in lines[i + 2 :]:
                if nxt.startswith(";"):
                    break
                body.append(nxt)
            text = " ".join(part.strip() for part in body).strip()
            if text:
                found.append(text)
    return found


def read_cif_text(path: Path | str) -> str:
    """The text of a CIF file (undecodable bytes replaced, as COD has some latin-1 files)."""
    return Path(path).read_bytes().decode("utf-8", errors="replace")


def parse_structure(
    cif: str | Path, occupancy_tolerance: float = OCCUPANCY_TOLERANCE
) -> Structure:
    """The first structure of a CIF, parsed by pymatgen's ``CifParser``.

    The conventional cell as written (``primitive=False``), like ``Structure.from_file``.
    pymatgen's warnings are captured and put in the error detail when parsing fails.

    Args:
        cif: the CIF text, or a path to a CIF file.
        occupancy_tolerance: occupancies summing up to this are scaled to 1.

    Returns:
        The structure of the first block that pymatgen can parse.

    Raises:
        StructureError: stage ``parse`` with reason ``unparseable_cif`` (pymatgen raised)
            or ``no_structure`` (no block gave a structure).
    """
    text = read_cif_text(cif) if isinstance(cif, Path) else cif
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser = CifParser(
                io.StringIO(text), occupancy_tolerance=occupancy_tolerance, check_cif=False
            )
            structures = parser.parse_structures(primitive=False, on_error="warn")
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on bad CIFs
            raise StructureError(
                "parse", "unparseable_cif", f"{type(exc).__name__}: {exc}"[:500]
            ) from exc
    if not structures:
        messages = "; ".join(dict.fromkeys(str(w.message) for w in caught))
        raise StructureError("parse", "no_structure", messages[:500] or "no block had a structure")
    return structures[0]
