"""Who may read the gateway's own ``/metrics``: Prometheus inside the deployment, not the
internet.

The gateway is the one process the public reaches, and its ``/metrics`` (in the embedded tier,
every service's: request counts by route and status, events, outbox backlogs, overdue
applications) is operational detail nobody outside needs; the services' own ``/metrics`` are
hidden at the gateway already (``routing.HIDDEN_SEGMENTS``). Prometheus scrapes the gateway
from inside the deployment — the compose network, a cluster's pod network, the host itself —
so the page is answered to addresses in ``GATEWAY_METRICS_FROM`` (comma-separated addresses or
CIDR networks; by default loopback and the private ranges) and is a plain 404 to anyone else,
as a route that does not exist.

The address checked is the one the rate limits count (``routing.client_address``): behind the
court's ingress with ``GATEWAY_TRUST_FORWARDED=1`` that is the real client, so a request from
the internet relayed by a proxy on a private address is still refused. (Without that setting
behind a proxy every client looks like the proxy, which is also why the limits need it.)
An empty setting serves the page to nobody.
"""

from __future__ import annotations

import ipaddress
import os

from servicekit.config import ConfigError

SETTING = "GATEWAY_METRICS_FROM"
#: loopback; RFC 1918; RFC 6598's shared space (some clusters' pod networks); IPv6 unique local
DEFAULT = ("127.0.0.0/8,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,"
           "::1/128,fc00::/7")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class MetricsReaders:
    """The networks whose addresses may read ``/metrics``."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks

    def allow(self, address: str) -> bool:
        """Whether ``address`` (as the limits count it: an IP, an IPv6 one perhaps with a zone,
        or an IPv4 one mapped into IPv6 by a dual-stack socket) is in one of the networks;
        anything that is not an address is refused."""
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def readers_from(value: str | None = None) -> MetricsReaders:
    """The readers of ``value`` (a setting's text), or of ``GATEWAY_METRICS_FROM`` when None
    (``DEFAULT`` when it is not set); a ConfigError naming the setting for an entry that is
    neither an address nor a network."""
    text = os.environ.get(SETTING, DEFAULT) if value is None else value
    networks = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(f"{SETTING}: {entry!r} is not an address or a network: write "
                              "addresses or CIDR networks, comma-separated, e.g. "
                              "10.0.0.0/8,127.0.0.1") from None
    return MetricsReaders(tuple(networks))
