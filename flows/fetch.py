"""Prefect flow ``fetch``: query COD (or a mirror), download CIFs, write the structure manifest."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import resolve
from xrdpipe.cod.client import DownloadResult
from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.stages import fetch as fetch_stage

NETWORK_RETRIES = dict(retries=3, retry_delay_seconds=[2, 5, 15])


@task(name="find-candidates", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def find_candidates(subset: SubsetConfig, settings: Settings) -> fetch_stage.Candidates:
    candidates = fetch_stage.find_candidates(subset, settings)
    get_run_logger().info(
        "%d entries from %s, %d after formula rules",
        candidates.total,
        candidates.source,
        len(candidates.cod_ids),
    )
    return candidates


@task(name="download-cifs", cache_policy=NO_CACHE, **NETWORK_RETRIES)
def download_cifs(
    subset: SubsetConfig, settings: Settings, cod_ids: tuple[str, ...], cif_dir: Path
) -> list[DownloadResult]:
    logger = get_run_logger()
    done = [0]

    def progress(_: object) -> None:
        done[0] += 1
        if done[0] % 50 == 0 or done[0] == len(cod_ids):
            logger.info("CIFs: %d/%d", done[0], len(cod_ids))

    return fetch_stage.acquire_cifs(subset, settings, cod_ids, cif_dir, progress)


@task(name="build-manifest", cache_policy=NO_CACHE)
def build_manifest(
    subset_name: str,
    subset: SubsetConfig,
    candidates: fetch_stage.Candidates,
    downloads: list[DownloadResult],
    folder: Path,
):
    return fetch_stage.build_subset_manifest(
        subset_name, subset, candidates.source, downloads, folder, candidates.rejected
    )


@flow(name="fetch", log_prints=True)
def fetch(
    subset: str = "demo",
    mirror_dir: str | None = None,
    cod_url: str | None = None,
    catalog: str | None = None,
) -> dict:
    """Fetch one COD subset into ``<data>/<subset>/`` (manifest.parquet, quarantine.parquet, cif/).

    Args:
        subset: a subset name of ``catalog.yaml``.
        mirror_dir: read this local COD mirror instead of the subset's source.
        cod_url: query this COD base URL instead of the settings' one.
        catalog: path of another catalog file.
    """
    start = time.perf_counter()
    settings, config = resolve(subset, mirror_dir, cod_url, catalog)
    if config.source == "synthetic":  # no CIFs: the synthesize stage, on Dask
        report = fetch_stage.fetch_synthetic(subset, config, settings)
        get_run_logger().info(report.summary())
        return report.as_dict()
    folder = settings.subset_dir(subset)
    candidates = find_candidates(config, settings)
    downloads = download_cifs(config, settings, candidates.cod_ids, folder / "cif")
    kept, quarantine = build_manifest(subset, config, candidates, downloads, folder)
    report = fetch_stage.make_report(subset, candidates, downloads, kept, quarantine, folder, start)
    get_run_logger().info(report.summary())
    return report.as_dict()


if __name__ == "__main__":
    fetch()
