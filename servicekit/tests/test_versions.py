"""``servicekit.versions``: how If-Match and If-None-Match are decided against a resource's
current ETag (RFC 9110 §13, RFC 6585 §3), for every service alike."""

from __future__ import annotations

import pytest
from flask import Flask

from servicekit.problems import Problem
from servicekit.versions import Precondition, etag_header

APP = Flask(__name__)


def _decide(current: str | None, **headers: str) -> None:
    with APP.test_request_context("/x", method="POST", headers=headers):
        Precondition.of_request().decide(current, "seal")


def _refused(current: str | None, **headers: str) -> Problem:
    with pytest.raises(Problem) as caught:
        _decide(current, **headers)
    return caught.value


def test_an_update_without_if_match_is_428_telling_the_client_what_to_send() -> None:
    problem = _refused("3")
    assert (problem.status, problem.slug) == (428, "precondition-required")
    assert "read the seal" in (problem.detail or "") and "If-Match" in (problem.detail or "")
    assert _refused("3", **{"If-Match": " "}).status == 428  # blank: none sent


@pytest.mark.parametrize("header", ['"3"', '"1", "3"', "*", "3", ' "3" '])
def test_the_current_tag_star_or_a_list_holding_it_matches(header: str) -> None:
    _decide("3", **{"If-Match": header})  # an unquoted 3 is read as "3" (werkzeug's leniency)


@pytest.mark.parametrize("header", ['"2"', '"seal-3"', '"1", "2"'])
def test_another_tag_is_412(header: str) -> None:
    problem = _refused("3", **{"If-Match": header})
    assert (problem.status, problem.slug) == (412, "precondition-failed")


def test_a_weak_tag_never_matches_and_the_detail_says_why() -> None:
    problem = _refused("3", **{"If-Match": 'W/"3"'})
    assert (problem.status, problem.slug) == (412, "precondition-failed")
    assert "weak" in (problem.detail or "")
    assert "weak" not in (_refused("3", **{"If-Match": '"2"'}).detail or "")


@pytest.mark.parametrize("header", ['"3" junk', ",,,", '"unterminated', '"a"b'])
def test_a_header_with_no_readable_tag_is_400(header: str) -> None:
    problem = _refused("3", **{"If-Match": header})
    assert (problem.status, problem.slug) == (400, "invalid-if-match")
    assert _refused(None, **{"If-Match": header}).status == 400


def test_a_create_needs_nothing_and_any_if_match_fails_it() -> None:
    _decide(None)
    _decide(None, **{"If-None-Match": "*"})
    for header in ("*", '"1"'):
        problem = _refused(None, **{"If-Match": header})
        assert (problem.status, problem.slug) == (412, "precondition-failed")


@pytest.mark.parametrize("extra", [{}, {"If-Match": '"3"'}, {"If-Match": "*"}])
def test_if_none_match_star_refuses_an_existing_resource(extra: dict[str, str]) -> None:
    problem = _refused("3", **{"If-None-Match": "*"}, **extra)
    assert (problem.status, problem.slug) == (412, "precondition-failed")
    assert "exists already" in (problem.detail or "")
    _decide("3", **{"If-None-Match": '"2"', "If-Match": '"3"'})  # another tag: no objection


def test_the_etag_header_quotes_the_tag_as_it_is() -> None:
    assert etag_header("3") == {"ETag": '"3"'}
    assert etag_header("seal-3") == {"ETag": '"seal-3"'}
