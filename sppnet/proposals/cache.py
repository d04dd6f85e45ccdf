"""A directory of proposal files, one per image, that knows when a file is stale or corrupt.

Each file ``<root>/<image id>.safetensors`` holds one tensor, ``boxes`` (Tensor[M, 4] float32 xyxy
original pixels), and a metadata header recording what made it::

    format       "sppnet.proposals"        version  "1"
    image_id     the image's id            height, width   the image size the boxes are for
    source       e.g. "selective_search"   params   the source's params(), canonical JSON
    count        M                         sha256   of the header fields above + the box bytes

Reading a file checks, in order: that safetensors can parse it (a truncated file fails here), the
checksum (a flipped byte anywhere fails here), the format and version, the image id, and only then
whether it is *stale*: made by another source, other params, or for an image of another size.
:class:`ProposalCache` recomputes stale and corrupt files with a :class:`ProposalCacheWarning` that
names the file, and every write is atomic (:func:`sppnet.utils.atomic.atomic_write_bytes`), so a
killed run leaves only complete files and resuming recomputes just the missing ones.

``<root>/proposals.json`` records the source and params, so :meth:`ProposalCache.from_directory`
can reopen a cache made by ``sppnet proposals`` with the same settings.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
import struct
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sppnet.proposals.base import ProposalSource, check_image, check_proposals
from sppnet.utils.atomic import atomic_write_bytes, atomic_write_json

__all__ = [
    "CacheStatus",
    "CorruptProposalFileError",
    "ProposalCache",
    "ProposalCacheWarning",
    "ProposalFileVersionError",
    "ProposalRecord",
    "cache_file_name",
    "decode_proposal_file",
    "encode_proposal_file",
    "read_proposal_file",
]

FORMAT = "sppnet.proposals"
VERSION = "1"
SUFFIX = ".safetensors"
MANIFEST = "proposals.json"
_HASHED_FIELDS = ("format", "version", "image_id", "height", "width", "source", "params", "count")
_MAX_HEADER_BYTES = 1 << 20


class CorruptProposalFileError(ValueError):
    """A proposal file that cannot be parsed or fails its checksum; the message names the file."""


class ProposalFileVersionError(CorruptProposalFileError):
    """An intact proposal file written in another version of the format (treated as stale)."""


class ProposalCacheWarning(UserWarning):
    """A cache file was stale or corrupt and is being recomputed."""


class CacheStatus(enum.Enum):
    HIT = "hit"
    MISSING = "missing"
    STALE = "stale"
    CORRUPT = "corrupt"


@dataclass(frozen=True)
class ProposalRecord:
    """The content of one proposal file."""

    boxes: Tensor  #: Tensor[M, 4] float32 xyxy, original-image pixels, on the CPU
    image_id: str
    image_size: tuple[int, int]  #: (H, W)
    source: str
    params: dict[str, Any]


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _checksum(fields: dict[str, str], boxes: Tensor) -> str:
    digest = hashlib.sha256()
    for key in _HASHED_FIELDS:
        digest.update(f"{key}={fields[key]}\n".encode())
    digest.update(boxes.contiguous().numpy().astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


def encode_proposal_file(record: ProposalRecord) -> bytes:
    """Serialise a record to the bytes of a ``.safetensors`` proposal file."""
    from safetensors.torch import save

    boxes = record.boxes.detach().to("cpu", torch.float32).contiguous()
    check_proposals(boxes, record.image_size, what=f"proposals of image {record.image_id!r}")
    fields = {
        "format": FORMAT,
        "version": VERSION,
        "image_id": record.image_id,
        "height": str(int(record.image_size[0])),
        "width": str(int(record.image_size[1])),
        "source": record.source,
        "params": _canonical(record.params),
        "count": str(len(boxes)),
    }
    fields["sha256"] = _checksum(fields, boxes)
    return save({"boxes": boxes}, metadata=fields)


def decode_proposal_file(data: bytes, name: str = "<bytes>") -> ProposalRecord:
    """Parse and verify the bytes of a proposal file.

    Raises:
        CorruptProposalFileError: truncated, unparsable, wrong format, or checksum mismatch; the
            message starts with ``name``.
    """
    from safetensors.torch import load

    def corrupt(reason: str) -> CorruptProposalFileError:
        return CorruptProposalFileError(f"proposal file {name}: {reason}")

    # safetensors: 8-byte little-endian header length, then a JSON header with "__metadata__".
    if len(data) < 8:
        raise corrupt(f"{len(data)} bytes, too short to be a safetensors file (truncated?)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(_MAX_HEADER_BYTES, len(data) - 8):
        raise corrupt(f"header length {header_len} does not fit in {len(data)} bytes (truncated?)")
    try:
        header = json.loads(data[8 : 8 + header_len])
        fields = header["__metadata__"]
        tensors = load(data)
    except Exception as error:
        raise corrupt(f"cannot be parsed ({type(error).__name__}: {error})") from error
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise corrupt("metadata is not a string-to-string map")
    if fields.get("format") != FORMAT:
        raise corrupt(f"format is {fields.get('format')!r}, expected {FORMAT!r}")
    missing = [k for k in (*_HASHED_FIELDS, "sha256") if k not in fields]
    if missing or set(tensors) != {"boxes"}:
        raise corrupt(f"missing fields {missing} or tensors {sorted(tensors)} != ['boxes']")
    boxes = tensors["boxes"]
    if boxes.dtype != torch.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise corrupt(f"boxes have dtype {boxes.dtype} and shape {list(boxes.shape)}")
    if _checksum(fields, boxes) != fields["sha256"]:
        raise corrupt("sha256 checksum mismatch (the file was modified or damaged)")
    if fields["version"] != VERSION:
        raise ProposalFileVersionError(
            f"proposal file {name}: format version {fields['version']!r}, "
            f"this sppnet reads {VERSION!r}"
        )
    try:
        size = (int(fields["height"]), int(fields["width"]))
        params = json.loads(fields["params"])
        count = int(fields["count"])
    except ValueError as error:
        raise corrupt(f"bad metadata: {error}") from error
    if count != len(boxes):
        raise corrupt(f"count {count} != {len(boxes)} boxes")
    return ProposalRecord(boxes, fields["image_id"], size, fields["source"], params)


def read_proposal_file(path: str | os.PathLike[str]) -> ProposalRecord:
    """Read and verify one proposal file (see :func:`decode_proposal_file`)."""
    return decode_proposal_file(Path(path).read_bytes(), repr(str(path)))


_SAFE_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,199}")


def cache_file_name(image_id: str) -> str:
    """The file name for an image id: the id itself when it is a safe file name, else escaped.

    Ids with characters other than letters, digits, ``_ - .`` (or starting with a dot) are
    percent-encoded; very long ids are replaced by their sha256. Distinct ids give distinct names.
    """
    if not isinstance(image_id, str) or not image_id:
        raise ValueError(f"image id must be a non-empty string, got {image_id!r}")
    if _SAFE_ID.fullmatch(image_id) and "%" not in image_id:
        return image_id + SUFFIX
    quoted = urllib.parse.quote(image_id, safe="").replace(".", "%2E")
    if len(quoted) > 200:
        quoted = "%sha256-" + hashlib.sha256(image_id.encode()).hexdigest()
    return quoted + SUFFIX


class ProposalCache(ProposalSource):
    """A :class:`ProposalSource` that memoises another one in ``root``, one file per image.

    Args:
        root: the cache directory (created if missing).
        source: what computes the proposals on a miss; its ``name`` and ``params()`` are recorded
            in every file and in ``root/proposals.json``.

    Example::

        cache = ProposalCache("cache/ss_fast", SelectiveSearch(mode="fast"))
        boxes = cache(image, "000005")   # computed and stored once, then read back
    """

    def __init__(self, root: str | os.PathLike[str], source: ProposalSource) -> None:
        if isinstance(source, ProposalCache):
            raise TypeError("ProposalCache: the source is already a cache")
        self.root = Path(root)
        self.source = source
        self.name = source.name
        self._params = source.params()
        self._canonical_params = _canonical(self._params)
        self.root.mkdir(parents=True, exist_ok=True)
        manifest = {"source": self.name, "params": self._params}
        manifest_path = self.root / MANIFEST
        try:
            current = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            current = None
        if current != json.loads(json.dumps(manifest)):
            atomic_write_json(manifest_path, manifest, sort_keys=True)

    @classmethod
    def from_directory(cls, root: str | os.PathLike[str]) -> ProposalCache:
        """Reopen a cache with the source and params recorded in ``root/proposals.json``."""
        from sppnet.proposals import create_source

        manifest_path = Path(root) / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            name, params = manifest["source"], manifest["params"]
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{str(manifest_path)!r} does not exist: {str(root)!r} is not a proposal cache "
                "(make one with `sppnet proposals DATASET --out DIR`)"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{str(manifest_path)!r} is not a valid manifest: {error}") from error
        return cls(root, create_source(name, params))

    def params(self) -> dict[str, Any]:
        return dict(self._params)

    def path(self, image_id: str) -> Path:
        """The file that holds (or will hold) ``image_id``'s proposals."""
        return self.root / cache_file_name(image_id)

    def lookup(
        self, image_id: str, image_size: tuple[int, int] | None = None
    ) -> tuple[CacheStatus, Tensor | None, str]:
        """Read ``image_id``'s file without computing anything.

        Args:
            image_id: the image.
            image_size: (H, W) of the image, if known: a file made for another size is stale.

        Returns:
            ``(status, boxes, reason)``: ``boxes`` (Tensor[M, 4] float32, CPU) only for
            :attr:`CacheStatus.HIT`; ``reason`` says why a file is stale or corrupt.
        """
        path = self.path(image_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return CacheStatus.MISSING, None, "no file"
        try:
            record = decode_proposal_file(data, repr(str(path)))
        except ProposalFileVersionError as error:
            return CacheStatus.STALE, None, str(error)
        except CorruptProposalFileError as error:
            return CacheStatus.CORRUPT, None, str(error)
        if record.image_id != image_id:
            return CacheStatus.CORRUPT, None, f"holds image {record.image_id!r}, not {image_id!r}"
        if record.source != self.name or _canonical(record.params) != self._canonical_params:
            return (
                CacheStatus.STALE,
                None,
                f"made by {record.source} {_canonical(record.params)}, "
                f"want {self.name} {self._canonical_params}",
            )
        if image_size is not None and tuple(image_size) != record.image_size:
            return (
                CacheStatus.STALE,
                None,
                f"made for a {record.image_size[1]}x{record.image_size[0]} image, this one is "
                f"{image_size[1]}x{image_size[0]}",
            )
        return CacheStatus.HIT, record.boxes, ""

    def store(self, image_id: str, boxes: Tensor, image_size: tuple[int, int]) -> Path:
        """Write ``image_id``'s proposals atomically; returns the file's path."""
        record = ProposalRecord(boxes, image_id, tuple(image_size), self.name, self._params)
        path = self.path(image_id)
        atomic_write_bytes(path, encode_proposal_file(record))
        return path

    def compute(self, image: Tensor, image_id: str) -> tuple[Tensor, CacheStatus]:
        """Proposals for ``image``, from its file if valid, else computed and stored.

        Returns:
            ``(boxes, status)`` where ``status`` is what the file was before this call. A stale or
            corrupt file is reported with a :class:`ProposalCacheWarning` naming it.
        """
        size = check_image(image)
        status, boxes, reason = self.lookup(image_id, size)
        if status is CacheStatus.HIT:
            assert boxes is not None
            return boxes.to(image.device), status
        if status is not CacheStatus.MISSING:
            warnings.warn(
                f"proposal cache file {str(self.path(image_id))!r} is {status.value} ({reason}); "
                "recomputing it",
                ProposalCacheWarning,
                stacklevel=3,
            )
        boxes = self.source(image, image_id)
        self.store(image_id, boxes, size)
        return boxes, status

    def __call__(self, image: Tensor, image_id: str) -> Tensor:
        return self.compute(image, image_id)[0]
