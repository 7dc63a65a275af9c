"""What every flow does first: read the settings and the catalog once, at the edge."""

from __future__ import annotations

from xrdpipe.config import Settings, SubsetConfig, load_catalog, resolve_subset


def resolve(
    subset: str,
    mirror_dir: str | None = None,
    cod_url: str | None = None,
    catalog: str | None = None,
) -> tuple[Settings, SubsetConfig]:
    """The site settings and the subset's validated config, with source overrides applied."""
    settings = Settings()
    config = load_catalog(catalog, settings)
    return settings, resolve_subset(
        config, subset, settings, mirror_dir=mirror_dir, cod_url=cod_url
    )
