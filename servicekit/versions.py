"""Versioned resources: the ETag a response carries, and the If-Match an update must send.

DESIGN (Conventions): "responses send an ETag, updates take If-Match, and a stale write gets
412 — two clerks saving the same application never lose an update." An update that sends no
If-Match would overwrite whatever the other clerk saved, so it is refused too.

The headers are parsed by werkzeug (``request.if_match``, ``request.if_none_match``: ``ETags``)
and decided here, one way for every service. flask-smorest's own ETag feature
(``Blueprint.etag``, ``check_etag``) does not fit: its tags are a SHA-1 of the dumped body,
not the ``"<version>"`` / ``"seal-<version>"`` clients already hold; it requires If-Match only
on PUT, PATCH and DELETE (our updates are POSTs to an action); and it raises 428 before the view
runs, so before a stranger's 403/404 and whether or not the resource exists yet.

How a request is decided (RFC 9110 §13.2.2's order), in the view's transaction, **after** the
caller was authorised and the resource found, and before anything changes:

* the resource exists and no If-Match came → ``428 precondition-required`` (RFC 6585 §3):
  read the resource and send its ETag in If-Match. A blank If-Match counts as none.
* an If-Match from which no entity-tag can be read (``"3" junk``, ``,,,``) → ``400
  invalid-if-match``. werkzeug reads an unquoted token (``3``) as the tag ``"3"``; that leniency
  is kept (matters' own parser accepted it).
* If-Match is compared **strongly** (RFC 9110 §13.1.1): ``W/"3"`` never matches ``"3"``, so a
  weak tag gets 412 (its detail says why). ``*`` matches any existing resource and never a
  missing one; a list matches if any of its tags does.
* ``If-None-Match: *`` (or the current tag in If-None-Match) asks to create only: against an
  existing resource it is 412 (RFC 9110 §13.1.2), checked after If-Match, or instead of the 428
  when it is the only precondition sent (the client's intent, "create only", is then plain).
* no resource yet (a create): nothing is required; any If-Match is 412 (nothing to match).

A refusal raises before the change, so the transaction rolls back: nothing is written, no event
is emitted, and the audit trail records no change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import request
from flask_smorest import Blueprint
from werkzeug.datastructures import ETags
from werkzeug.http import quote_etag

from servicekit.problems import PROBLEM_JSON, Problem

F = TypeVar("F", bound=Callable[..., Any])

#: the If-Match parameter as documented on an update (``documented``)
IF_MATCH = {
    "in": "header", "name": "If-Match", "schema": {"type": "string"},
    "description": "The ETag of the version you read (a GET's or the last update's `ETag`), "
                   "or `*` for whatever version exists. Compared strongly: a weak `W/` tag "
                   "never matches.",
}
IF_NONE_MATCH = {
    "in": "header", "name": "If-None-Match", "required": False, "schema": {"type": "string"},
    "description": "`*`: create only — refused with 412 if the resource exists already.",
}


def etag_header(tag: str) -> dict[str, str]:
    """The ``ETag`` response header of a resource whose current tag is ``tag`` (unquoted)."""
    return {"ETag": quote_etag(tag)}


@dataclass(frozen=True)
class Precondition:
    """What the client said about the version it read, kept from the request so it can be
    decided later, once the caller is authorised and the resource loaded (a stranger still
    gets 401/403/404 and learns nothing from a 428)."""

    if_match: ETags
    if_match_sent: bool
    if_none_match: ETags

    @classmethod
    def of_request(cls) -> Precondition:
        """The current request's If-Match and If-None-Match (werkzeug's parser)."""
        sent = bool(request.headers.get("If-Match", "").strip())
        return cls(request.if_match, sent, request.if_none_match)

    def decide(self, current: str | None, what: str) -> None:
        """Raise the Problem this request's preconditions call for against the resource whose
        current (unquoted) tag is ``current``, or ``None`` if it does not exist yet."""
        if self.if_match_sent:
            self._check_if_match(current, what)
        elif current is not None and not self._create_only(current):
            raise Problem(428, "precondition-required",
                          f"updating a {what} needs its version: read the {what} and send its "
                          "ETag in If-Match (or * for whatever version exists)")
        if current is not None and self._create_only(current):
            raise Problem(412, "precondition-failed",
                          f"If-None-Match asked to create only, and the {what} exists already: "
                          "read it and send its ETag in If-Match to replace it")

    def _create_only(self, current: str) -> bool:
        return self.if_none_match.contains_weak(current)  # "*" matches too (RFC 9110 §13.1.2)

    def _check_if_match(self, current: str | None, what: str) -> None:
        if not self.if_match:
            raise Problem(400, "invalid-if-match",
                          'If-Match must be one or more quoted ETags such as "3", or *')
        if current is None:
            raise Problem(412, "precondition-failed",
                          f"there is no {what} yet to match If-Match: send none to create it")
        if not self.if_match.contains(current):
            weak = "" if self.if_match.as_set() or self.if_match.star_tag else (
                " (If-Match compares strongly: a weak W/ tag never matches)")
            raise Problem(412, "precondition-failed",
                          f"the {what} changed since you read it: read it again{weak}")


def documented(blp: Blueprint, what: str, *, create: bool = False) -> Callable[[F], F]:
    """Document the preconditions on an update route: the If-Match parameter (required unless
    the route also ``create``s, when If-None-Match is offered too) and the 400, 412 and 428
    problems ``Precondition.decide`` may answer."""
    def problem(status: int, description: str) -> Callable[[F], F]:
        return blp.alt_response(status, schema="Problem", content_type=PROBLEM_JSON,
                                description=description)

    when = (f"Required to replace an existing {what} (428 without it); 412 if the {what} "
            "changed since, or does not exist yet." if create else
            "Required (428 without it); 412 if it changed since.")
    params = [{**IF_MATCH, "required": not create,
               "description": f"{IF_MATCH['description']} {when}"}]
    if create:
        params.append(IF_NONE_MATCH)

    def decorate(func: F) -> F:
        func = problem(428, f"precondition-required: no If-Match on an update of an existing "
                            f"{what}; read it and send its ETag")(func)
        func = problem(412, f"precondition-failed: the {what} changed since its ETag was read "
                            "(or If-None-Match: * and it exists)")(func)
        func = problem(400, "invalid-if-match: no ETag could be read from If-Match")(func)
        return blp.doc(parameters=params)(func)  # type: ignore[no-any-return]
    return decorate
