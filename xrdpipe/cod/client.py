"""The COD REST client: search (`/cod/result`) and CIF downloads (`/cod/<id>.cif`).

The only code in xrdpipe that talks HTTP to the Crystallography Open Database. It is
polite and resilient:

1. Every request carries a User-Agent naming xrdpipe, and request *starts* are spaced by
   at least ``min_interval_s`` across all threads of one client.
2. Timeouts, transport errors, HTTP 5xx and 429 are retried ``retries`` times with
   exponential backoff and jitter (``backoff_s * 2**attempt``, times 0.5..1); a
   ``Retry-After`` (seconds or HTTP date) is honoured and pauses the whole client. 404 and
   other 4xx are not retried. When the retries are spent, :class:`CodUnavailableError`
   names the URL, the attempts and the last error.
3. Downloads run on a bounded thread pool and go through :mod:`xrdpipe.cod.cache`: atomic
   writes, a sha256 provenance ledger, resume without requests for files already there.
   A body that is obviously not a CIF (empty, no ``data_``) counts as a retryable failure.
   One bad id gives a ``failed`` result and never stops the others.

COD itself publishes no rate limit; please cite it (Gražulis et al., Nucleic Acids Res.
2012) in anything published from its data.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from xrdpipe import __version__
from xrdpipe.cod.cache import (
    CifCache,
    DownloadResult,
    cif_problem,
    unique_ids,
    validate_cod_id,
)
from xrdpipe.config import CodQuery, Settings
from xrdpipe.errors import CodError, CodNotFoundError, CodUnavailableError

__all__ = ["CodClient", "CodRecord", "DownloadResult", "validate_cod_id"]

PROJECT_URL = "https://github.com/xrdpipe/xrdpipe"
"""Named in the default User-Agent so COD's operators can tell who is asking."""

DEFAULT_USER_AGENT = f"xrdpipe/{__version__} (+{PROJECT_URL})"
"""The User-Agent every request sends unless told otherwise."""

MAX_BACKOFF_S = 60.0
"""Upper bound of one backoff sleep, whatever the attempt number."""

MAX_RETRY_AFTER_S = 300.0
"""A ``Retry-After`` longer than this gives up at once instead of sleeping for it."""

