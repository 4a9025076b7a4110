"""A request body of a media type its operation does not take is refused with ``415
Unsupported Media Type`` (RFC 9110 §15.5.16), a problem that names the types it takes.

Why: webargs (under flask-smorest) reads a route's ``json`` location only when the request says
its body is JSON, and its ``form`` and ``files`` only from a form. A JSON body sent as
``text/plain``, or with curl's bare ``-d`` (``application/x-www-form-urlencoded``), reached the
view as no body at all, and the client was told that every field was missing (a 422) when what
it got wrong was the ``Content-Type``; a JSON body sent to an upload route was "letter: a file
is required".

What an operation takes is what its OpenAPI document says: the media types of its
``requestBody``. ``servicekit.api_docs.HookDocs`` notes them here (``remember``) as it writes
each operation, whether they came from ``@blp.arguments`` (``json``: ``application/json``;
``files``: ``multipart/form-data``) or from a view's own ``@blp.doc(requestBody=...)`` — so a
view that reads its body itself (lawyer verification: JSON or multipart) is covered too, and
the document cannot name one type while the hook takes another. A body documented as
``application/json`` may come as any JSON type (``application/*+json`` too) with any parameters
(``; charset=utf-8``): what webargs and ``request.is_json`` read as JSON.

Only a request that has a body is judged — a ``Content-Length`` above 0, or a chunked body
(whose length is not known until it is read): a body-less POST on a route whose body is optional
runs as before, and one on a route whose body is required is still the view's 422 naming the
missing fields. A route that documents no body is not looked at.

The hint: the problem lists the types in ``accepted``, and a POST's answer carries
``Accept-Post`` (W3C Linked Data Platform 1.0 §7.1, IANA-registered), a PATCH's ``Accept-Patch``
(RFC 5789 §2.2: a 415 for a patch format "SHOULD include" it). ``Accept`` is a request header
about responses, and RFC 9110 names a response hint only for content codings
(``Accept-Encoding``); a PUT has no such header, and its problem's ``accepted`` is the hint.

The web layer decides it right after the access checks (``servicekit.web``: a stranger learns
nothing but its 401/403), from the request's headers alone, and first of its looks at a body:
a body of a type the operation does not take is told so, not refused for what it holds — JSON
nested too deep or holding U+0000 sent to an upload route, a urlencoded form with U+0000 in a
field sent to a JSON route, were a 400 or a 422 about their content, though what the client
got wrong was the type. (A body of a type the operation takes is looked at as before: such a
form's field holding U+0000 is still that field's 422.)

It comes before the ``Idempotency-Key`` is looked at, too: the refusal needs no database round
trip (as the kit's other refusals of what a request is — a body nested too deep, a NUL — need
none), and the key is neither reserved nor kept, so the corrected request, sent again with the
same key, runs. A request resent under a used key with a type its operation does not take
(the same JSON bytes as ``text/plain``, say) is this 415 as well, nothing done: it was the first
answer replayed, though the request was not the one answered. Told that its type is wrong, the
client corrects it and is given the first answer under the same key; told only that the key
was used for another request (``servicekit.idempotency``'s 422, had the key been looked at
first), it would be pointed to a new key, under which the corrected request would make the
first one's change again.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from webargs.core import is_json

from servicekit.problems import PROBLEM_JSON, Problem

#: ``app.extensions`` key: (endpoint, METHOD) -> the media types of the operation's body
BODY_TYPES = "ecourt.body_types"
#: the response header that lists the media types a method's body may have
_HINT_HEADERS = {"POST": "Accept-Post", "PATCH": "Accept-Patch"}


def remember(extensions: dict[str, Any], endpoint: str, method: str,
             operation: dict[str, Any]) -> tuple[str, ...]:
    """Note the media types of ``operation``'s documented ``requestBody`` for the request hook;
    returns them (none: the operation documents no body)."""
    types = tuple((operation.get("requestBody") or {}).get("content") or ())
    if types:
        extensions.setdefault(BODY_TYPES, {})[(endpoint, method.upper())] = types
    return types


def takes(declared: str, mimetype: str) -> bool:
    """Whether a body documented as ``declared`` may be sent as ``mimetype`` (the request's
    type without parameters, lower case): JSON as any JSON type, a range (``image/*``) as any
    type in it, any other type as itself."""
    declared = declared.lower()
    if declared == "application/json":
        return is_json(mimetype)
    kind, _, subtype = declared.partition("/")
    sent_kind, _, sent_subtype = mimetype.partition("/")
    return bool(sent_subtype) and kind in ("*", sent_kind) and subtype in ("*", sent_subtype)


def _has_body() -> bool:
    """A body was sent: a length above 0, or chunked (not read to find out: a body is read
    once, by what comes after)."""
    if request.content_length:
        return True
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _either(types: tuple[str, ...]) -> str:
    return " or ".join(types)


def refuse_unsupported_media_type() -> None:
    """Raise the 415 problem when the request has a body of a type its operation does not
    take."""
    if request.endpoint is None:
        return  # no route: its 404/405 follows
    types = current_app.extensions.get(BODY_TYPES, {}).get((request.endpoint, request.method))
    if not types or not _has_body() or any(takes(t, request.mimetype) for t in types):
        return
    sent = (f"the request body is {request.mimetype}" if request.mimetype
            else "the request body has no Content-Type")
    send = (f"send it with Content-Type: {types[0]}" if len(types) == 1
            else "send it with the Content-Type of one of them")
    hint = _HINT_HEADERS.get(request.method)
    raise Problem(415, "unsupported-media-type",
                  f"{sent}, and this operation takes a body of {_either(types)}: {send}",
                  headers={hint: ", ".join(types)} if hint else None, accepted=list(types))


def documented(method: str, types: tuple[str, ...], own: Any) -> dict[str, Any]:
    """The operation's 415 response in its OpenAPI document: the route's own 415 (an upload
    of the wrong kind) widened by this one, or this one alone."""
    what = f"the request body is not {_either(types)} (`unsupported-media-type`)"
    own = own if isinstance(own, dict) else {}
    response: dict[str, Any] = {
        **own,
        "description": f"{own['description']}; or {what}" if own.get("description") else what,
        # the name the marshmallow plugin gives ``servicekit.web.ProblemSchema``
        "content": own.get("content") or {PROBLEM_JSON: {"schema": "Problem"}},
    }
    hint = _HINT_HEADERS.get(method.upper())
    if hint:
        response["headers"] = {**own.get("headers", {}), hint: {
            "description": "the media types this operation's body may have, comma-separated",
            "schema": {"type": "string"}}}
    return response
