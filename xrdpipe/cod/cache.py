"""The local CIF cache of a subset: atomic writes, a sha256 provenance ledger, resume.

Both COD sources (the REST client and a local mirror) store CIFs through this module, so
an interrupted fetch resumes the same way whatever the source:

1. A CIF is written to a temporary file in the target folder, fsynced, then moved into
   place with :func:`os.replace`, so ``<cif_dir>/<cod_id>.cif`` is either absent or whole.
2. Each stored CIF appends one JSON line to ``<cif_dir>/provenance.jsonl`` (``cod_id``,
   ``sha256``, ``url``, ``fetched_at``, ``bytes``). A torn last line (a crash mid-append)
   is ignored on read; :meth:`ProvenanceLedger.compact` rewrites the ledger atomically
   with one line per id.
3. An id is *cached* only if its file exists and its sha256 equals the ledger's; anything
   else (missing, partial, edited) is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from xrdpipe.errors import InvalidCodIdError

LEDGER_NAME = "provenance.jsonl"
"""File name of the provenance ledger inside a CIF folder."""

_COD_ID = re.compile(r"[0-9]{1,9}")
_DATA_BLOCK = re.compile(rb"^\s*data_\S*", re.MULTILINE | re.IGNORECASE)
_TAG_LINE = re.compile(rb"^\s*_\S+", re.MULTILINE)

Status = Literal["downloaded", "cached", "failed"]


def validate_cod_id(value: object) -> str:
    """Return ``value`` as a COD id string, or raise if it is not 1 to 9 ASCII digits.

    Every id becomes a file name or a URL only after this check, so ``"../1000000"`` or
    ``"1000065.cif?x"`` can never escape the CIF folder or change a request.

    Args:
        value: a string or int such as ``"1000065"`` or ``1000065``.

    Returns:
        The id as a string of digits.

    Raises:
        InvalidCodIdError: the value is not a string or int of 1 to 9 digits.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidCodIdError(
            f"COD id {value!r} ({type(value).__name__}) must be a string or int of 1-9 digits"
        )
    text = str(value)
    if not _COD_ID.fullmatch(text):
        raise InvalidCodIdError(f"COD id {value!r} must be 1-9 digits, e.g. '1000065'")
    return text


def cif_path(cif_dir: Path, cod_id: str) -> Path:
    """Where the CIF of ``cod_id`` lives in a CIF folder (the id is validated first)."""
    return Path(cif_dir) / f"{validate_cod_id(cod_id)}.cif"


