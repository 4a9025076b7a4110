"""Rendering: the PDF reads right, embeds its font, and its QR code points at verification."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime

import pypdfium2
import pytest
import zxingcpp
from pypdf import PdfReader

from services.documents import codes, fonts
from services.documents.render import (
    Certificate,
    Party,
    Renderer,
    RenderError,
    body_text,
    cn_formal_date,
)
from services.documents.stamp import seal_legend

URL = "http://127.0.0.1:8080/api/documents/verify/"


def certificate(**overrides: object) -> Certificate:
    code = codes.new_code()
    values: dict[str, object] = dict(
        court_name="广州市中级人民法院", case_number="(2026)粤01民初123号",
        parties=[Party("张三", "plaintiff"), Party("李四", "defendant")],
        effective_date=date(2026, 4, 1), service_number="SF20261123000123", code=code,
        verify_url=URL + codes.display(code), issued_at=datetime(2026, 11, 23, 16, 5, tzinfo=UTC),
        seal_court_name="广州市中级人民法院", seal_name="广州市中级人民法院诉讼服务专用章",
        cause="民间借贷纠纷", judgment_title="民事判决书", decided_on=date(2026, 3, 1))
    values.update(overrides)
    return Certificate(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(fonts.load())


@pytest.fixture(scope="module")
def rendered(renderer: Renderer) -> tuple[Certificate, bytes]:
    c = certificate()
    return c, renderer.render(c)


def test_the_text_carries_the_case_the_code_and_the_legal_effect(
        rendered: tuple[Certificate, bytes]) -> None:
    c, pdf = rendered
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    flat = re.sub(r"\s+", "", text)
    assert c.case_number in flat
    assert codes.display(c.code) in flat
    assert codes.find_in(text) == [c.code]
    for words in ("生效证明", "张三", "李四", "民事判决书", "2026年4月1日发生法律效力",
                  "特此证明", "二〇二六年十一月二十四日", "2026-11-2400:05:00", c.service_number):
        assert words in flat, words
    assert codes.display(c.code) in str(reader.metadata["/Subject"])
    assert codes.display(c.code) in str(reader.metadata["/Keywords"])


def test_the_cjk_font_is_embedded_as_a_truetype_subset(
        rendered: tuple[Certificate, bytes]) -> None:
    _, pdf = rendered
    reader = PdfReader(io.BytesIO(pdf))
    embedded = []
    for font in reader.pages[0]["/Resources"]["/Font"].values():
        font = font.get_object()
        descriptor = font.get("/FontDescriptor")
        if descriptor is not None and "/FontFile2" in descriptor.get_object():
            embedded.append(str(font["/BaseFont"]))
    assert embedded, "no TrueType font program (FontFile2) embedded"
    assert all(re.fullmatch(r"/?[A-Z]{6}\+WenQuanYiMicroHei.*", name) for name in embedded)


def test_the_qr_code_decodes_to_the_verification_url(
        rendered: tuple[Certificate, bytes]) -> None:
    c, pdf = rendered
    page = pypdfium2.PdfDocument(pdf)[0]
    image = page.render(scale=3).to_pil()
    found = [b.text for b in zxingcpp.read_barcodes(image)
             if b.format == zxingcpp.BarcodeFormat.QRCode]
    assert found == [c.verify_url]


def test_without_a_judgment_the_wording_still_states_the_legal_effect() -> None:
    text = body_text(certificate(judgment_title="", decided_on=None, cause=""))
    assert "本院作出的裁判文书，已于2026年4月1日发生法律效力。" in text


def test_a_character_the_font_lacks_fails_with_a_reason_naming_it(renderer: Renderer) -> None:
    rare = "\U00020bb7"  # 𠮷, CJK extension B: not in WenQuanYi Micro Hei
    assert renderer.font.missing(rare)
    with pytest.raises(RenderError, match="U\\+20BB7"):
        renderer.render(certificate(parties=[Party("吉" + rare, "plaintiff")]))


def test_formal_dates_and_the_seal_legend() -> None:
    assert cn_formal_date(date(2026, 11, 23)) == "二〇二六年十一月二十三日"
    assert cn_formal_date(date(2030, 10, 10)) == "二〇三〇年十月十日"
    assert cn_formal_date(date(2026, 1, 31)) == "二〇二六年一月三十一日"
    assert seal_legend("广州市中级人民法院", "广州市中级人民法院诉讼服务专用章") == "诉讼服务专用章"
    assert seal_legend("广州市中级人民法院", "诉讼服务专用章") == "诉讼服务专用章"


def test_the_font_comes_from_the_setting_and_a_wrong_one_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(fonts.FontUnavailable, match="no such file"):
        fonts.resolve(str(tmp_path / "missing.ttf"))
    fake = tmp_path / "fake.ttf"
    fake.write_bytes(b"OTTO" + b"\0" * 64)  # a CFF/OpenType header: not embeddable
    with pytest.raises(fonts.FontUnavailable, match="TrueType"):
        fonts.load(str(fake))
    path, index = fonts.resolve()
    assert path.is_file() and index == 0
