"""Reading COD CIFs: a cheap site bound from the raw text, names, and pymatgen parsing.

The site bound exists because pymatgen's ``CifParser`` expands every symmetry operation over
every atom and then merges coincident sites, which takes minutes on cells of thousands of
sites. :func:`estimate_site_count` reads only the text, so huge cells are rejected first.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
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
class _Loop:
    """One CIF loop: its tags (lower-cased) and its values, row-major."""

    tags: list[str]
    values: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.values) // max(len(self.tags), 1)

    def column(self, tag: str) -> list[str]:
        i = self.tags.index(tag)
        return self.values[i :: len(self.tags)][: self.n_rows]


@dataclass
class _Block:
    """The single-valued items and the loops of one CIF data block (tags lower-cased)."""

    name: str
    items: dict[str, str] = field(default_factory=dict)
    loops: list[_Loop] = field(default_factory=list)

    def loop_with(self, tags: tuple[str, ...]) -> tuple[_Loop, str] | None:
        """The first loop holding any of ``tags``, and which tag it holds."""
        for loop in self.loops:
            for tag in tags:
                if tag in loop.tags:
                    return loop, tag
        return None


def _tokens(cif_text: str) -> Iterator[str]:
    """CIF 1.1 tokens: bare words, quoted strings, and ``;``-delimited text fields.

    A text field is returned as the single token ``;`` (its content is not needed here);
    quoted strings keep their quotes, so a value is never mistaken for a keyword.
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
    """Split CIF text into data blocks with their items and loops."""
    blocks: list[_Block] = []
    block = _Block("")
    pending_tag: str | None = None
    loop: _Loop | None = None
    in_loop_header = False

    for token in _tokens(cif_text):
        lower = token.lower()
        is_keyword = token[0] not in "'\";"
        if is_keyword and lower.startswith("data_"):
            loop, pending_tag = None, None
            if block.name or block.items or block.loops:
                blocks.append(block)
            block = _Block(token[5:])
        elif is_keyword and lower == "loop_":
            pending_tag = None
            loop, in_loop_header = _Loop([]), True
            block.loops.append(loop)
        elif is_keyword and token.startswith("_"):
            if loop is not None and in_loop_header:
                loop.tags.append(lower)
            else:
                loop, pending_tag = None, lower
        elif loop is not None:
            in_loop_header = False
            loop.values.append(_unquote(token))
        elif pending_tag is not None:
            block.items[pending_tag] = _unquote(token)
            pending_tag = None
    if block.name or block.items or block.loops:
        blocks.append(block)
    return blocks


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


@lru_cache(maxsize=512)
def _space_group_ops(symbol: str | None, number: int | None) -> tuple[str, ...]:
    """The symmetry operations (centring included) of a space group, as xyz strings."""
    from pymatgen.symmetry.groups import SpaceGroup

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for make in (lambda: SpaceGroup(symbol), lambda: SpaceGroup.from_int_number(number)):
            try:
                return tuple(op.as_xyz_str() for op in make().symmetry_ops)
            except Exception:  # noqa: BLE001, S112 - unknown symbol or number: try the next
                continue
    return ("x,y,z",)


def _symops(block: _Block) -> list[str]:
    """The block's symmetry operations: its symop loop, else those of its space group."""
    found = block.loop_with(_SYMOP_TAGS)
    if found is not None and found[0].n_rows:
        loop, tag = found
        return loop.column(tag)
    symbol = next((block.items[t] for t in _SPACE_GROUP_SYMBOL_TAGS if t in block.items), None)
    number = None
    for tag in _SPACE_GROUP_NUMBER_TAGS:
        if block.items.get(tag, "").isdigit():
            number = int(block.items[tag])
            break
    if symbol in ("?", "."):
        symbol = None
    if symbol is None and number is None:
        return ["x,y,z"]
    return list(_space_group_ops(symbol, number))


def _number(value: str) -> float:
    """A CIF number without its standard uncertainty: ``0.1234(5)`` -> 0.1234."""
    return float(value.split("(", 1)[0])