def utc_now_iso() -> str:
    """The current time as an ISO 8601 UTC string, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cif_problem(data: bytes) -> str | None:
    """Why ``data`` is obviously not a whole CIF, or ``None`` if it looks like one.

    Cheap checks only: non-empty, a ``data_`` block header, at least one ``_tag`` line.
    """
    if not data.strip():
        return "empty body"
    block = _DATA_BLOCK.search(data)
    if block is None:
        return f"not a CIF (no data_ block; {len(data)} bytes, starts {data[:60]!r})"
    if not _TAG_LINE.search(data, block.end()):
        return f"truncated CIF (no tags after data_; {len(data)} bytes)"
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one COD id when it was downloaded or copied into a CIF folder.

    Attributes:
        cod_id: the COD id.
        path: the stored CIF, or ``None`` if it failed.
        sha256: hex sha256 of the stored CIF, or ``None`` if it failed.
        status: ``downloaded`` (fetched now), ``cached`` (already there, sha256 matching the
            ledger, no request made) or ``failed``.
        error: why it failed (``not found``, the last HTTP or transport error, ...).
        source_url: the URL (or ``file://`` URI of a mirror file) it came from.
        fetched_at: ISO 8601 UTC time it was fetched (for ``cached``: the ledger's time).
    """

    cod_id: str
    path: Path | None
    sha256: str | None
    status: Status
    error: str | None
    source_url: str
    fetched_at: str


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the provenance ledger."""

    cod_id: str
    sha256: str
    url: str
    fetched_at: str
    bytes: int


class ProvenanceLedger:
    """The sha256 provenance ledger of one CIF folder (thread-safe).

    Args:
        cif_dir: the CIF folder; the ledger is ``cif_dir / "provenance.jsonl"``.
    """

    def __init__(self, cif_dir: Path) -> None:
        self.cif_dir = Path(cif_dir)
        self.path = self.cif_dir / LEDGER_NAME
        self._lock = threading.Lock()
        self._entries: dict[str, LedgerEntry] = self._read()

    def _read(self) -> dict[str, LedgerEntry]:
        entries: dict[str, LedgerEntry] = {}
        if not self.path.is_file():
            return entries
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
                if row.get("forget"):
                    entries.pop(validate_cod_id(row["cod_id"]), None)
                    continue
                entry = LedgerEntry(
                    cod_id=validate_cod_id(row["cod_id"]),
                    sha256=str(row["sha256"]),
                    url=str(row["url"]),
                    fetched_at=str(row["fetched_at"]),
                    bytes=int(row["bytes"]),
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn or foreign line: that id is simply fetched again
            entries[entry.cod_id] = entry
        return entries

    def get(self, cod_id: str) -> LedgerEntry | None:
        """The ledger entry of ``cod_id``, if any."""
        with self._lock:
            return self._entries.get(cod_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _append(self, row: dict[str, object]) -> None:
        self.cif_dir.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def record(self, entry: LedgerEntry) -> None:
        """Add (or replace) the entry of one id and append it to the ledger file."""
        with self._lock:
            self._entries[entry.cod_id] = entry
            self._append(asdict(entry))

    def forget(self, cod_id: str) -> None:
        """Drop the entry of one id (its file is no longer trusted)."""
        with self._lock:
            if self._entries.pop(cod_id, None) is not None:
                self._append({"cod_id": cod_id, "forget": True})

    def compact(self) -> None:
        """Rewrite the ledger atomically with one line per id, sorted by id."""
        with self._lock:
            lines = [
                json.dumps(asdict(e), sort_keys=True) + "\n"
                for _, e in sorted(self._entries.items(), key=lambda kv: int(kv[0]))
            ]
            atomic_write_bytes(self.path, "".join(lines).encode("utf-8"))


class CifCache:
    """A CIF folder with its ledger: the resume check, atomic stores and failures.

    Args:
        cif_dir: the folder (created if missing).
    """

    def __init__(self, cif_dir: Path) -> None:
        self.cif_dir = Path(cif_dir)
        self.cif_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = ProvenanceLedger(self.cif_dir)

    def cached(self, cod_id: str) -> DownloadResult | None:
        """A ``cached`` result if the file exists and its sha256 matches the ledger."""
        entry = self.ledger.get(cod_id)
        path = cif_path(self.cif_dir, cod_id)
        if entry is None or not path.is_file():
            return None
        try:
            digest = sha256_file(path)
        except OSError:
            return None
        if digest != entry.sha256:
            return None
        return DownloadResult(cod_id, path, digest, "cached", None, entry.url, entry.fetched_at)

    def store(self, cod_id: str, data: bytes, source_url: str) -> DownloadResult:
        """Write one CIF atomically, record it in the ledger, return a ``downloaded`` result."""
        path = cif_path(self.cif_dir, cod_id)
        digest = sha256_bytes(data)
        fetched_at = utc_now_iso()
        atomic_write_bytes(path, data)
        self.ledger.record(LedgerEntry(cod_id, digest, source_url, fetched_at, len(data)))
        return DownloadResult(cod_id, path, digest, "downloaded", None, source_url, fetched_at)

    def fail(self, cod_id: str, error: str, source_url: str) -> DownloadResult:
        """A ``failed`` result; any untrusted file of that id is removed from the folder."""
        cif_path(self.cif_dir, cod_id).unlink(missing_ok=True)
        self.ledger.forget(cod_id)
        return DownloadResult(cod_id, None, None, "failed", error, source_url, utc_now_iso())


def unique_ids(ids: object) -> list[str]:
    """Validate every id first (so a bad one stops the call before any work) and de-duplicate.

    Raises:
        InvalidCodIdError: any id is not 1 to 9 digits.
    """
    if isinstance(ids, str | int):
        ids = [ids]
    out: dict[str, None] = {}
    for value in ids:  # type: ignore[attr-defined]
        out[validate_cod_id(value)] = None
    return list(out)
