"""The data catalog (``catalog.yaml``): named COD subsets and the training presets.

The catalog is read once at the edge (CLI or flow) and passed down as frozen pydantic
models. An unknown key or a bad value fails with a :class:`~xrdpipe.errors.ConfigError`
that names the key, the value and what is allowed. Two top-level sections: ``subsets``
(the datasets: source, filters, sampling, simulation, peak shapes) and ``presets`` (the
training presets of :mod:`xrdpipe.config.presets`); results live in the docs and MLflow.
Top-level keys that start with ``_`` hold YAML anchors (templates), as in kedro catalogs.

Format 2 is current. A format-1 catalog (flat presets) still loads, with a
:class:`~xrdpipe.config.presets.PresetFormatWarning` that names what to move where.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from xrdpipe.config.base import Frozen, format_validation_error
from xrdpipe.config.presets import (
    ClassifierPreset,
    PhaseFractionPreset,
    PresetFormatWarning,
    Presets,
    sectioned,
)
from xrdpipe.config.settings import Settings
from xrdpipe.config.simulation import SimulationConfig, SymmetrySettings
from xrdpipe.config.synthetic import SyntheticConfig
from xrdpipe.errors import ConfigError
from xrdpipe.patterns.config import ProfileConfig

CATALOG_VERSION = 2
"""The current catalog format: presets in sections (``model``, ``train``, ``split``...)."""

CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)
"""The seven crystal systems (International Tables), ordered by increasing symmetry."""

LATTICE_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "rhombohedral",
    "hexagonal",
    "cubic",
)
"""The seven lattice systems: paper 000's seven classes (trigonal split by R or P lattice)."""


