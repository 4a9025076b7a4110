"""The header rules (``gateway.headers``), pinned on awkward inputs, in both the ``str`` form
the WSGI front end uses and the bytes form the asyncio front end uses."""

from __future__ import annotations

import pytest

from gateway.headers import clean_response_headers, clean_response_raw, forward_headers, forward_raw
from gateway.routing import client_address

INCOMING = [
    [("Host", "gw:8080"), ("Authorization", "Bearer t"), ("Accept", "application/json")],
    [("Host", "gw"), ("Connection", "X-Hop, keep-alive"), ("X-Hop", "1"), ("Keep-Alive", "5"),
     ("X-Service-Token", "guess"), ("X-Request-ID", "theirs"), ("X-Forwarded-For", "6.6.6.6"),
     ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "portal.court"), ("Cookie", "a=1"),
     ("Cookie", "b=2"), ("Content-Length", "3"), ("Expect", "100-continue"),
     ("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("X-Custom", "kept")],
    [("x-forwarded-for", "203.0.113.7, 10.0.0.1"), ("UPGRADE", "websocket")],
]


@pytest.mark.parametrize("incoming", INCOMING)
@pytest.mark.parametrize("trust", [False, True])
@pytest.mark.parametrize("remote", ["198.51.100.4", ""])
def test_forward_rules_agree(incoming, trust, remote):
    text = forward_headers(incoming, remote=remote, scheme="http", prefix="/api/svc",
                           request_id="rid-1", trust_forwarded=trust)
    raw = forward_raw([(k.encode(), v.encode()) for k, v in incoming],
                      remote=remote.encode(), scheme=b"http", prefix=b"/api/svc",
                      request_id=b"rid-1", trust_forwarded=trust)
    assert text == [(k.decode(), v.decode()) for k, v in raw]
    names = {k.lower() for k, _ in text}
    assert not names & {"connection", "keep-alive", "x-hop", "x-service-token", "host",
                        "content-length", "expect", "transfer-encoding", "te", "upgrade"}
    assert ("X-Request-ID", "rid-1") in text and ("X-Forwarded-Prefix", "/api/svc") in text
    chain = next((v for k, v in incoming if k.lower() == "x-forwarded-for"), "")
    decided = client_address(remote, chain, trust)
    expected = chain if trust and chain else ", ".join(filter(None, [chain, decided]))
    assert [v for k, v in text if k == "X-Forwarded-For"] == [expected]
    assert expected.rpartition(", ")[2] == decided


#: (the request's X-Forwarded-For lines, the peer, trusted?) -> the chain a service receives
CHAINS = [
    # not trusted: the received chain, then the peer; a forged right-most hop stays to its left
    ([], "198.51.100.4", False, "198.51.100.4"),
    (["6.6.6.6, 203.0.113.7"], "198.51.100.4", False, "6.6.6.6, 203.0.113.7, 198.51.100.4"),
    (["6.6.6.6", "203.0.113.7"], "198.51.100.4", False, "6.6.6.6, 203.0.113.7, 198.51.100.4"),
    (["6.6.6.6"], "", False, "6.6.6.6, unknown"),
    # trusted: the chain as it came (our proxy appended the client), no proxy address after it
    (["6.6.6.6, 203.0.113.7"], "10.1.2.3", True, "6.6.6.6, 203.0.113.7"),
    # two lines are one list, in order: the client's own line does not decide
    (["6.6.6.6", "203.0.113.7"], "10.1.2.3", True, "6.6.6.6, 203.0.113.7"),
    (["6.6.6.6,, 203.0.113.7 ,"], "10.1.2.3", True, "6.6.6.6, 203.0.113.7"),
    ([" , "], "10.1.2.3", True, "10.1.2.3"),
    ([], "10.1.2.3", True, "10.1.2.3"),
]


@pytest.mark.parametrize(("lines", "remote", "trust", "expected"), CHAINS)
def test_forwarded_for_ends_with_the_decided_client(lines, remote, trust, expected):
    """The chain a service receives ends with ``routing.client_address`` for the same request
    (the old rules appended the trusted proxy's address, kept only the first line, and dropped
    the received chain when untrusted)."""
    incoming = [("Host", "gw"), *(("X-Forwarded-For", line) for line in lines)]
    raw = forward_raw([(k.encode(), v.encode()) for k, v in incoming], remote=remote.encode(),
                      scheme=b"http", prefix=b"/api/svc", request_id=b"rid-1",
                      trust_forwarded=trust)
    assert [v for k, v in raw if k == b"X-Forwarded-For"] == [expected.encode()]
    assert expected.rpartition(", ")[2] == client_address(remote, ",".join(lines), trust)


def test_response_rules_agree():
    answer = [("Content-Type", "application/json"), ("Connection", "close, X-Internal"),
              ("X-Internal", "1"), ("Transfer-Encoding", "chunked"), ("Set-Cookie", "a=1"),
              ("Set-Cookie", "b=2"), ("Keep-Alive", "timeout=5")]
    text = clean_response_headers(answer)
    raw = clean_response_raw([(k.encode(), v.encode()) for k, v in answer])
    assert text == [(k.decode(), v.decode()) for k, v in raw]
    assert text == [("Content-Type", "application/json"), ("Set-Cookie", "a=1"),
                    ("Set-Cookie", "b=2")]


#: (the request's X-Forwarded-Proto lines, its X-Forwarded-Host lines, trusted?) -> the
#: X-Forwarded-Proto and X-Forwarded-Host a service receives (the gateway's scheme is http, the
#: request's Host gw:8080)
PROTO_HOST = [
    # trusted: the value the nearest proxy set, the right-most of every line read in order
    (["https", "http"], ["evil.example", "portal.court"], True, "http", "portal.court"),
    (["http", "https"], ["portal.court"], True, "https", "portal.court"),
    (["http, https"], ["evil.example, portal.court"], True, "https", "portal.court"),
    (["https", " , "], ["portal.court,"], True, "https", "portal.court"),
    ([" "], [""], True, "http", "gw:8080"),  # nothing usable: the gateway's own
    ([], [], True, "http", "gw:8080"),
    # not trusted: whatever came is ignored
    (["https", "https"], ["evil.example", "portal.court"], False, "http", "gw:8080"),
]


@pytest.mark.parametrize(("protos", "hosts", "trust", "proto", "host"), PROTO_HOST)
def test_forwarded_proto_and_host_are_the_nearest_proxys(protos, hosts, trust, proto, host):
    """Several ``X-Forwarded-Proto/Host`` lines (one per proxy): a service receives one value
    each, the nearest proxy's, in the bytes form (lines as on the wire) and in the ``str`` form
    (the lines joined with "," by the WSGI server). Only the first line was read, so a client
    that wrote its own line before our proxy's chose the scheme and host of the links built
    for it."""
    lines = [("Host", "gw:8080"), *(("X-Forwarded-Proto", v) for v in protos),
             *(("X-Forwarded-Host", v) for v in hosts)]
    raw = forward_raw([(k.encode(), v.encode()) for k, v in lines], remote=b"10.1.2.3",
                      scheme=b"http", prefix=b"/api/svc", request_id=b"rid-1",
                      trust_forwarded=trust)
    assert [v for k, v in raw if k == b"X-Forwarded-Proto"] == [proto.encode()]
    assert [v for k, v in raw if k == b"X-Forwarded-Host"] == [host.encode()]
    joined = [("Host", "gw:8080")]  # as WSGI hands them over: one value per name
    joined += [(name, ",".join(values)) for name, values in
               (("X-Forwarded-Proto", protos), ("X-Forwarded-Host", hosts)) if values]
    text = forward_headers(joined, remote="10.1.2.3", scheme="http", prefix="/api/svc",
                           request_id="rid-1", trust_forwarded=trust)
    assert [v for k, v in text if k == "X-Forwarded-Proto"] == [proto]
    assert [v for k, v in text if k == "X-Forwarded-Host"] == [host]
