"""Which structures a subset keeps: each rule returns a rejection reason slug, or ``None``.

Rules are pure functions over values already at hand (the raw site bound, the parsed
structure, the CIF names), so :func:`xrdpipe.structures.manifest.build_manifest` can run
the cheap ones first. Deduplication needs every kept entry and lives in
:func:`deduplicate`.

Reason slugs (the ``reason`` column of ``quarantine.parquet``):

- ``too_many_sites``: the raw-text site bound exceeds ``max_sites``.
- ``partial_occupancy``: some site is disordered and the subset wants ordered structures.
- ``organic``: the formula contains both C and H.
- ``polymer``: a CIF name contains ``catena`` or ``poly`` (any case).
- ``element_not_allowed``: an element outside ``allowed_elements``.
- ``element_excluded``: an element in ``excluded_elements``.
- ``no_scattering_factors``: an element (or dummy species such as ``M``/``X0+``) absent
  from pymatgen's X-ray atomic scattering parameters, so no pattern can be simulated.
- ``duplicate``: same reduced formula and space-group number as a lower COD id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
from pymatgen.core import Structure

from xrdpipe.config import Filters
from xrdpipe.config.synthetic import scattering_elements
from xrdpipe.structures.phase_files import material_sort_key

POLYMER_MARKERS = ("catena", "poly")
"""Substrings of a CIF name (case-insensitive) that mark a crystalline polymer."""


def element_symbols(structure: Structure) -> list[str]:
    """Sorted symbols of every species in the structure (dummy species as pymatgen names them).

    Oxidation states are dropped (``Fe3+`` -> ``Fe``); a dummy species keeps its symbol
    (``X0+`` -> ``X``), so it fails the scattering-factor rule.
    """
    symbols = {getattr(sp, "symbol", str(sp)) for sp in structure.composition}
    return sorted(symbols)


def check_site_bound(site_bound: int, max_sites: int) -> str | None:
    """``too_many_sites`` when the raw-text bound exceeds ``max_sites``."""
    return "too_many_sites" if site_bound > max_sites else None


def check_partial_occupancy(structure: Structure, allow: bool) -> str | None:
    """``partial_occupancy`` when a site is disordered and that is not allowed."""
    return None if allow or structure.is_ordered else "partial_occupancy"


def is_organic(elements: Iterable[str]) -> bool:
    """Whether the formula contains both carbon and hydrogen (the pipeline's definition)."""
    present = set(elements)
    return "C" in present and "H" in present


def check_organic(elements: Iterable[str], exclude: bool) -> str | None:
    """``organic`` when the formula contains C and H and organics are excluded."""
    return "organic" if exclude and is_organic(elements) else None


def is_polymer(names: Iterable[str]) -> bool:
    """Whether a CIF name contains ``catena`` or ``poly`` (case-insensitive)."""
    return any(marker in name.lower() for name in names for marker in POLYMER_MARKERS)


def check_polymer(names: Iterable[str], exclude: bool) -> str | None:
    """``polymer`` when a name marks a crystalline polymer and polymers are excluded."""
    return "polymer" if exclude and is_polymer(names) else None


def check_elements(
    elements: Iterable[str], allowed: Sequence[str] | None, excluded: Sequence[str]
) -> str | None:
    """``element_not_allowed`` (outside ``allowed``) or ``element_excluded`` (in ``excluded``)."""
    present = list(elements)
    if allowed is not None and any(el not in allowed for el in present):
        return "element_not_allowed"
    if any(el in excluded for el in present):
        return "element_excluded"
    return None


def missing_scattering_factors(elements: Iterable[str]) -> list[str]:
    """The elements (or dummy species) without X-ray atomic scattering parameters."""
    return [el for el in elements if el not in scattering_elements()]


def check_scattering_factors(elements: Iterable[str]) -> str | None:
    """``no_scattering_factors`` when pymatgen's XRDCalculator cannot scatter from an element."""
    return "no_scattering_factors" if missing_scattering_factors(elements) else None


def structure_rejection(
    structure: Structure, names: Sequence[str], filters: Filters
) -> tuple[str, str] | None:
    """The first filter rule a parsed structure fails, as ``(reason, detail)``, or None.

    Order: partial occupancy, organic, polymer, allowed/excluded elements, scattering
    factors. (The site bound is checked earlier, on the raw text.)

    Args:
        structure: the parsed structure.
        names: its CIF names (:func:`xrdpipe.structures.parse.cif_names`).
        filters: the subset's filters.

    Returns:
        ``(reason, detail)`` naming the offending value, or ``None`` when it is kept.
    """
    elements = element_symbols(structure)
    formula = structure.composition.hill_formula
    if check_partial_occupancy(structure, filters.allow_partial_occupancy):
        return "partial_occupancy", f"{formula}: some site occupancies are below 1"
    if check_organic(elements, filters.exclude_organic):
        return "organic", f"formula {formula} contains C and H"
    if check_polymer(names, filters.exclude_polymers):
        return "polymer", f"name {'; '.join(names)[:200]!r} contains catena/poly"
    reason = check_elements(elements, filters.allowed_elements, filters.excluded_elements)
    if reason == "element_not_allowed":
        allowed = list(filters.allowed_elements or ())
        return reason, f"elements {elements} not all in allowed_elements {allowed}"
    if reason == "element_excluded":
        bad = [el for el in elements if el in filters.excluded_elements]
        return reason, f"elements {bad} in excluded_elements {list(filters.excluded_elements)}"
    missing = missing_scattering_factors(elements)
    if missing:
        return "no_scattering_factors", (
            f"{missing} in {formula} have no X-ray atomic scattering parameters"
        )
    return None


def deduplicate(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the lowest COD id (numerically) per reduced formula and space-group number.

    Args:
        df: manifest rows with ``cod_id``, ``reduced_formula``, ``space_group_number``.

    Returns:
        ``(kept, dropped)``; ``dropped`` gains ``kept_cod_id``, the entry it duplicates.
    """
    if df.empty:
        return df, df.assign(kept_cod_id=pd.Series(dtype=str))
    ordered = df.assign(_id=df["cod_id"].map(material_sort_key)).sort_values("_id", kind="stable")
    keys = ["reduced_formula", "space_group_number"]
    first = ordered.groupby(keys, sort=False)["cod_id"].transform("first")
    is_first = ordered["cod_id"] == first
    kept = ordered[is_first].drop(columns="_id")
    dropped = ordered[~is_first].drop(columns="_id").assign(kept_cod_id=first[~is_first])
    return kept, dropped
