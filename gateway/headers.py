"""Which headers cross the gateway, both ways. One rule set for both front ends.

The rules work on bytes, as the asyncio front end (``gateway.edge``) reads them off the wire;
``HttpUpstream`` (WSGI) calls the same rules through the ``str`` wrappers, whose latin-1 round
trip is exact for WSGI's header strings (PEP 3333).

* hop-by-hop headers (RFC 9110 §7.6.1, plus any named in ``Connection``) are removed both ways;
* ``Host``, ``Expect`` and ``Content-Length`` are the sending side's to set; ``X-Service-Token``
  from a client is dropped (only services may hold one);
* ``X-Forwarded-Proto/Host/Prefix`` and ``X-Request-ID`` are set by the gateway; the incoming
  ``X-Forwarded-Proto/Host`` are kept only when forwarded headers are trusted;
* the ``X-Forwarded-For`` a service receives always ends with the client address the gateway
  decided on (``forwarded_chain``; ``routing.client_address`` is its last hop), so a service
  that takes the right-most hop (identity's throttles, the audit trail) sees the client, never
  a proxy and never a forged entry. Every ``X-Forwarded-For`` line the request carries is read,
  in order, as one comma-separated list (RFC 9110 §5.3). Not trusted: the received chain, if
  any, then the peer. Trusted (``GATEWAY_TRUST_FORWARDED=1``): the received chain as it came
  (blank entries dropped), whose right-most hop, appended by our proxy, is the client; the
  proxy's own address is not appended. The in-process upstream applies the same rule.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                        "proxy-connection", "te", "trailer", "trailers", "transfer-encoding",
                        "upgrade"})
#: request headers the gateway never copies as they came
REQUEST_DROP = frozenset({"host", "content-length", "expect", "x-service-token", "x-request-id",
                          "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                          "x-forwarded-prefix"})

_HOP_RAW = frozenset(h.encode() for h in HOP_BY_HOP)
_REQUEST_DROP_RAW = _HOP_RAW | frozenset(h.encode() for h in REQUEST_DROP)

Raw = list[tuple[bytes, bytes]]


def _tokens(value: bytes) -> frozenset[bytes]:
    return frozenset(t.strip().lower() for t in value.split(b",") if t.strip())


def clean_response_raw(headers: Raw) -> Raw:
    """A service's answer headers without the hop-by-hop ones."""
    out = []
    named: frozenset[bytes] = frozenset()
    for key, value in headers:
        lower = key.lower()
        if lower in _HOP_RAW:
            if lower == b"connection":
                named = named | _tokens(value)
            continue
        out.append((key, value))
    named -= _HOP_RAW  # "close" and "keep-alive" name no header
    if named:
        out = [(k, v) for k, v in out if k.lower() not in named]
    return out


def first_values(headers: Raw) -> dict[bytes, bytes]:
    """Lower-case name -> its first value."""
    named: dict[bytes, bytes] = {}
    for key, value in headers:
        named.setdefault(key.lower(), value)
    return named


def forwarded_chain(received: str, remote: str, trust_forwarded: bool) -> list[str]:
    """The hops of the ``X-Forwarded-For`` sent to a service. ``received``: every
    ``X-Forwarded-For`` line of the request, joined with "," in order ("" when none);
    ``remote``: the peer. The last hop is the client address the gateway decided on:
    trusted, the right-most received hop (its proxy appended it); else, or when nothing was
    received, the peer ("unknown" when there is none)."""
    hops = [h for h in (p.strip() for p in received.split(",")) if h] if received else []
    if not (trust_forwarded and hops):
        hops.append(remote or "unknown")
    return hops


def received_forwarded_for(incoming: Raw) -> bytes:
    """Every ``X-Forwarded-For`` line of ``incoming``, in order, as one list (RFC 9110 §5.3)."""
    return b", ".join(v for k, v in incoming if k.lower() == b"x-forwarded-for")


def forward_raw(incoming: Raw, *, remote: bytes, scheme: bytes, prefix: bytes,
                request_id: bytes, trust_forwarded: bool,
                named: dict[bytes, bytes] | None = None) -> Raw:
    """The headers sent to a service for a client's ``incoming`` headers (``named``: their
    ``first_values``, when the caller has them already)."""
    if named is None:
        named = first_values(incoming)
    get = named.get
    connection = get(b"connection")
    drop = _REQUEST_DROP_RAW | _tokens(connection) if connection else _REQUEST_DROP_RAW
    out = [(k, v) for k, v in incoming if k.lower() not in drop]
    received = received_forwarded_for(incoming) if b"x-forwarded-for" in named else b""
    chain = forwarded_chain(received.decode("latin-1"), remote.decode("latin-1"),
                            trust_forwarded)
    out.append((b"X-Forwarded-For", ", ".join(chain).encode("latin-1")))
    proto = get(b"x-forwarded-proto", b"") if trust_forwarded else b""
    out.append((b"X-Forwarded-Proto", proto or scheme))
    host = (get(b"x-forwarded-host", b"") if trust_forwarded else b"") or get(b"host", b"")
    if host:
        out.append((b"X-Forwarded-Host", host))
    out.append((b"X-Forwarded-Prefix", prefix))
    out.append((b"X-Request-ID", request_id))
    return out


def _to_raw(pairs: Iterable[tuple[str, str]]) -> Raw:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


def _to_text(pairs: Raw) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs]


def clean_response_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return _to_text(clean_response_raw(_to_raw(headers)))


def forward_headers(incoming: list[tuple[str, str]], *, remote: str, scheme: str, prefix: str,
                    request_id: str, trust_forwarded: bool) -> list[tuple[str, str]]:
    return _to_text(forward_raw(
        _to_raw(incoming), remote=remote.encode("latin-1"), scheme=scheme.encode("latin-1"),
        prefix=prefix.encode("latin-1"), request_id=request_id.encode("latin-1"),
        trust_forwarded=trust_forwarded))