SITE_MERGE_TOLERANCE = 5e-5
"""Fractional distance under which symmetry images count as one site in the bound.

Half of pymatgen's ``CifParser`` site tolerance (1e-4), so the bound never merges images
that pymatgen keeps apart (it stays an upper bound)."""


def _orbit_sizes(coords: np.ndarray, ops: list[str]) -> np.ndarray:
    """Distinct images of each fractional position under ``ops``, modulo lattice translations."""
    from pymatgen.core.operations import SymmOp

    affine = np.array([SymmOp.from_xyz_str(op).affine_matrix for op in ops])  # (K, 4, 4)
    rot, trans = affine[:, :3, :3], affine[:, :3, 3]
    images = np.einsum("kij,rj->rki", rot, coords) + trans[None]  # (R, K, 3)
    sizes = np.empty(len(coords), dtype=int)
    for r, img in enumerate(images):
        diff = img[:, None, :] - img[None, :, :]
        diff -= np.round(diff)
        same = np.all(np.abs(diff) < SITE_MERGE_TOLERANCE, axis=-1)  # (K, K)
        # An image is new if no earlier image coincides with it.
        sizes[r] = int(np.sum(~np.any(np.tril(same, k=-1), axis=1)))
    return sizes


def estimate_site_count(cif_text: str) -> int:
    """An upper bound of the number of sites in the cell, read from the raw CIF text.

    Algorithm, on the first data block with atom coordinates (the block
    :func:`parse_structure` uses):

    1. Read the ``_atom_site_`` loop (R rows) and the symmetry operations: rows of the
       ``_space_group_symop_operation_xyz`` or ``_symmetry_equiv_pos_as_xyz`` loop; if
       neither is given, those of the space group named by H-M symbol or number; else
       the identity alone (K operations).
    2. The coarse bound is R x K.
    3. Tightened: for each atom, count its distinct images under the K operations modulo
       lattice translations (atoms on special positions have fewer than K). This stays an
       upper bound, because pymatgen also merges images of different atoms that coincide
       (disorder). Any row that cannot be read keeps its coarse K.

    It takes milliseconds where pymatgen can take minutes (a 6,400-site COD cell).

    Args:
        cif_text: the whole CIF file.

    Returns:
        The bound (0 when no block has an atom loop).
    """
    for block in _blocks(cif_text):
        found = block.loop_with(_ATOM_COORD_TAGS)
        if found is None:
            continue
        loop, x_tag = found
        ops = _symops(block)
        n_rows = loop.n_rows
        coarse = n_rows * len(ops)
        try:
            stem = x_tag[:-1]
            columns = [loop.column(stem + axis) for axis in "xyz"]
        except ValueError:
            return coarse
        readable: list[list[float]] = []
        unreadable = 0
        for x, y, z in zip(*columns, strict=True):
            try:
                readable.append([_number(x), _number(y), _number(z)])
            except ValueError:
                unreadable += 1
        if x_tag == "_atom_site_cartn_x" or not readable:
            return coarse
        try:
            sizes = _orbit_sizes(np.array(readable), ops)
        except Exception:  # noqa: BLE001 - an unreadable operation: keep the coarse bound
            return coarse
        return int(sizes.sum()) + unreadable * len(ops)
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


def parse_structure(cif: str | Path, occupancy_tolerance: float = OCCUPANCY_TOLERANCE) -> Structure:
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
            parser = CifParser.from_str(
                text, occupancy_tolerance=occupancy_tolerance, check_cif=False
            )
            structures = parser.parse_structures(primitive=False, on_error="warn")
        except Exception as exc:  # noqa: BLE001 - pymatgen raises many types on bad CIFs
            messages = "; ".join(dict.fromkeys(str(w.message) for w in caught))
            if "no structures" in str(exc):
                # Every block failed; pymatgen said why in its warnings.
                raise StructureError("parse", "no_structure", (messages or str(exc))[:500]) from exc
            raise StructureError(
                "parse", "unparseable_cif", f"{type(exc).__name__}: {exc}"[:500]
            ) from exc
    if not structures:
        messages = "; ".join(dict.fromkeys(str(w.message) for w in caught))
        raise StructureError("parse", "no_structure", messages[:500] or "no block had a structure")
    return structures[0]
