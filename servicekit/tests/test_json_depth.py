"""The kit's look at how deep a JSON body nests, without parsing it (``servicekit.web``): the
brackets outside strings count, as the parser would read them, in linear time."""

from __future__ import annotations

import json
import time

import pytest

from servicekit.web import _json_depth


@pytest.mark.parametrize(("body", "depth"), [
    (b"1", 0), (b"[]", 1), (b'{"a": [[1], {"b": []}]}', 4),
    (b'["[[[", "}}}"]', 1),                 # brackets in strings are text
    (b'["a\\"[[[", [[]]]', 3),              # so after an escaped quote
    (b'["a\\\\", [["]"]]]', 3),              # an escaped backslash ends no string early
    (b'[[["[[[[[[', 3),                      # an unterminated string runs to the end
    (b"[" * 100_000, 100_000),
    (json.dumps([[["x"]]]).encode("utf-16"), 3),
    (json.dumps(["[" * 70]).encode("utf-32"), 1),
])
def test_the_depth_is_that_of_the_brackets_outside_strings(body: bytes, depth: int) -> None:
    assert _json_depth(body) == depth


def test_a_body_of_escaped_quotes_takes_linear_time() -> None:
    """An open string followed by escaped quotes: a string pattern that must close would be
    tried again from every quote to the end (quadratic: hours for a few megabytes)."""
    started = time.perf_counter()
    assert _json_depth(b"[" * 65 + b'"' + b'\\"' * 1_000_000) == 65
    assert time.perf_counter() - started < 2
