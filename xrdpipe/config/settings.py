"""Site settings: ``XRDPIPE_*`` environment variables (data directory, COD, Dask, MLflow)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
