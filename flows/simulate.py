"""Prefect flow ``simulate``: strained single-phase peak lists of a subset, on Dask, into Zarr."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import resolve
from flows.fetch import fetch
from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.parallel import dask_client
from xrdpipe.stages.simulate import BlockReport, run_simulation


@task(name="simulate-patterns", cache_policy=NO_CACHE)
def simulate_patterns(
    subset_name: str, config: SubsetConfig, settings: Settings, overwrite: bool
) -> dict:
    logger = get_run_logger()
    folder = settings.subset_dir(subset_name)
    store = settings.store_path(subset_name)
    logger.info("simulating %r into %s", subset_name, store)

    def progress(block: BlockReport, done: int, total: int) -> None:
        logger.info(
            "block %d/%d: materials %d-%d, %d simulated, %d quarantined, %.1f s",
            done,
            total,
            block.start,
            block.stop - 1,
            block.simulated,
            len(block.quarantined),
            block.seconds,
        )

    with dask_client(settings) as client:
        logger.info("Dask scheduler: %s", client.scheduler.address)
        report = run_simulation(
            folder, store, config, client=client, progress=progress, overwrite=overwrite
        )
    logger.info("%s", report)
    return {
        "store": str(store),
        "simulated": report.simulated,
        "blocks_computed": report.blocks_submitted,
        "blocks_skipped": report.blocks_skipped,
        "quarantined": report.quarantined,
    }


@task(name="render-profiles", cache_policy=NO_CACHE)
def render_profiles(subset_name: str, config: SubsetConfig, settings: Settings) -> str:
    from xrdpipe.patterns.datasets import render_store_profiles

    logger = get_run_logger()
    store = settings.store_path(subset_name)

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            logger.info("profiles: block %d/%d", done, total)

    key = render_store_profiles(store, config.profile, progress=progress)
    logger.info("single-phase profiles in %s/%s", store, key)
    return key


@flow(name="simulate", log_prints=True)
def simulate(
    subset: str = "demo",
    overwrite: bool = False,
    mirror_dir: str | None = None,
    cod_url: str | None = None,
    catalog: str | None = None,
) -> dict:
    """Simulate a subset's strained peak lists into ``<data>/<subset>/patterns.zarr``.

    Fetches the subset first when its manifest is missing. Resumable: a rerun computes
    only the materials not yet completed; a rerun with another configuration refuses to
    mix results unless ``overwrite`` is true.

    Args:
        subset: a subset name of ``catalog.yaml``.
        overwrite: replace a store made with another configuration.
        mirror_dir: read this local COD mirror instead of the subset's source.
        cod_url: query this COD base URL instead of the settings' one.
        catalog: path of another catalog file.
    """
    settings, config = resolve(subset, mirror_dir, cod_url, catalog)
    if not (settings.subset_dir(subset) / "manifest.parquet").is_file():
        get_run_logger().info("no manifest for %r yet: fetching it first", subset)
        fetch(subset=subset, mirror_dir=mirror_dir, cod_url=cod_url, catalog=catalog)
    result = simulate_patterns(subset, config, settings, overwrite)
    result["profiles"] = render_profiles(subset, config, settings)
    return result


if __name__ == "__main__":
    simulate()
