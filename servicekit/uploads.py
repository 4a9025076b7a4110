"""Uploaded files (licence scans, practising certificates, letters of authorisation): checked
by content, not by name, before anything is stored (RELIABILITY S4).

* the type is sniffed from the first bytes (JPEG, PNG, BMP, PDF); a file whose content is not
  one of the allowed types, or is not what its declared content type says, is refused (415);
* the size is capped (413; the app also caps the whole request body);
* the file name is kept only as a label, and a name with a path in it (``../``, ``/``, ``\\``,
  a drive letter, control characters) is refused (422) rather than quietly "cleaned";
* the bytes go to a content-addressed blob store (``servicekit.blobs``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from werkzeug.datastructures import FileStorage

from servicekit.problems import Problem

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
SIGNATURES = {
    "jpeg": (b"\xff\xd8\xff", "image/jpeg"),
    "png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    "bmp": (b"BM", "image/bmp"),
    "pdf": (b"%PDF-", "application/pdf"),
}
IMAGES_AND_PDF = frozenset(SIGNATURES)
_UNSAFE_NAME = re.compile(r"(^\.)|(\.\.)|[/\\:\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Upload:
    filename: str
    kind: str
    content_type: str
    size: int
    sha256: str
    data: bytes


def sniff(data: bytes) -> str | None:
    for kind, (magic, _ctype) in SIGNATURES.items():
        if data.startswith(magic):
            return kind
    return None


def safe_filename(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        return "upload"
    if len(name) > 120 or _UNSAFE_NAME.search(name):
        raise Problem(422, "unsafe-filename", "the file name may not contain a path",
                      errors={"file": ["file name must be a plain name without a path"]})
    return name


def read_upload(file: FileStorage | None, *, field: str = "file",
                allowed: frozenset[str] = IMAGES_AND_PDF,
                max_bytes: int = MAX_UPLOAD_BYTES) -> Upload:
    """Read and check one uploaded file; raises a Problem that names what is wrong."""
    if file is None:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={field: ["a file is required"]})
    filename = safe_filename(file.filename)
    data = file.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Problem(413, "upload-too-large",
                      f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    if not data:
        raise Problem(422, "validation-error", "the request is invalid",
                      errors={field: ["the file is empty"]})
    kind = sniff(data)
    if kind is None or kind not in allowed:
        raise Problem(415, "unsupported-upload",
                      "the file's content is not one of: " + ", ".join(sorted(allowed)))
    declared = (file.mimetype or "").lower()
    expected = SIGNATURES[kind][1]
    if declared and declared not in (expected, "application/octet-stream"):
        raise Problem(415, "upload-type-mismatch",
                      f"the file's content is {kind}, not the declared {declared}")
    return Upload(filename=filename, kind=kind, content_type=expected, size=len(data),
                  sha256=hashlib.sha256(data).hexdigest(), data=data)