ID_BATCH = 100
"""Ids per search request when a query lists ids (keeps URLs well under server limits)."""

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def _float(value: object) -> float | None:
    """A float from a COD value: number, ``"7.8783"``, ``"7.8783(5)"``; ``None``, ``"?"``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    match = _NUMBER.match(str(value))
    return float(match.group(1)) if match else None


def _int(value: object) -> int | None:
    number = _float(value)
    return int(number) if number is not None else None


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class CodRecord:
    """One row of a COD search, as typed values.

    Attributes:
        cod_id: the COD id (digits).
        formula: Hill formula without COD's surrounding dashes, e.g. ``"Na Cl"``.
        a: cell length a (angstrom); likewise ``b``, ``c``.
        alpha: cell angle alpha (degrees); likewise ``beta``, ``gamma``.
        volume: cell volume (cubic angstrom).
        space_group: Hermann-Mauguin symbol as written in the CIF (COD's ``sg``).
        space_group_hall: Hall symbol (COD's ``sgHall``).
        n_elements: number of distinct elements (COD's ``nel``).
        mineral: mineral name.
        common_name: common name.
        year: publication year.
        doi: DOI of the publication.
    """

    cod_id: str
    formula: str = ""
    a: float | None = None
    b: float | None = None
    c: float | None = None
    alpha: float | None = None
    beta: float | None = None
    gamma: float | None = None
    volume: float | None = None
    space_group: str | None = None
    space_group_hall: str | None = None
    n_elements: int | None = None
    mineral: str | None = None
    common_name: str | None = None
    year: int | None = None
    doi: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CodRecord:
        """Parse one row of ``/cod/result?format=json`` (numbers may come as strings).

        Raises:
            CodError: the row has no valid ``file`` (COD id).
        """
        if not isinstance(row, dict) or "file" not in row:
            raise CodError(f"COD search row {row!r:.200} has no 'file' (COD id)")
        return cls(
            cod_id=validate_cod_id(str(row["file"]).strip()),
            formula=(_text(row.get("formula")) or "").strip("-").strip(),
            a=_float(row.get("a")),
            b=_float(row.get("b")),
            c=_float(row.get("c")),
            alpha=_float(row.get("alpha")),
            beta=_float(row.get("beta")),
            gamma=_float(row.get("gamma")),
            volume=_float(row.get("vol")),
            space_group=_text(row.get("sg")),
            space_group_hall=_text(row.get("sgHall")),
            n_elements=_int(row.get("nel")),
            mineral=_text(row.get("mineral")),
            common_name=_text(row.get("commonname")),
            year=_int(row.get("year")),
            doi=_text(row.get("doi")),
        )


class _Pacer:
    """Spaces request starts by ``interval_s`` across threads; can pause everyone."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval_s
        if start > now:
            time.sleep(start - now)

    def defer(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def _retry_after_s(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    number = _float(value)
    if number is not None:
        return max(number, 0.0)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class CodClient:
    """A polite, retrying client of COD's REST API.

    Args:
        base_url: COD's base URL (``https://www.crystallography.net`` or a test server).
        user_agent: User-Agent header; the default names xrdpipe, its version and a URL.
        min_interval_s: minimum seconds between request starts, shared across threads.
        concurrency: worker threads (and connections) for downloads.
        timeout_s: timeout of one request (connect, read, write, pool), in seconds.
        retries: retries after the first attempt (timeouts, transport errors, 5xx, 429).
        backoff_s: base of the exponential backoff, in seconds.
    """

    def __init__(
        self,
        base_url: str = "https://www.crystallography.net",
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        min_interval_s: float = 0.2,
        concurrency: int = 4,
        timeout_s: float = 30.0,
        retries: int = 4,
        backoff_s: float = 1.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency {concurrency!r} must be at least 1")
        if retries < 0 or timeout_s <= 0 or min_interval_s < 0 or backoff_s < 0:
            raise ValueError(
                f"retries={retries!r}, timeout_s={timeout_s!r}, min_interval_s="
                f"{min_interval_s!r}, backoff_s={backoff_s!r}: retries, intervals and "
                "backoff must be >= 0 and the timeout > 0"
            )
        self.base_url = base_url.rstrip("/")
        self.user_agent = user_agent
        self.min_interval_s = min_interval_s
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._pacer = _Pacer(min_interval_s)

    @classmethod
    def from_settings(cls, settings: Settings, base_url: str | None = None) -> CodClient:
        """A client configured from the site settings (``XRDPIPE_COD_*``).

        Args:
            settings: the site settings.
            base_url: overrides ``settings.cod_url`` (e.g. a subset's ``cod_url``).
        """
        return cls(
            base_url or settings.cod_url,
            min_interval_s=settings.cod_min_interval_s,
            concurrency=settings.cod_concurrency,
            timeout_s=settings.cod_timeout_s,
            retries=settings.cod_retries,
        )

    def __repr__(self) -> str:
        return (
            f"CodClient({self.base_url!r}, concurrency={self.concurrency}, "
            f"timeout_s={self.timeout_s}, retries={self.retries})"
        )

    # -- URLs -------------------------------------------------------------------------

    @property
    def search_url(self) -> str:
        """The search endpoint."""
        return f"{self.base_url}/cod/result"

    def cif_url(self, cod_id: str | int) -> str:
        """The download URL of one CIF (the id is validated first)."""
        return f"{self.base_url}/cod/{validate_cod_id(cod_id)}.cif"

    # -- HTTP with retries ------------------------------------------------------------

    def _http(self) -> httpx.Client:
        return httpx.Client(
            headers={"User-Agent": self.user_agent},
            timeout=self.timeout_s,
            limits=httpx.Limits(max_connections=self.concurrency),
            follow_redirects=True,
        )

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_s * 2**attempt, MAX_BACKOFF_S) * random.uniform(0.5, 1.0)

    def _get(
        self,
        http: httpx.Client,
        url: str,
        params: dict[str, str] | None = None,
        check: Callable[[httpx.Response], str | None] | None = None,
    ) -> httpx.Response:
        """GET with retries; ``check`` may call a 200 response bad (retryable).

        Raises:
            CodNotFoundError: 404.
            CodError: another 4xx.
            CodUnavailableError: every attempt failed.
        """
        shown = str(httpx.URL(url, params=params)) if params else url
        attempts = self.retries + 1
        last_error = "no attempt made"
        for attempt in range(attempts):
            self._pacer.wait()
            wait = self._backoff(attempt)
            try:
                response = http.get(url, params=params)
            except httpx.TimeoutException as exc:
                last_error = f"timed out after {self.timeout_s:g} s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 429 or status >= 500:
                    last_error = f"HTTP {status} {response.reason_phrase}".rstrip()
                    retry_after = _retry_after_s(response)
                    if retry_after is not None:
                        if retry_after > MAX_RETRY_AFTER_S:
                            raise CodUnavailableError(
                                f"{shown}: {last_error} with Retry-After {retry_after:g} s, "
                                f"more than this client waits ({MAX_RETRY_AFTER_S:g} s)"
                            )
                        last_error += f" (Retry-After {retry_after:g} s)"
                        wait = max(wait, retry_after)
                        self._pacer.defer(retry_after)
                elif status == 404:
                    raise CodNotFoundError(f"{shown}: not found (HTTP 404)")
                elif status >= 400:
                    raise CodError(
                        f"{shown}: HTTP {status} {response.reason_phrase}; "
                        f"body starts {response.text[:200]!r}"
                    )
                else:
                    problem = check(response) if check else None
                    if problem is None:
                        return response
                    last_error = problem
            if attempt + 1 < attempts:
                time.sleep(wait)
        raise CodUnavailableError(
            f"COD did not deliver {shown} after {attempts} attempts; last error: {last_error}"
        )

    # -- search -----------------------------------------------------------------------

    def search(self, query: CodQuery) -> list[CodRecord]:
        """Entries matching ``query`` (COD's ``/cod/result?...&format=json``).

        A query with many ids is split into requests of :data:`ID_BATCH` ids. Rows are
        returned in COD's order, each id once.

        Raises:
            CodError: the answer is not a JSON list of rows (COD sends an HTML page when a
                search is over its cap), or a 4xx.
            CodUnavailableError: no answer after every retry.
        """
        params = query.to_params()
        params["format"] = "json"
        batches: list[dict[str, str]] = [params]
        if len(query.ids) > ID_BATCH:
            batches = [
                {**params, "id": ",".join(query.ids[i : i + ID_BATCH])}
                for i in range(0, len(query.ids), ID_BATCH)
            ]
        records: dict[str, CodRecord] = {}
        with self._http() as http:
            for batch in batches:
                response = self._get(http, self.search_url, batch)
                for row in self._rows(response):
                    record = CodRecord.from_row(row)
                    records.setdefault(record.cod_id, record)
        return list(records.values())

    @staticmethod
    def _rows(response: httpx.Response) -> list[dict[str, Any]]:
        url = str(response.request.url)
        text = response.text
        if not text.strip():
            return []  # no matches: COD may answer with an empty body
        try:
            rows = response.json()
        except ValueError as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise CodError(
                f"COD search {url} did not return JSON ({kind}; over COD's result cap, COD "
                f"sends an HTML error page); body starts {text[:200]!r}"
            ) from exc
        if not isinstance(rows, list):
            raise CodError(
                f"COD search {url} returned JSON {type(rows).__name__}, not a list of rows; "
                f"body starts {text[:200]!r}"
            )
        return rows

    # -- downloads --------------------------------------------------------------------

    def download(
        self,
        ids: Iterable[str | int],
        cif_dir: Path,
        progress: Callable[[DownloadResult], None] | None = None,
    ) -> list[DownloadResult]:
        """Download the CIFs of ``ids`` into ``cif_dir`` (``<cod_id>.cif``), resuming.

        Every id is validated before any request. Ids already in ``cif_dir`` with a sha256
        matching the provenance ledger are ``cached`` and cost no request.

        Args:
            ids: COD ids (duplicates are fetched once).
            cif_dir: the CIF folder (created if missing).
            progress: called once per id with its result, from the calling thread.

        Returns:
            One result per distinct id, in the order given.

        Raises:
            InvalidCodIdError: an id is not 1 to 9 digits (nothing is fetched).
        """
        wanted = unique_ids(ids)
        cache = CifCache(Path(cif_dir))
        results: dict[str, DownloadResult] = {}
        todo: list[str] = []
        for cod_id in wanted:
            hit = cache.cached(cod_id)
            if hit is None:
                todo.append(cod_id)
                continue
            results[cod_id] = hit
            if progress:
                progress(hit)
        if todo:
            with self._http() as http, ThreadPoolExecutor(self.concurrency) as pool:
                futures = [pool.submit(self._download_one, http, cache, i) for i in todo]
                for future in as_completed(futures):
                    result = future.result()
                    results[result.cod_id] = result
                    if progress:
                        progress(result)
        cache.ledger.compact()
        return [results[cod_id] for cod_id in wanted]

    def _download_one(self, http: httpx.Client, cache: CifCache, cod_id: str) -> DownloadResult:
        url = self.cif_url(cod_id)
        try:
            response = self._get(http, url, check=lambda r: cif_problem(r.content))
        except CodNotFoundError:
            return cache.fail(cod_id, "not found", url)
        except CodError as exc:
            return cache.fail(cod_id, str(exc), url)
        try:
            return cache.store(cod_id, response.content, url)
        except OSError as exc:
            return cache.fail(cod_id, f"cannot write CIF: {exc}", url)
