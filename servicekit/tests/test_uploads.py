"""Uploads are judged by content, size and name (RELIABILITY S4)."""

from __future__ import annotations

import io

import pytest
from werkzeug.datastructures import FileStorage

from servicekit.problems import Problem
from servicekit.uploads import read_upload

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"x" * 64


def upload(data: bytes, name: str = "licence.png", ctype: str = "image/png") -> FileStorage:
    return FileStorage(io.BytesIO(data), filename=name, content_type=ctype)


def refused(file: FileStorage | None, **kw: object) -> Problem:
    with pytest.raises(Problem) as caught:
        read_upload(file, **kw)  # type: ignore[arg-type]
    return caught.value


def test_a_png_is_recognised_by_its_content_whatever_its_name() -> None:
    got = read_upload(upload(PNG, name="scan.pdf", ctype="application/octet-stream"))
    assert (got.kind, got.content_type, got.size) == ("png", "image/png", len(PNG))
    assert len(got.sha256) == 64


@pytest.mark.parametrize(("data", "ctype", "status", "slug"), [
    (b"MZ\x90\x00 not an image", "image/png", 415, "unsupported-upload"),   # an executable
    (PDF, "image/png", 415, "upload-type-mismatch"),                       # a PDF claiming PNG
    (b"", "image/png", 422, "validation-error"),                           # empty
])
def test_wrong_content_is_refused(data: bytes, ctype: str, status: int, slug: str) -> None:
    problem = refused(upload(data, ctype=ctype))
    assert (problem.status, problem.slug) == (status, slug)


def test_oversize_is_refused() -> None:
    problem = refused(upload(PNG + b"\x00" * 2048), max_bytes=1024)
    assert (problem.status, problem.slug) == (413, "upload-too-large")


@pytest.mark.parametrize("name", ["../../etc/passwd.png", "/abs/x.png", "a\\b.png", "C:x.png",
                                  ".hidden.png", "x\x00.png", "a/../b.png"])
def test_path_tricks_in_names_are_refused(name: str) -> None:
    problem = refused(upload(PNG, name=name))
    assert (problem.status, problem.slug) == (422, "unsafe-filename")


def test_only_allowed_kinds_pass() -> None:
    problem = refused(upload(PNG), allowed=frozenset({"pdf"}))
    assert problem.status == 415


def test_a_missing_file_names_the_field() -> None:
    problem = refused(None, field="licence")
    assert problem.extensions["errors"] == {"licence": ["a file is required"]}
