"""Rendering the effectiveness certificate (生效证明) to PDF with reportlab.

One A4 page: the court, the title, the case and its parties, the judgment and the date it
took legal effect, "特此证明", the court and the issue date under the red seal, and a footer
with the service number, the anti-counterfeit code, the issue time (Asia/Shanghai) and a QR
code of the public verification URL. The code is also written into the PDF's metadata
(``/Subject`` and ``/Keywords``) so an altered copy can still be traced to its original.

``RenderError`` carries a reason that is safe to show to the applicant and staff; any other
exception is a bug and is reported without details.
"""

from __future__ import annotations

import io
import itertools
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from reportlab.graphics.barcode import qrencoder
from reportlab.lib.colors import Color, black
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from services.documents import codes
from services.documents.fonts import CjkFont
from services.documents.stamp import draw_seal

try:
    from zoneinfo import ZoneInfo

    SHANGHAI: timezone | ZoneInfo = ZoneInfo("Asia/Shanghai")
except Exception:  # no tz database on the host: China has kept UTC+8 without DST since 1991
    SHANGHAI = timezone(timedelta(hours=8), "CST")

KIND = "effectiveness_certificate"
KIND_LABEL = "生效证明"
PARTY_ROLES = {"plaintiff": "原告", "defendant": "被告", "third_party": "第三人",
               "appellant": "上诉人", "appellee": "被上诉人", "applicant": "申请人",
               "respondent": "被申请人"}
_DIGITS = "〇一二三四五六七八九"
MARGIN = 72.0
INK = Color(0.1, 0.1, 0.1)
GREY = Color(0.35, 0.35, 0.35)


class RenderError(Exception):
    """The document cannot be rendered; ``str(exc)`` is safe to show."""


@dataclass(frozen=True)
class Party:
    name: str
    role: str

    @property
    def role_label(self) -> str:
        return PARTY_ROLES.get(self.role, self.role)


@dataclass(frozen=True)
class Certificate:
    court_name: str
    case_number: str
    parties: list[Party]
    effective_date: date
    service_number: str
    code: str  # canonical
    verify_url: str
    issued_at: datetime  # UTC
    seal_court_name: str
    seal_name: str
    cause: str = ""
    judgment_title: str = ""
    decided_on: date | None = None


def local(moment: datetime) -> datetime:
    return moment.astimezone(SHANGHAI)


def cn_date(day: date) -> str:
    """2026-03-01 → 2026年3月1日 (body text)."""
    return f"{day.year}年{day.month}月{day.day}日"


def _cn_number(n: int) -> str:
    if n < 10:
        return _DIGITS[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else _DIGITS[tens]) + "十" + (_DIGITS[ones] if ones else "")


def cn_formal_date(day: date) -> str:
    """2026-11-23 → 二〇二六年十一月二十三日 (the date under a court's signature)."""
    year = "".join(_DIGITS[int(d)] for d in str(day.year))
    return f"{year}年{_cn_number(day.month)}月{_cn_number(day.day)}日"


def wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Break ``text`` into lines of at most ``width`` points (CJK breaks anywhere)."""
    lines: list[str] = []
    line, used = "", 0.0
    for ch in text:
        w = stringWidth(ch, font, size)
        if line and used + w > width:
            lines.append(line)
            line, used = "", 0.0
        line += ch
        used += w
    if line:
        lines.append(line)
    return lines


def body_text(c: Certificate) -> str:
    case = f"{c.case_number}{c.cause}一案"
    if c.judgment_title and c.decided_on:
        decision = f"本院于{cn_date(c.decided_on)}作出的{c.judgment_title}"
    elif c.judgment_title:
        decision = f"本院作出的{c.judgment_title}"
    else:
        decision = "本院作出的裁判文书"
    return (f"\u3000\u3000本院审理的{case}，{decision}，"
            f"已于{cn_date(c.effective_date)}发生法律效力。")


class Renderer:
    """Renders certificates in one font; safe to share between threads."""

    def __init__(self, font: CjkFont) -> None:
        self.font = font
        self._lock = threading.Lock()  # reportlab keeps per-document font state on the face

    def render(self, c: Certificate) -> bytes:
        texts = [c.court_name, c.case_number, c.cause, c.judgment_title, c.service_number,
                 c.seal_court_name, c.seal_name, *(p.name + p.role_label for p in c.parties)]
        missing = self.font.missing("".join(texts))
        if missing:
            shown = "、".join(f"{ch} (U+{ord(ch):04X})" for ch in missing[:5])
            raise RenderError(f"the certificate font has no glyph for {shown}; "
                              "the document needs a font that covers these characters")
        with self._lock:
            return self._draw(c)

    def _draw(self, c: Certificate) -> bytes:
        out = io.BytesIO()
        font = self.font.name
        display = codes.display(c.code)
        canvas = Canvas(out, pagesize=A4, pageCompression=1)
        canvas.setTitle(f"{KIND_LABEL} {c.case_number}")
        canvas.setAuthor(c.court_name)
        canvas.setSubject(f"{KIND_LABEL} 防伪码 {display}")
        canvas.setKeywords(f"ecourt-code:{display}")
        canvas.setCreator("eCourt documents")
        width, height = A4
        text_width = width - 2 * MARGIN
        canvas.setFillColor(INK)

        canvas.setFont(font, 20)
        canvas.drawCentredString(width / 2, height - 100, c.court_name)
        canvas.setFont(font, 30)
        canvas.drawCentredString(width / 2, height - 150, KIND_LABEL, charSpace=8)

        y = height - 215
        size, leading = 14.0, 26.0
        canvas.setFont(font, size)
        rows = [("案号", c.case_number)]
        if c.cause:
            rows.append(("案由", c.cause))
        rows += [(p.role_label, p.name) for p in c.parties]
        label_width = stringWidth("被上诉人：", font, size)
        for label, value in rows:
            canvas.drawString(MARGIN, y, f"{label}：")
            for line in wrap(value, font, size, text_width - label_width):
                canvas.drawString(MARGIN + label_width, y, line)
                y -= leading
        y -= leading / 2
        for paragraph in (body_text(c), "\u3000\u3000特此证明。"):
            for line in wrap(paragraph, font, size, text_width):
                canvas.drawString(MARGIN, y, line)
                y -= leading

        sign_x = width - MARGIN - 30
        sign_y = min(y - 60, 300.0)
        canvas.drawRightString(sign_x, sign_y, c.court_name)
        canvas.drawRightString(sign_x, sign_y - leading, cn_formal_date(local(c.issued_at)))
        court_width = stringWidth(c.court_name, font, size)
        draw_seal(canvas, cx=sign_x - court_width / 2, cy=sign_y - 8, radius=58, font=font,
                  court_name=c.seal_court_name, seal_name=c.seal_name)
        self._footer(canvas, c, display)
        canvas.showPage()
        canvas.save()
        return out.getvalue()

    def _footer(self, canvas: Canvas, c: Certificate, display: str) -> None:
        font = self.font.name
        width, _ = A4
        qr_size, qr_y = 92.0, 56.0
        canvas.setStrokeColor(GREY)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, qr_y + qr_size + 14, width - MARGIN, qr_y + qr_size + 14)
        draw_qr(canvas, c.verify_url, MARGIN - 6, qr_y, qr_size)
        x = MARGIN + qr_size + 8
        canvas.setFillColor(INK)
        canvas.setFont(font, 10.5)
        issued = local(c.issued_at).strftime("%Y-%m-%d %H:%M:%S")
        lines = [f"服务编号：{c.service_number}", f"防伪码：{display}",
                 f"签发时间：{issued}（北京时间）"]
        y = qr_y + qr_size - 12
        for line in lines:
            canvas.drawString(x, y, line)
            y -= 17
        canvas.setFillColor(GREY)
        canvas.setFont(font, 8.5)
        for line in wrap(f"核验真伪：扫描二维码或访问 {c.verify_url}", font, 8.5,
                         width - MARGIN - x):
            canvas.drawString(x, y, line)
            y -= 12


def draw_qr(canvas: Canvas, value: str, x: float, y: float, size: float) -> None:
    """A QR code of ``value`` (error correction M, quiet zone 4), ``size`` points wide.

    Encoded once and drawn as one filled path of the dark runs of each row; reportlab's
    ``QrCodeWidget`` encodes twice (``getBounds`` draws too) and emits a shape per run,
    which made the QR most of a certificate's rendering time."""
    qr = qrencoder.QRCode(None, qrencoder.QRErrorCorrectLevel.M)
    qr.addData(value)
    qr.make()
    count, border = qr.getModuleCount(), 4
    box = size / (count + 2 * border)
    path = canvas.beginPath()
    for r, row in enumerate(qr.modules):
        c = 0
        for dark, run in itertools.groupby(bool(m) for m in row):
            n = len(list(run))
            if dark:
                path.rect(x + (c + border) * box, y + size - (r + border + 1) * box,
                          n * box, box)
            c += n
    canvas.saveState()
    canvas.setFillColor(black)
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()
