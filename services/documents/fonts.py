"""The CJK font every document is set in, embedded (subset) so Chinese shows in any viewer.

Decisions written down here:

* reportlab embeds **TrueType** outlines only (it cannot embed CFF/OpenType such as Noto CJK),
  so the font is WenQuanYi Micro Hei (文泉驿微米黑, Apache-2.0 / GPLv3 with the font
  exception), face 0 of ``wqy-microhei.ttc``. reportlab always embeds a subset
  (``/FontFile2``, base font ``AAAAAA+WenQuanYiMicroHei``) of the glyphs a document uses.
* Where the file comes from, first match wins:
  1. ``DOCUMENTS_CJK_FONT`` (a path; ``DOCUMENTS_CJK_FONT_INDEX`` picks the face of a .ttc);
  2. the PyPI package ``paperang-p2-fonts-cjk`` (a dependency of the suite: pip-installable,
     so every machine renders with the same glyphs; its file is byte-identical to Debian's,
     sha256 ``WQY_MICROHEI_SHA256``);
  3. Debian's ``fonts-wqy-microhei`` (``/usr/share/fonts/truetype/wqy/wqy-microhei.ttc``).
  Without any of them the consumer refuses to start (a clear error, never tofu boxes).
* A character the font lacks (rare characters outside its ~21,000 CJK glyphs) fails the render
  with a reason naming the character, instead of printing an empty box on a court document.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

DEBIAN_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
PYPI_PACKAGE = "paperang_p2_fonts_cjk"
WQY_MICROHEI_SHA256 = "2420e8078af796b19a3f6ef13de527a1a91c1e7171eea115926c614ced1009b3"
_lock = threading.Lock()
_registered: dict[tuple[str, int], CjkFont] = {}


class FontUnavailable(RuntimeError):
    """No usable TrueType CJK font: the service cannot render documents."""


@dataclass(frozen=True)
class CjkFont:
    name: str  # the reportlab font name to ``setFont`` with
    path: Path
    face: TTFont

    def missing(self, text: str) -> list[str]:
        """Characters of ``text`` the font has no glyph for (whitespace aside)."""
        cmap = self.face.face.charToGlyph
        return sorted({ch for ch in text if not ch.isspace() and ord(ch) not in cmap})


def _packaged() -> Path | None:
    try:
        path = resources.files(PYPI_PACKAGE) / "fonts" / "wqy-microhei.ttc"
    except ModuleNotFoundError:
        return None
    return Path(str(path)) if path.is_file() else None


def resolve(explicit: str | None = None) -> tuple[Path, int]:
    """The font file and face index to use (see the module docstring for the order)."""
    explicit = explicit if explicit is not None else os.environ.get("DOCUMENTS_CJK_FONT")
    index = int(os.environ.get("DOCUMENTS_CJK_FONT_INDEX", "0"))
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FontUnavailable(f"DOCUMENTS_CJK_FONT={explicit}: no such file")
        return path, index
    for candidate in (_packaged(), DEBIAN_PATH):
        if candidate is not None and candidate.is_file():
            return candidate, 0
    raise FontUnavailable(
        "no CJK TrueType font found: `pip install paperang-p2-fonts-cjk` (a dependency of "
        "the suite), or `apt-get install fonts-wqy-microhei`, or set DOCUMENTS_CJK_FONT to a "
        "TrueType (.ttf/.ttc, not CFF/OTF) font with Chinese glyphs")


def load(explicit: str | None = None) -> CjkFont:
    """Register the font with reportlab once per process and return it."""
    path, index = resolve(explicit)
    key = (str(path.resolve()), index)
    with _lock:
        if key in _registered:
            return _registered[key]
        name = f"ECourtCJK{len(_registered)}"
        try:
            face = TTFont(name, str(path), subfontIndex=index)
        except (TTFError, OSError) as exc:
            raise FontUnavailable(f"{path} (face {index}) cannot be embedded by reportlab: "
                                  f"{exc} — a TrueType font is required") from exc
        if ord("中") not in face.face.charToGlyph:
            raise FontUnavailable(f"{path} has no Chinese glyphs")
        pdfmetrics.registerFont(face)
        font = CjkFont(name, path, face)
        _registered[key] = font
        return font
