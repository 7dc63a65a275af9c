"""COD access: the REST client, local mirrors, and the CIF cache they both write through."""

from xrdpipe.cod.cache import DownloadResult, validate_cod_id
from xrdpipe.cod.client import CodClient, CodRecord
from xrdpipe.cod.mirror import CodMirror, package_mirror_dir

__all__ = [
    "CodClient",
    "CodMirror",
    "CodRecord",
    "DownloadResult",
    "package_mirror_dir",
    "validate_cod_id",
]
