from pathlib import Path

import pytest
import yaml

from xrdpipe.config import (
    CodQuery,
    Settings,
    default_catalog_path,
    load_catalog,
    parse_catalog,
    resolve_subset,
)
from xrdpipe.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _catalog_dict() -> dict:
    data = yaml.safe_load(default_catalog_path().read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def test_shipped_catalog_has_the_three_subsets():
    catalog = load_catalog(REPO / "catalog.yaml")
    assert {"demo", "hoefer2024", "acnn"} <= set(catalog.subsets)
    hoefer = catalog.subset("hoefer2024")
    assert hoefer.sample_size == 50
    assert hoefer.simulation.n_train_strains == 500
    assert hoefer.simulation.n_test_strains == 200
    assert hoefer.simulation.max_strain == 0.05
    assert hoefer.simulation.strain_mode == "unconstrained"
    assert catalog.subset("acnn").stratify_by == "lattice_system"
    assert catalog.subset("acnn").simulation.strain_mode == "symmetry"
    assert catalog.subset("demo").source == "package"


def test_top_level_catalog_is_the_packaged_one():
    assert (REPO / "catalog.yaml").read_text() == default_catalog_path().read_text()


def test_a_key_written_twice_is_refused_with_its_line(tmp_path):
    text = default_catalog_path().read_text()
    pasted = text.replace("  hoefer2024:\n", "  demo:\n    source: package\n  hoefer2024:\n", 1)
    (tmp_path / "catalog.yaml").write_text(pasted)
    with pytest.raises(ConfigError, match=r"found the key 'demo' twice") as err:
        load_catalog(tmp_path / "catalog.yaml")
    lines = pasted.splitlines()
    second = lines.index("  demo:", lines.index("  demo:") + 1) + 1  # 1-based, as YAML says
    assert f"line {second}," in str(err.value)
    # an anchor's keys may still be overridden (merge keys are not duplicates)
    assert load_catalog(default_catalog_path()).subset("acnn").filters.exclude_organic is False


def test_unknown_key_names_the_key():
    data = _catalog_dict()
    data["subsets"]["demo"]["filters"]["max_atoms"] = 10
    with pytest.raises(ConfigError) as err:
        parse_catalog(data)
    assert "subsets.demo.filters.max_atoms" in str(err.value)
    assert "unknown key" in str(err.value)


def test_bad_literal_names_value_and_allowed():
    data = _catalog_dict()
    data["subsets"]["hoefer2024"]["simulation"]["strain_mode"] = "isotropic"
    with pytest.raises(ConfigError) as err:
        parse_catalog(data)
    msg = str(err.value)
    assert "subsets.hoefer2024.simulation.strain_mode" in msg
    assert "'isotropic'" in msg
    assert "'unconstrained'" in msg and "'symmetry'" in msg


def test_bad_wavelength_and_range_are_named():
    data = _catalog_dict()
    data["subsets"]["demo"]["simulation"]["wavelength"] = "CuKz"
    data["subsets"]["demo"]["simulation"]["two_theta_range"] = [80, 10]
    with pytest.raises(ConfigError) as err:
        parse_catalog(data)
    msg = str(err.value)
    assert "wavelength" in msg and "CuKz" in msg and "CuKa" in msg
    assert "two_theta_range" in msg


def test_unknown_subset_lists_allowed():
    catalog = load_catalog(REPO / "catalog.yaml")
    with pytest.raises(ConfigError, match="allowed: .*'demo'"):
        catalog.subset("nope")


def test_query_params_and_id_validation():
    query = CodQuery(
        elements=("Fe", "O"),
        exclude_elements=("C",),
        max_elements=3,
        cell={"amax": 10.0},
        ids=("1000000",),
    )
    assert query.to_params() == {
        "el1": "Fe",
        "el2": "O",
        "nel1": "C",
        "strictmax": "3",
        "id": "1000000",
        "amax": "10",
    }
    with pytest.raises(ValueError, match="digits"):
        CodQuery(ids=("../1000000",))


def test_settings_from_env_and_mirror_override(tmp_path, monkeypatch):
    monkeypatch.setenv("XRDPIPE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("XRDPIPE_COD_URL", "http://127.0.0.1:9")
    settings = Settings()
    assert settings.data_dir == tmp_path / "d"
    assert settings.cod_url == "http://127.0.0.1:9"
    assert settings.tracking_uri().startswith("sqlite:///")
    catalog = load_catalog(REPO / "catalog.yaml", settings)
    sub = resolve_subset(catalog, "hoefer2024", settings, mirror_dir=tmp_path)
    assert sub.source == "mirror" and sub.mirror_dir == tmp_path.resolve()
    with pytest.raises(ConfigError, match="not a directory"):
        resolve_subset(catalog, "hoefer2024", settings, mirror_dir=tmp_path / "missing")
    sub = resolve_subset(catalog, "hoefer2024", settings, cod_url="http://127.0.0.1:1")
    assert sub.cod_url == "http://127.0.0.1:1"
