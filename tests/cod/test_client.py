"""The COD client against a real COD-shaped HTTP server on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from tests.cod_server import CodTestServer
from xrdpipe import __version__
from xrdpipe.cod.cache import LEDGER_NAME
from xrdpipe.cod.client import CodClient, CodRecord, validate_cod_id
from xrdpipe.config import CodQuery, Settings
from xrdpipe.errors import CodError, CodUnavailableError, InvalidCodIdError

IDS = ["1000023", "1000035", "1000039", "1000049"]
CIF = "/cod/{}.cif"


def make_client(server: CodTestServer, **kw: object) -> CodClient:
    options: dict[str, object] = dict(
        min_interval_s=0.0, concurrency=4, timeout_s=0.3, retries=2, backoff_s=0.01
    )
    options.update(kw)
    return CodClient(server.url, **options)  # type: ignore[arg-type]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- ids and records ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1000065", 1000065, "1", "999999999"])
def test_valid_ids(value: object) -> None:
    assert validate_cod_id(value) == str(value)


@pytest.mark.parametrize(
    "value",
    [
        "../1000000",
        "",
        "1000065.cif",
        " 1000065",
        "1000065\n",
        "1234567890",
        -5,
        True,
        1.5,
        None,
        "١٢٣",
    ],  # fmt: skip
)
def test_invalid_ids_name_the_value(value: object) -> None:
    with pytest.raises(InvalidCodIdError, match="COD id"):
        validate_cod_id(value)


def test_record_from_row_handles_strings_and_nulls() -> None:
    row = {
        "file": "1000035", "a": "9.699(3)", "b": 8.844, "c": None, "alpha": "90",
        "vol": "432.5", "sg": "C 1 2/c 1", "sgHall": None, "formula": "- Al.34 O6 Si1.82 -",
        "nel": "3", "mineral": "Augite", "commonname": "", "year": "1969", "doi": None,
    }  # fmt: skip
    record = CodRecord.from_row(row)
    assert record.cod_id == "1000035"
    assert record.formula == "Al.34 O6 Si1.82"
    assert record.a == pytest.approx(9.699) and record.b == pytest.approx(8.844)
    assert record.c is None and record.alpha == 90.0 and record.volume == pytest.approx(432.5)
    assert record.n_elements == 3 and record.year == 1969
    assert record.common_name is None and record.space_group_hall is None
    with pytest.raises(CodError, match="no 'file'"):
        CodRecord.from_row({"a": 1.0})
    with pytest.raises(InvalidCodIdError):
        CodRecord.from_row({"file": "../etc"})


def test_from_settings_uses_the_site_settings() -> None:
    settings = Settings(cod_url="http://x.invalid", cod_concurrency=3, cod_retries=1)
    client = CodClient.from_settings(settings)
    assert (client.base_url, client.concurrency, client.retries) == ("http://x.invalid", 3, 1)
    assert CodClient.from_settings(settings, base_url="http://y.invalid/").base_url == (
        "http://y.invalid"
    )


# -- search ------------------------------------------------------------------------------


def test_search_by_element_returns_only_rows_with_it(cod_server: CodTestServer) -> None:
    records = make_client(cod_server).search(CodQuery(elements=("Fe",)))
    index = json.loads((cod_server.sample_dir / "index.json").read_text())
    expected = {r["file"] for r in index if "Fe" in re.findall(r"[A-Z][a-z]?", r["formula"] or "")}
    assert expected and {r.cod_id for r in records} == expected
    assert all("Fe" in re.findall(r"[A-Z][a-z]?", r.formula) for r in records)
    assert len(records) < len(index)
    assert cod_server.queries[-1]["el1"] == "Fe" and cod_server.queries[-1]["format"] == "json"


def test_search_by_ids_and_element_count(cod_server: CodTestServer) -> None:
    client = make_client(cod_server)
    records = client.search(CodQuery(ids=("1000023", "1000035", "9999999")))
    assert [r.cod_id for r in records] == ["1000023", "1000035"]
    assert records[0].formula == "Cu3 Fe4 O24 P6" and records[0].volume == pytest.approx(406.34)
    binary = client.search(CodQuery(min_elements=2, max_elements=2))
    assert binary and all(r.n_elements == 2 for r in binary)


def test_search_splits_long_id_lists(cod_server: CodTestServer) -> None:
    index = json.loads((cod_server.sample_dir / "index.json").read_text())
    ids = tuple(r["file"] for r in index)[:150]
    records = make_client(cod_server).search(CodQuery(ids=ids))
    assert [r.cod_id for r in records] == list(ids)
    assert cod_server.count("/cod/result") == 2


def test_search_html_page_is_a_clear_error(cod_server: CodTestServer) -> None:
    cod_server.fail("/cod/result", "html", times=None)
    with pytest.raises(CodError, match=r"did not return JSON.*Too many results") as info:
        make_client(cod_server).search(CodQuery(elements=("O",)))
    assert cod_server.url in str(info.value) and "el1=O" in str(info.value)
    assert cod_server.count("/cod/result") == 1  # not retried


def test_search_500_then_success_is_retried(cod_server: CodTestServer) -> None:
    cod_server.fail("/cod/result", "status", times=2, status=503)
    records = make_client(cod_server).search(CodQuery(ids=("1000023",)))
    assert [r.cod_id for r in records] == ["1000023"]
    assert cod_server.count("/cod/result") == 3


def test_search_429_honours_retry_after(cod_server: CodTestServer) -> None:
    cod_server.fail("/cod/result", "retry_after", times=1, retry_after=1)
    start = time.monotonic()
    records = make_client(cod_server).search(CodQuery(ids=("1000023",)))
    assert time.monotonic() - start >= 1.0
    assert len(records) == 1 and cod_server.count("/cod/result") == 2
    times = cod_server.times["/cod/result"]
    assert times[1] - times[0] >= 1.0


def test_slow_search_is_retried_then_succeeds(cod_server: CodTestServer) -> None:
    cod_server.fail("/cod/result", "delay", times=1, delay_s=1.0)
    records = make_client(cod_server).search(CodQuery(ids=("1000023",)))
    assert len(records) == 1 and cod_server.count("/cod/result") == 2


def test_always_slow_search_raises_unavailable(cod_server: CodTestServer) -> None:
    cod_server.fail("/cod/result", "delay", times=None, delay_s=1.0)
    start = time.monotonic()
    with pytest.raises(CodUnavailableError, match=r"after 3 attempts.*timed out") as info:
        make_client(cod_server, retries=2).search(CodQuery(ids=("1000023",)))
    assert "/cod/result?id=1000023" in str(info.value)
    assert cod_server.count("/cod/result") == 3
    assert time.monotonic() - start < 3.0  # each attempt stopped at the 0.3 s timeout


def test_search_500_forever_names_the_last_error(cod_server: CodTestServer) -> None:
    cod_server.fail("/cod/result", "status", times=None, status=500)
    with pytest.raises(CodUnavailableError, match=r"after 2 attempts.*HTTP 500"):
        make_client(cod_server, retries=1).search(CodQuery(ids=("1000023",)))
    assert cod_server.count("/cod/result") == 2


def test_search_4xx_is_not_retried(cod_server: CodTestServer) -> None:
    cod_server.fail("/cod/result", "status", times=None, status=400)
    with pytest.raises(CodError, match="HTTP 400") as info:
        make_client(cod_server).search(CodQuery(ids=("1000023",)))
    assert not isinstance(info.value, CodUnavailableError)
    assert cod_server.count("/cod/result") == 1


# -- downloads ---------------------------------------------------------------------------


def test_download_writes_cifs_ledger_and_user_agent(
    cod_server: CodTestServer, tmp_path: Path
) -> None:
    seen: list[str] = []
    results = make_client(cod_server).download(
        IDS, tmp_path, progress=lambda r: seen.append(r.cod_id)
    )
    assert [r.cod_id for r in results] == IDS and sorted(seen) == sorted(IDS)
    for result in results:
        assert result.status == "downloaded" and result.error is None
        assert result.path == tmp_path / f"{result.cod_id}.cif"
        original = cod_server.sample_dir / "cif" / f"{result.cod_id}.cif"
        assert result.path.read_bytes() == original.read_bytes()
        assert result.sha256 == sha256(original)
        assert result.source_url == f"{cod_server.url}/cod/{result.cod_id}.cif"
        assert result.fetched_at.endswith("+00:00")
    ledger = [json.loads(line) for line in (tmp_path / LEDGER_NAME).read_text().splitlines()]
    assert [row["cod_id"] for row in ledger] == sorted(IDS, key=int)
    assert all(row["bytes"] == (tmp_path / f"{row['cod_id']}.cif").stat().st_size for row in ledger)
    agent = cod_server.headers[CIF.format(IDS[0])]["User-Agent"]
    assert agent.startswith(f"xrdpipe/{__version__}") and "http" in agent
    assert not list(tmp_path.glob(".*.part"))


def test_resume_requests_only_missing_or_corrupt(cod_server: CodTestServer, tmp_path: Path) -> None:
    client = make_client(cod_server)
    first = client.download(IDS, tmp_path)
    assert cod_server.total() == 4

    again = client.download(IDS, tmp_path)
    assert [r.status for r in again] == ["cached"] * 4
    assert [r.fetched_at for r in again] == [r.fetched_at for r in first]
    assert cod_server.total() == 4  # no request at all

    (tmp_path / f"{IDS[1]}.cif").unlink()
    corrupt = tmp_path / f"{IDS[2]}.cif"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # a partial file from a crash
    third = client.download(IDS, tmp_path)
    assert [r.status for r in third] == ["cached", "downloaded", "downloaded", "cached"]
    assert cod_server.requests == {CIF.format(i): (2 if i in IDS[1:3] else 1) for i in IDS}
    assert sha256(corrupt) == first[2].sha256


def test_invalid_id_makes_no_request(cod_server: CodTestServer, tmp_path: Path) -> None:
    with pytest.raises(InvalidCodIdError, match=r"\.\./1000000"):
        make_client(cod_server).download(["1000023", "../1000000"], tmp_path)
    assert cod_server.total() == 0
    assert not (tmp_path.parent / "1000000.cif").exists()


def test_404_fails_once_and_others_go_on(cod_server: CodTestServer, tmp_path: Path) -> None:
    results = make_client(cod_server).download(["9999999", "1000023"], tmp_path)
    assert results[0].status == "failed" and results[0].error == "not found"
    assert results[0].path is None and not (tmp_path / "9999999.cif").exists()
    assert results[1].status == "downloaded"
    assert cod_server.count(CIF.format("9999999")) == 1


def test_500_then_success_download(cod_server: CodTestServer, tmp_path: Path) -> None:
    cod_server.fail(CIF.format("1000023"), "status", times=2, status=500)
    [result] = make_client(cod_server).download(["1000023"], tmp_path)
    assert result.status == "downloaded"
    assert cod_server.count(CIF.format("1000023")) == 3


def test_truncated_cif_is_refetched_when_it_heals(
    cod_server: CodTestServer, tmp_path: Path
) -> None:
    cod_server.fail(CIF.format("1000023"), "truncate", times=1)
    cod_server.fail(CIF.format("1000035"), "cut", times=1, keep_bytes=500)
    results = make_client(cod_server).download(["1000023", "1000035"], tmp_path)
    assert [r.status for r in results] == ["downloaded", "downloaded"]
    original = cod_server.sample_dir / "cif" / "1000023.cif"
    assert results[0].sha256 == sha256(original)
    assert cod_server.count(CIF.format("1000023")) == 2
    assert cod_server.count(CIF.format("1000035")) == 2


def test_always_truncated_cif_fails_and_keeps_no_file(
    cod_server: CodTestServer, tmp_path: Path
) -> None:
    client = make_client(cod_server, retries=2)
    client.download(["1000023"], tmp_path)  # a good copy first, then it goes bad upstream
    (tmp_path / "1000023.cif").write_bytes(b"data_1000023\n_cell_length_a 1\n")  # corrupt
    cod_server.fail(CIF.format("1000023"), "truncate", times=None)
    [result] = client.download(["1000023"], tmp_path)
    assert result.status == "failed" and "not a CIF" in (result.error or "")
    assert "after 3 attempts" in (result.error or "")
    assert not (tmp_path / "1000023.cif").exists()
    assert cod_server.count(CIF.format("1000023")) == 1 + 3
    ledger = (tmp_path / LEDGER_NAME).read_text()
    assert "1000023" not in ledger


def test_always_slow_download_fails_with_timeout(cod_server: CodTestServer, tmp_path: Path) -> None:
    cod_server.fail(CIF.format("1000023"), "delay", times=None, delay_s=1.0)
    results = make_client(cod_server, retries=1).download(["1000023", "1000035"], tmp_path)
    assert results[0].status == "failed" and "timed out" in (results[0].error or "")
    assert results[1].status == "downloaded"
    assert cod_server.count(CIF.format("1000023")) == 2


def test_min_interval_spaces_request_starts_across_threads(
    cod_server: CodTestServer, tmp_path: Path
) -> None:
    make_client(cod_server, min_interval_s=0.1, concurrency=4).download(IDS, tmp_path)
    starts = sorted(t for i in IDS for t in cod_server.times[CIF.format(i)])
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == 4 and min(gaps) >= 0.09