class CodQuery(Frozen):
    """A COD search, in the words of COD's REST API (`/cod/result`).

    Attributes:
        elements: elements that must be present (`el1`..`el8`).
        exclude_elements: elements that must not be present (`nel1`..`nel4`).
        min_elements: minimum number of distinct elements (`strictmin`).
        max_elements: maximum number of distinct elements (`strictmax`).
        formula: Hill formula with spaces, e.g. ``"Fe2 O3"``.
        text: keyword in names and bibliography.
        ids: explicit COD ids (`id`).
        cell: cell ranges, keys like ``amin``, ``amax``, ``alphamin``, ``vmax``.
    """

    elements: tuple[str, ...] = Field(default=(), max_length=8)
    exclude_elements: tuple[str, ...] = Field(default=(), max_length=4)
    min_elements: int | None = Field(default=None, ge=1)
    max_elements: int | None = Field(default=None, ge=1)
    formula: str | None = None
    text: str | None = None
    ids: tuple[str, ...] = ()
    cell: dict[str, float] = Field(default_factory=dict)

    @field_validator("ids")
    @classmethod
    def _digits(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        for cod_id in ids:
            if not str(cod_id).isdigit():
                raise ValueError(f"COD id {cod_id!r} must be digits only")
        return tuple(str(i) for i in ids)

    @field_validator("cell")
    @classmethod
    def _cell_keys(cls, cell: dict[str, float]) -> dict[str, float]:
        allowed = {
            f"{p}{b}"
            for p in ("a", "b", "c", "alpha", "beta", "gamma", "v")
            for b in ("min", "max")
        }
        for key in cell:
            if key not in allowed:
                raise ValueError(f"cell key {key!r} is not one of {sorted(allowed)}")
        return cell

    def to_params(self) -> dict[str, str]:
        """The query as COD's `/cod/result` parameters (without `format`)."""
        params: dict[str, str] = {}
        for i, el in enumerate(self.elements, start=1):
            params[f"el{i}"] = el
        for i, el in enumerate(self.exclude_elements, start=1):
            params[f"nel{i}"] = el
        if self.min_elements is not None:
            params["strictmin"] = str(self.min_elements)
        if self.max_elements is not None:
            params["strictmax"] = str(self.max_elements)
        if self.formula:
            params["formula"] = self.formula
        if self.text:
            params["text"] = self.text
        if self.ids:
            params["id"] = ",".join(self.ids)
        for key, value in self.cell.items():
            params[key] = f"{value:g}"
        return params


class Filters(Frozen):
    """Which parsed structures a subset keeps (each rejection is quarantined with its reason).

    Attributes:
        max_sites: most sites in the unit cell, bounded from the raw CIF before parsing.
        allow_partial_occupancy: keep disordered structures (partial occupancies).
        exclude_organic: drop formulas that contain both C and H.
        exclude_polymers: drop entries whose name contains ``catena`` or ``poly``.
        allowed_elements: if set, every element must be in it.
        excluded_elements: no element may be in it.
        deduplicate: keep one entry (the lowest COD id) per reduced formula and space group.
    """

    max_sites: int = Field(default=500, ge=1)
    allow_partial_occupancy: bool = False
    exclude_organic: bool = True
    exclude_polymers: bool = True
    allowed_elements: tuple[str, ...] | None = None
    excluded_elements: tuple[str, ...] = ()
    deduplicate: bool = True


class SubsetConfig(Frozen):
    """A named COD subset: where it comes from, what is kept, how it is sampled.

    Attributes:
        description: one line for people.
        source: ``cod`` (REST API at ``cod_url`` or the settings' URL), ``mirror`` (a
            directory of CIFs at ``mirror_dir``), ``package`` (the COD CIFs shipped by
            the ``crystals`` package: offline), or ``phases`` (a lab's phase set: the CIF
            files at ``phases``, any names, each file one phase named by its stem), or
            ``synthetic`` (random crystals on the Wyckoff positions of drawn space groups,
            as its ``synthetic`` section says; see docs/synthetic.md).
        cod_url: base URL of COD for this subset (else ``XRDPIPE_COD_URL``).
        mirror_dir: a directory of COD CIFs, flat or in COD's rsync layout.
        phases: a folder of CIF files, or a list of CIF files (``source: phases``).
        synthetic: how the synthetic crystals are drawn (``source: synthetic``).
        query: the COD search.
        filters: what is kept.
        symmetry: spglib tolerances.
        candidate_pool: if the query returns more entries than this, a seeded random pool
            of this many is downloaded and analysed (a full COD query returns ~500,000).
        sample_size: number of materials kept after filtering (``None``: all).
        stratify_by: draw the sample evenly over this label.
        seed: seeds the sample and every random draw downstream.
        simulation: how peak lists are simulated.
        profile: the default peak shape (stored single-phase profiles) and the ranges of
            the on-the-fly peak shapes, noise and background.
    """

    description: str = ""
    source: Literal["cod", "mirror", "package", "phases", "synthetic"] = "cod"
    cod_url: str | None = None
    mirror_dir: Path | None = None
    phases: Path | list[Path] | None = None
    synthetic: SyntheticConfig | None = None
    query: CodQuery = CodQuery()
    filters: Filters = Filters()
    symmetry: SymmetrySettings = SymmetrySettings()
    candidate_pool: int | None = Field(default=None, ge=1)
    sample_size: int | None = Field(default=None, ge=1)
    stratify_by: Literal["crystal_system", "lattice_system"] | None = None
    seed: int = 0
    simulation: SimulationConfig = SimulationConfig()
    profile: ProfileConfig = ProfileConfig()

    @model_validator(mode="after")
    def _mirror_needs_dir(self) -> SubsetConfig:
        if self.source == "mirror" and self.mirror_dir is None:
            raise ValueError("source 'mirror' needs mirror_dir (a directory of COD CIFs)")
        if self.source == "phases" and not self.phases:
            raise ValueError("source 'phases' needs phases (a folder of CIF files, or a list)")
        if self.source == "synthetic" and self.synthetic is None:
            raise ValueError(
                "source 'synthetic' needs a synthetic section (at least n_structures; "
                "see docs/synthetic.md)"
            )
        if self.synthetic is not None and self.source != "synthetic":
            raise ValueError(
                f"a synthetic section needs source 'synthetic' (source is {self.source!r})"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_unset_phases(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Dump ``phases`` and ``synthetic`` only when set (COD fingerprints still hold)."""
        data = handler(self)
        for name in ("phases", "synthetic"):
            if isinstance(data, dict) and data.get(name) is None:
                data.pop(name, None)
        return data

    def fingerprint(self) -> str:
        """A short hash of the whole resolved subset config."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


SubsetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


class Catalog(Frozen):
    """The whole data catalog: named COD subsets and the training presets."""

    version: Literal[2] = CATALOG_VERSION
    default_subset: str = "demo"
    subsets: dict[SubsetName, SubsetConfig]
    presets: Presets = Presets()

    @model_validator(mode="after")
    def _default_exists(self) -> Catalog:
        if self.default_subset not in self.subsets:
            raise ValueError(
                f"default_subset {self.default_subset!r} is not one of {sorted(self.subsets)}"
            )
        return self

    def subset(self, name: str) -> SubsetConfig:
        """The subset called ``name``; the error lists the allowed names."""
        try:
            return self.subsets[name]
        except KeyError:
            raise ConfigError(
                f"subset {name!r} is not in the catalog; allowed: {sorted(self.subsets)}"
            ) from None

    def preset(self, model: str, name: str) -> PhaseFractionPreset | ClassifierPreset:
        """The training preset ``name`` of ``model`` (``phase_fractions`` or ``classifier``)."""
        if model not in Presets.model_fields:
            raise ConfigError(
                f"model {model!r} has no presets; allowed: {list(Presets.model_fields)}"
            )
        table = getattr(self.presets, model)
        try:
            return table[name]
        except KeyError:
            raise ConfigError(
                f"preset {name!r} is not in presets.{model} of the catalog; "
                f"allowed: {sorted(table)}"
            ) from None


def upgrade_catalog(data: dict[str, Any], source: str = "<dict>") -> dict[str, Any]:
    """A format-1 catalog (flat presets, no ``version`` or ``version: 1``) in format 2.

    Warns with a :class:`~xrdpipe.config.presets.PresetFormatWarning` that lists, per preset,
    which keys go under which section; a format-2 catalog comes back unchanged.
    """
    if data.get("version", 1) != 1:
        return data
    tables = {"phase_fractions": PhaseFractionPreset, "classifier": ClassifierPreset}
    presets = dict(data.get("presets") or {})
    changes = []
    for kind, model in tables.items():
        table = presets.get(kind)
        if not isinstance(table, dict):
            continue
        upgraded = {}
        for name, preset in table.items():
            if isinstance(preset, dict):
                preset, moved = sectioned(model, preset)
                if moved:
                    changes.append(
                        f"presets.{kind}.{name}: "
                        + "; ".join(f"{', '.join(k)} under `{s}:`" for s, k in moved.items())
                    )
            upgraded[name] = preset
        presets[kind] = upgraded
    warnings.warn(
        f"catalog {source} is in format 1: set `version: {CATALOG_VERSION}` and put each "
        "preset's keys in its sections (model, train, split, mixtures | data, baseline)"
        + "".join(f"\n  {line}" for line in changes),
        PresetFormatWarning,
        stacklevel=3,
    )
    return {**data, "version": CATALOG_VERSION, "presets": presets}


def parse_catalog(data: dict[str, Any], source: str = "<dict>") -> Catalog:
    """Validate a catalog given as plain data (as loaded from YAML); see :func:`upgrade_catalog`."""
    data = upgrade_catalog(data, source)
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key written twice in one mapping.

    Plain YAML keeps the last of two equal keys without a word, so a subset or preset pasted
    twice would be read as one. Merge keys (``<<: *anchor``) may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (each key once per mapping)",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def default_catalog_path() -> Path:
    """The catalog installed with the package."""
    return Path(str(resources.files("xrdpipe") / "catalog.yaml"))


def catalog_path(path: Path | str | None = None, settings: Settings | None = None) -> Path:
    """The catalog file :func:`load_catalog` reads.

    Order: the explicit ``path``, ``XRDPIPE_CATALOG``, ``./catalog.yaml``, the packaged one.
    """
    settings = settings or Settings()
    if path is None:
        path = settings.catalog
    if path is None:
        local = Path("catalog.yaml")
        path = local if local.is_file() else default_catalog_path()
    return Path(path)


def _absolute(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def load_catalog(path: Path | str | None = None, settings: Settings | None = None) -> Catalog:
    """Load and validate ``catalog.yaml`` (the file :func:`catalog_path` names).

    Relative ``mirror_dir`` and ``phases`` paths are resolved against the catalog's folder.
    """
    path = catalog_path(path, settings)
    try:
        data = yaml.load(path.read_text(), Loader=UniqueKeyLoader)  # noqa: S506 (safe)
    except OSError as exc:
        raise ConfigError(f"cannot read catalog {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"catalog {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"catalog {path} must be a mapping, got {type(data).__name__}")
    # Top-level keys starting with "_" hold YAML anchors (templates), as in kedro catalogs.
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    catalog = parse_catalog(data, str(path))
    base = path.resolve().parent
    fixed = {}
    for name, sub in catalog.subsets.items():
        if sub.mirror_dir is not None and not sub.mirror_dir.is_absolute():
            sub = sub.model_copy(update={"mirror_dir": _absolute(sub.mirror_dir, base)})
        if isinstance(sub.phases, Path):
            sub = sub.model_copy(update={"phases": _absolute(sub.phases, base)})
        elif sub.phases is not None:
            sub = sub.model_copy(update={"phases": [_absolute(p, base) for p in sub.phases]})
        fixed[name] = sub
    return catalog.model_copy(update={"subsets": fixed})


def resolve_subset(
    catalog: Catalog,
    name: str,
    settings: Settings,
    *,
    mirror_dir: Path | str | None = None,
    cod_url: str | None = None,
) -> SubsetConfig:
    """The subset with command-line or settings overrides of its source applied.

    A ``mirror_dir`` (argument, else ``XRDPIPE_MIRROR_DIR``) turns a ``cod`` subset into a
    mirror read; a ``cod_url`` (argument) points it at another COD.
    """
    sub = catalog.subset(name)
    mirror = mirror_dir or (settings.mirror_dir if sub.source == "cod" else None)
    if mirror is not None:
        path = Path(mirror)
        if not path.is_dir():
            raise ConfigError(f"mirror_dir {str(path)!r} is not a directory")
        return sub.model_copy(update={"source": "mirror", "mirror_dir": path.resolve()})
    if cod_url is not None:
        return sub.model_copy(update={"source": "cod", "cod_url": cod_url})
    return sub
