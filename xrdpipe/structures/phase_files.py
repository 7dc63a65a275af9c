"""A lab's phase set: CIF files with any names, each file one candidate phase.

A phase's **name** is its file's stem as written (``La(OH)3.cif`` -> ``La(OH)3``); names flow
to predictions, plots and reports. Its **material id** is a safe slug of the name
(``La_OH_3``): the key of the manifest, the store and the model outputs, and the only form
that becomes a file name or an MLflow key (MLflow accepts letters, digits, ``_ - . /`` and
spaces in keys; ``(`` is refused). A COD id in the file (``_cod_database_code``) is kept as
provenance, never needed. Slugs that collide get ``-2``, ``-3``, ... in file-name order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xrdpipe.errors import ConfigError

MATERIAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A material id: a COD id (digits) or a phase slug; safe as a file name and an MLflow key."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_COD_CODE = re.compile(r"^_cod_database_code\s+'?\"?([0-9]{1,9})", re.MULTILINE)
CIF_SUFFIX = ".cif"


@dataclass(frozen=True)
class PhaseFile:
    """One candidate phase of a phase set.

    Attributes:
        material_id: the slug that keys the phase everywhere (files, store, model outputs).
        name: the phase's name, the file stem as written.
        path: the CIF file.
        cod_id: the COD id the file declares (provenance), else ``None``.
    """

    material_id: str
    name: str
    path: Path
    cod_id: str | None


def material_slug(name: str) -> str:
    """The material id of a phase name: runs of other characters become one ``_``.

    ``La(OH)3`` -> ``La_OH_3``, ``α-Al2O3`` -> ``Al2O3`` (no letter survives), ``NiO`` ->
    ``NiO``; a name with nothing usable becomes ``phase``.
    """
    slug = _UNSAFE.sub("_", name).strip("_.-")[:64]
    return slug if slug and MATERIAL_ID.fullmatch(slug) else "phase"


def is_material_id(value: object) -> bool:
    """Whether ``value`` is a string that may key a material (and become a file name)."""
    return isinstance(value, str) and MATERIAL_ID.fullmatch(value) is not None and ".." not in value


def material_sort_key(material_id: str) -> tuple[int, int, str]:
    """COD ids in numeric order first, then phase slugs in alphabetical order."""
    text = str(material_id)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def _declared_cod_id(path: Path) -> str | None:
    try:
        head = path.read_text(errors="replace")
    except OSError:
        return None
    match = _COD_CODE.search(head)
    return match.group(1) if match else None


def discover_phase_files(source: Path | str | Sequence[Path | str]) -> list[PhaseFile]:
    """The phases of a folder of CIF files (``*.cif``, any case) or of an explicit file list.

    Args:
        source: a folder, or a list of CIF files.

    Returns:
        One :class:`PhaseFile` per file, in file-name order, with unique material ids.

    Raises:
        ConfigError: the folder or a listed file does not exist, a listed file is not a
            ``.cif``, or no CIF file is found.
    """
    if isinstance(source, str | Path):
        folder = Path(source)
        if not folder.is_dir():
            raise ConfigError(f"phase folder {folder} does not exist (a folder of .cif files)")
        paths = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == CIF_SUFFIX),
            key=lambda p: p.name,
        )
        where = str(folder)
    else:
        paths = [Path(p) for p in source]
        for path in paths:
            if not path.is_file():
                raise ConfigError(f"phase file {path} does not exist")
            if path.suffix.lower() != CIF_SUFFIX:
                raise ConfigError(f"phase file {path} is not a .cif file (accepted: *.cif)")
        where = ", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
    if not paths:
        raise ConfigError(f"no .cif file in {where}: a phase set needs one CIF file per phase")
    phases: list[PhaseFile] = []
    taken: set[str] = set()
    for path in paths:
        slug = base = material_slug(path.stem)
        n = 1
        while slug.lower() in taken:  # case-insensitive file systems
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug.lower())
        phases.append(PhaseFile(slug, path.stem, path, _declared_cod_id(path)))
    return phases
