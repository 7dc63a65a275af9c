"""Prefect flow ``simulate``: strained single-phase peak lists of a subset, on Dask, into Zarr."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.common import resolve
from flows.fetch import fetch
from xrdpipe.config import Settings, SubsetConfig
from xrdpipe.stages.simulate import BlockReport, simulate_subset


@task(name="simulate-patterns", cache_policy=NO_CACHE)
def simulate_patterns(
    subset_name: str, config: SubsetConfig, settings: Settings, overwrite: bool
) -> dict:
    logger = get_run_logger()
    logger.info("simulating %r into %s", subset_name, settings.store_path(subset_name))

    def on_block(block: BlockReport, done: int, total: int) -> None:
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

    def on_profiles(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            logger.info("profiles: block %d/%d", done, total)

    simulation = simulate_subset(
        settings,
        subset_name,
        config,
        overwrite=overwrite,
        on_block=on_block,
        on_profiles=on_profiles,
        log=logger.info,
    )
    logger.info("%s", simulation.summary())
    return simulation.as_dict()


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
    mix results unless ``overwrite`` is true. Then renders the single-phase profiles.

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
    return simulate_patterns(subset, config, settings, overwrite)


if __name__ == "__main__":
    simulate()
