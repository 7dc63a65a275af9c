"""Typed configuration: the data catalog (`catalog.yaml`) and the site settings (`XRDPIPE_*`).

The catalog is read once at the edge (CLI or flow) and passed down as frozen pydantic
models. An unknown key or a bad value fails with a :class:`~xrdpipe.errors.ConfigError`
that names the key, the value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from xrdpipe.errors import ConfigError
from xrdpipe.patterns.config import (
    AugmentConfig,
    FractionMode,
    ProfileConfig,
    fraction_mode_name,
)

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


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodQuery(_Frozen):
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


class Filters(_Frozen):
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


class SymmetrySettings(_Frozen):
    """spglib tolerances (as `reference.csv` was made: symprec 0.1, 5 degrees)."""

    symprec: float = Field(default=0.1, gt=0)
    angle_tolerance: float = Field(default=5.0, gt=0)


class SimulationConfig(_Frozen):
    """How single-phase peak lists are simulated for a subset (paper 002).

    Attributes:
        n_train_strains: strain conditions per material for training (paper: 500).
        n_test_strains: other strain conditions per material for test (paper: 200).
        max_strain: strain amplitude bound (paper: 0.05).
        strain_mode: ``unconstrained`` (paper 002) or ``symmetry`` (keeps the space group).
        wavelength: a pymatgen wavelength name (``CuKa``) or a value in angstrom.
        two_theta_range: degrees.
        debye_waller: apply pymatgen-style Debye-Waller factors (none are known from COD).
        materials_per_chunk: materials per Zarr chunk, i.e. per Dask task.
    """

    n_train_strains: int = Field(default=500, ge=1)
    n_test_strains: int = Field(default=200, ge=1)
    max_strain: float = Field(default=0.05, gt=0, lt=0.5)
    strain_mode: Literal["unconstrained", "symmetry"] = "unconstrained"
    wavelength: str | float = "CuKa"
    two_theta_range: tuple[float, float] = (10.0, 80.0)
    debye_waller: bool = False
    materials_per_chunk: int = Field(default=1, ge=1)

    @field_validator("two_theta_range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0 <= lo < hi <= 180:
            raise ValueError(f"two_theta_range {value!r} must satisfy 0 <= min < max <= 180")
        return value

    @field_validator("wavelength")
    @classmethod
    def _wavelength(cls, value: str | float) -> str | float:
        if isinstance(value, str):
            from pymatgen.analysis.diffraction.xrd import WAVELENGTHS

            if value not in WAVELENGTHS:
                raise ValueError(f"wavelength {value!r} is not one of {sorted(WAVELENGTHS)}")
        elif value <= 0:
            raise ValueError(f"wavelength {value!r} must be positive (angstrom)")
        return value

    @property
    def wavelength_angstrom(self) -> float:
        """The wavelength in angstrom."""
        if isinstance(self.wavelength, str):
            from pymatgen.analysis.diffraction.xrd import WAVELENGTHS

            return float(WAVELENGTHS[self.wavelength])
        return float(self.wavelength)


class SubsetConfig(_Frozen):
    """A named COD subset: where it comes from, what is kept, how it is sampled.

    Attributes:
        description: one line for people.
        source: ``cod`` (REST API at ``cod_url`` or the settings' URL), ``mirror`` (a
            directory of CIFs at ``mirror_dir``), or ``package`` (the COD CIFs shipped by
            the ``crystals`` package: offline).
        cod_url: base URL of COD for this subset (else ``XRDPIPE_COD_URL``).
        mirror_dir: a directory of COD CIFs, flat or in COD's rsync layout.
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
    source: Literal["cod", "mirror", "package"] = "cod"
    cod_url: str | None = None
    mirror_dir: Path | None = None
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
        return self

    def fingerprint(self) -> str:
        """A short hash of the whole resolved subset config."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


class PhaseFractionPreset(_Frozen):
    """How the phase-fraction CNN (paper 002) is trained: a named preset of ``catalog.yaml``.

    Attributes:
        width: filter and hidden-size multiplier of the network (paper: 1.0, ~30 M params).
        fc_sizes: hidden fully connected sizes at width 1.
        batch_size: mixtures per step (paper: 512).
        lr: Adam learning rate (paper: 2e-4).
        weight_decay: decoupled weight decay (paper: 0, plain Adam).
        lr_schedule: ``constant`` (paper) or ``cosine``.
        epochs: epochs (paper: 3000).
        epoch_size: mixtures per epoch; ``None`` = paper 002's definition, the training
            part of the training strains times N (0.6 x 500 x N).
        max_minutes: wall-clock budget of the training loop (``None``: none).
        early_stopping_patience: epochs without validation improvement (``None``: never).
        n_validation: fixed validation mixtures from the 40 % validation strains.
        n_test: fixed test mixtures from the held-out test strains (paper: 10,000).
        fraction_mode: ``intensity`` (paper 002) or ``weight`` (see ``MixtureConfig``).
        phase_draw: ``pool`` (paper) or ``distinct``.
        train_fraction: share of the training strains that trains (paper: 0.6).
        grad_clip: gradient-norm clip (``None``: none, as in the paper).
        device: ``auto``, ``cpu``, ``cuda``...
        num_threads: torch CPU threads during training (``None``: as is).
    """

    width: float = Field(default=1.0, gt=0)
    fc_sizes: tuple[int, ...] = (1536, 1024)
    batch_size: int = Field(default=512, ge=2)
    lr: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    epochs: int = Field(default=3000, ge=1)
    epoch_size: int | None = Field(default=None, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    early_stopping_patience: int | None = Field(default=None, ge=1)
    n_validation: int = Field(default=2048, ge=1)
    n_test: int = Field(default=10000, ge=1)
    fraction_mode: FractionMode = "intensity"
    phase_draw: Literal["pool", "distinct"] = "pool"
    train_fraction: float = Field(default=0.6, gt=0, lt=1)
    grad_clip: float | None = Field(default=None, gt=0)
    device: str = "auto"
    num_threads: int | None = Field(default=None, ge=1)

    @field_validator("fraction_mode", mode="before")
    @classmethod
    def _renamed_mode(cls, value: Any) -> Any:
        return fraction_mode_name(value)


ACNN_VARIANTS = ("position_channel", "paper", "binned")
"""a-CNN variants: ``paper`` = paper 000's bare network (global average pooling),
``position_channel`` = the same plus a two-theta coordinate input channel (CoordConv), and
``binned`` = the paper's convolutions with the average pooled over ``pool_bins`` equal
two-theta windows instead of the whole range (the dense layer sees where features are)."""

ACNNVariant = Literal["position_channel", "paper", "binned"]


class ClassifierPreset(_Frozen):
    """How the a-CNN classifier (paper 000) is trained: a named preset of ``catalog.yaml``.

    Attributes:
        variants: a-CNN variants trained on the same split, in order; the first is the one
            logged and registered, the others are reported beside it (see ``ACNN_VARIANTS``).
        batch_size: patterns per step (paper: 128).
        lr: Adam learning rate.
        epochs: most epochs (one epoch = one pass over the training patterns).
        early_stopping_patience: epochs without validation improvement (paper: early stopping).
        max_minutes: wall-clock budget of each variant's training loop (``None``: none).
        loss: ``cross_entropy`` or ``bce_softmax`` (paper 000's wording).
        augment: apply paper 000's augmentations (scale, eliminate, shift) to training batches.
        augmentation: their probabilities and ranges.
        max_train_strains: use at most this many training strain conditions per material
            (``None``: all; the validation strains are taken from them).
        validation_fraction: share of the training strains (protocol ``strain``) or of the
            training materials (protocol ``material``) held out for early stopping.
        test_material_fraction: share of each class's materials held out (protocol ``material``).
        min_materials_per_class: a space group is a class only with at least this many materials.
        rf_bins: points the random-forest baseline sees (patterns binned by averaging).
        rf_trees: trees of the random-forest baseline (0: no baseline).
        device: ``auto``, ``cpu``, ``cuda``...
        num_threads: torch CPU threads during training (``None``: as is).
        pool_bins: two-theta windows of the ``binned`` variant's pooling.
        lr_schedule: ``constant`` (paper 000) or ``cosine`` (by epochs or ``max_minutes``).
        ema_decay: validate, keep and register an exponential moving average of the weights
            with this decay per step (``None``: the raw weights, as in paper 000).
    """

    variants: tuple[ACNNVariant, ...] = Field(default=("position_channel", "paper"), min_length=1)
    pool_bins: int = Field(default=32, ge=2)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    batch_size: int = Field(default=128, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    epochs: int = Field(default=200, ge=1)
    early_stopping_patience: int | None = Field(default=10, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)
    loss: Literal["cross_entropy", "bce_softmax"] = "cross_entropy"
    augment: bool = True
    augmentation: AugmentConfig = AugmentConfig()
    max_train_strains: int | None = Field(default=None, ge=2)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_material_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_materials_per_class: int = Field(default=5, ge=1)
    rf_bins: int = Field(default=450, ge=8)
    rf_trees: int = Field(default=200, ge=0)
    device: str = "auto"
    num_threads: int | None = Field(default=None, ge=1)


class Presets(_Frozen):
    """Named training presets (``cpu``, ``paper``, ...) of each model."""

    phase_fractions: dict[str, PhaseFractionPreset] = Field(default_factory=dict)
    classifier: dict[str, ClassifierPreset] = Field(default_factory=dict)


SubsetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


class Catalog(_Frozen):
    """The whole data catalog: named COD subsets and the training presets."""

    version: Literal[1] = 1
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


class Settings(BaseSettings):
    """Site settings, read from ``XRDPIPE_*`` environment variables.

    Attributes:
        data_dir: where every manifest and store goes (default ``data/`` under the cwd).
        catalog: path of ``catalog.yaml`` (default: ``./catalog.yaml`` if present, else the
            catalog installed with the package).
        cod_url: base URL of COD's REST API.
        mirror_dir: if set, every ``cod`` subset reads this local mirror instead of HTTP.
        dask_address: address of an existing Dask scheduler (else a LocalCluster).
        dask_workers: worker processes of the LocalCluster (default: one per core).
        mlflow_tracking_uri: MLflow tracking URI (default: SQLite under ``data_dir``).
        cod_min_interval_s: polite minimum interval between COD requests.
        cod_concurrency: concurrent COD downloads.
        cod_timeout_s: timeout of one COD request.
        cod_retries: retries of one COD request (timeouts, 5xx, 429).
        prefect_port: port of the local stack's Prefect server (``xrdpipe up``).
        mlflow_port: port of the local stack's MLflow server (``xrdpipe up``).
        store_root: an fsspec URL (or path) under which pattern stores go instead of the
            data directory (manifests, CIFs and records stay in the data directory).
    """

    model_config = SettingsConfigDict(env_prefix="XRDPIPE_", extra="ignore")

    data_dir: Path = Path("data")
    catalog: Path | None = None
    cod_url: str = "https://www.crystallography.net"
    mirror_dir: Path | None = None
    dask_address: str | None = None
    dask_workers: int | None = Field(default=None, ge=1)
    mlflow_tracking_uri: str | None = None
    cod_min_interval_s: float = Field(default=0.2, ge=0)
    cod_concurrency: int = Field(default=4, ge=1, le=32)
    cod_timeout_s: float = Field(default=30.0, gt=0)
    cod_retries: int = Field(default=4, ge=0)
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    store_root: str | None = None

    def subset_dir(self, subset: str) -> Path:
        """The folder of one subset's manifest, CIFs and stores."""
        return self.data_dir / subset

    def store_path(self, subset: str) -> Path | str:
        """Where a subset's ``patterns.zarr`` lives.

        ``<store_root>/<subset>/patterns.zarr`` when ``store_root`` (an fsspec URL such as
        ``s3://bucket/xrdpipe`` or ``file:///scratch/xrdpipe``) is set, else beside the
        subset's manifest in the data directory.
        """
        if self.store_root:
            return f"{self.store_root.rstrip('/')}/{subset}/patterns.zarr"
        return self.subset_dir(subset) / "patterns.zarr"

    def tracking_uri(self) -> str:
        """The MLflow tracking URI (SQLite file under the data directory by default)."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.data_dir / 'mlflow.db').resolve()}"


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid catalog {source}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "literal_error":
            allowed = err.get("ctx", {}).get("expected", "")
            msg = f"allowed values: {allowed}"
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        lines.append(f"  {where} = {shown}: {msg}")
    return "\n".join(lines)


def parse_catalog(data: dict[str, Any], source: str = "<dict>") -> Catalog:
    """Validate a catalog given as plain data (as loaded from YAML)."""
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def default_catalog_path() -> Path:
    """The catalog installed with the package."""
    return Path(str(resources.files("xrdpipe") / "catalog.yaml"))


def load_catalog(path: Path | str | None = None, settings: Settings | None = None) -> Catalog:
    """Load and validate ``catalog.yaml``.

    Order: the explicit ``path``, ``XRDPIPE_CATALOG``, ``./catalog.yaml``, the packaged one.
    Relative ``mirror_dir`` values are resolved against the catalog's folder.
    """
    settings = settings or Settings()
    if path is None:
        path = settings.catalog
    if path is None:
        local = Path("catalog.yaml")
        path = local if local.is_file() else default_catalog_path()
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
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
            sub = sub.model_copy(update={"mirror_dir": (base / sub.mirror_dir).resolve()})
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
