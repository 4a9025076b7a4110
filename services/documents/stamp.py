"""The court's official seal, drawn in red vector graphics over the signature block.

The look of a Chinese court's round seal: a red ring, a five-pointed star in the middle, the
court's name along the upper arc (read clockwise, each character upright towards the rim) and
the seal's purpose (诉讼服务专用章) straight below the star. The court registers the seal's
wording first (``POST /seals``); no document is issued for a court without one.

This is a *picture* of the seal, not the seal's legal equivalent: the integrity of an issued
document rests on its SHA-256, the issuance log and the public verification.
"""

from __future__ import annotations

import math

from reportlab.lib.colors import Color
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

SEAL_RED = Color(0.84, 0.10, 0.13)


def seal_legend(court_name: str, seal_name: str) -> str:
    """The words below the star: the seal's name without the court's name it repeats."""
    legend = seal_name[len(court_name):] if seal_name.startswith(court_name) else seal_name
    return legend.strip() or seal_name


def _star(canvas: Canvas, cx: float, cy: float, radius: float) -> None:
    inner = radius * math.sin(math.radians(18)) / math.sin(math.radians(126))
    path = canvas.beginPath()
    for i in range(10):
        r = radius if i % 2 == 0 else inner
        angle = math.radians(90 + i * 36)
        x, y = cx + r * math.cos(angle), cy + r * math.sin(angle)
        if i == 0:
            path.moveTo(x, y)
        else:
            path.lineTo(x, y)
    path.close()
    canvas.drawPath(path, stroke=0, fill=1)


def _arc_text(canvas: Canvas, text: str, font: str, size: float, cx: float, cy: float,
              radius: float, span: float) -> None:
    """``text`` along the upper arc, centred on the top, clockwise, characters upright."""
    chars = list(text)
    if not chars:
        return
    step = span / max(1, len(chars) - 1) if len(chars) > 1 else 0.0
    start = 90 + (span / 2 if len(chars) > 1 else 0.0)
    for i, ch in enumerate(chars):
        angle = start - i * step
        rad = math.radians(angle)
        canvas.saveState()
        canvas.translate(cx + radius * math.cos(rad), cy + radius * math.sin(rad))
        canvas.rotate(angle - 90)
        canvas.drawCentredString(0, 0, ch)
        canvas.restoreState()


def draw_seal(canvas: Canvas, *, cx: float, cy: float, radius: float, font: str,
              court_name: str, seal_name: str) -> None:
    """Draw the seal centred on (cx, cy) with outer radius ``radius`` (points)."""
    ring = radius * 0.055
    canvas.saveState()
    canvas.setStrokeColor(SEAL_RED)
    canvas.setFillColor(SEAL_RED)
    canvas.setStrokeAlpha(0.88)
    canvas.setFillAlpha(0.88)
    canvas.setLineWidth(ring)
    canvas.circle(cx, cy, radius - ring / 2, stroke=1, fill=0)
    _star(canvas, cx, cy + radius * 0.02, radius * 0.27)

    n = max(len(court_name), 1)
    size = radius * 0.27
    text_radius = radius - ring - size * 0.92
    step = min(size * 1.12 / text_radius, math.radians(260) / max(n - 1, 1))
    size = min(size, step * text_radius / 1.08)  # a long name: smaller characters
    canvas.setFont(font, size)
    _arc_text(canvas, court_name, font, size, cx, cy, text_radius, math.degrees(step) * (n - 1))

    legend = seal_legend(court_name, seal_name)
    legend_size = radius * 0.15
    width = stringWidth(legend, font, legend_size)
    if width > radius * 1.3:
        legend_size *= radius * 1.3 / width
    canvas.setFont(font, legend_size)
    canvas.drawCentredString(cx, cy - radius * 0.52, legend)
    canvas.restoreState()
