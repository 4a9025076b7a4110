"""Which headers cross the gateway, both ways. One rule set for both front ends.

The rules work on bytes, as the asyncio front end (``gateway.edge``) reads them off the wire;
``HttpUpstream`` (WSGI) calls the same rules through the ``str`` wrappers, whose latin-1 round
trip is exact for WSGI's header strings (PEP 3333).

* hop-by-hop headers (RFC 9110 §7.6.1, plus any named in ``Connection``) are removed both ways;
* ``Host``, ``Expect`` and ``Content-Length`` are the sending side's to set; ``X-Service-Token``
  from a client is dropped (only services may hold one);
* ``X-Forwarded-Proto/Host/Prefix`` and ``X-Request-ID`` are set by the gateway, one value
  each. Only when forwarded headers are trusted is the incoming ``X-Forwarded-Proto/Host`` used,
  and then the value the nearest proxy set: every line of the header read in order as one
  comma-separated list, its right-most non-blank entry (``nearest_value``), as for the client
  address below. A proxy appends its value after whatever came to it, so the first value may
  be the client's own (``X-Forwarded-Proto: https`` sent over plain http). With nothing
  trusted, or nothing received, the gateway's own scheme and the request's ``Host``;
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

from collections.abc import Callable, Iterable

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


def nearest_value(received: str) -> str:
    """The right-most non-blank entry of a comma-separated header value ("" when none): the
    one the nearest proxy set. ``received``: every line of the header, joined with "," in
    order (as a WSGI server joins them)."""
    for entry in reversed(received.split(",")):
        entry = entry.strip()
        if entry:
            return entry
    return ""


def received_lines(incoming: Raw, name: bytes) -> bytes:
    """Every ``name`` (lower-case) line of ``incoming``, in order, as one list (RFC 9110 §5.3)."""
    return b", ".join(v for k, v in incoming if k.lower() == name)


def received_forwarded_for(incoming: Raw) -> bytes:
    """Every ``X-Forwarded-For`` line of ``incoming``, in order, as one list."""
    return received_lines(incoming, b"x-forwarded-for")


def forwarded_values(received: Callable[[str], str], *, host: str, remote: str, scheme: str,
                     prefix: str, trust_forwarded: bool) -> list[tuple[str, str]]:
    """The ``X-Forwarded-For/Proto/Host/Prefix`` a service receives, whichever tier and front
    end forwards the request: one function, so a service builds the same links and sees the
    same client in each. ``received(name)``: every line of the request's header ``name``
    (lower-case), joined with "," in order ("" when none); ``host``: its ``Host``; ``remote``:
    the peer; ``scheme``: the gateway's own; ``prefix``: where the service is mounted."""
    chain = forwarded_chain(received("x-forwarded-for"), remote, trust_forwarded)
    proto = nearest_value(received("x-forwarded-proto")) if trust_forwarded else ""
    out = [("X-Forwarded-For", ", ".join(chain)), ("X-Forwarded-Proto", proto or scheme)]
    forwarded_host = (nearest_value(received("x-forwarded-host")) if trust_forwarded
                      else "") or host
    if forwarded_host:
        out.append(("X-Forwarded-Host", forwarded_host))
    out.append(("X-Forwarded-Prefix", prefix))
    return out


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

    def received(name: str) -> str:
        key = name.encode("latin-1")
        return received_lines(incoming, key).decode("latin-1") if key in named else ""

    out.extend(_to_raw(forwarded_values(
        received, host=get(b"host", b"").decode("latin-1"), remote=remote.decode("latin-1"),
        scheme=scheme.decode("latin-1"), prefix=prefix.decode("latin-1"),
        trust_forwarded=trust_forwarded)))
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
