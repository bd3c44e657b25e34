"""Where hooks may send: the one reading of a hook URL, and the SSRF rule on addresses.

Loopback, private, link-local, CGNAT, reserved, multicast and IPv6 unique-local or site-local
addresses are refused, as are IPv4-mapped/compatible forms of them and the 6to4/NAT64 ranges
that reach IPv4 networks, unless ``HOOKS_ALLOWED_NETWORKS`` lists a CIDR containing them.
The save-time check (``validate_hook_url``) and the connection (``hooks.transport``) both
read a URL with ``parse_hook_url``, so what was checked is what is reached.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# IPv6 ranges that carry an IPv4 address to an IPv4 network: refused whole, like Svix does.
_IPV4_TRANSLATION = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "2001::/32")
)
_DOCUMENTATION = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
_SPECIAL_IPV4 = tuple(
    ipaddress.ip_network(cidr) for cidr in ("192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15")
)


class AddressNotAllowed(Exception):
    """The URL's host resolves only to addresses hooks may not reach."""


# --- Which addresses are allowed ---------------------------------------------------------


@lru_cache(maxsize=8)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"HOOKS_ALLOWED_NETWORKS: {cidr!r} is not a CIDR such as 127.0.0.0/8"
            ) from None
    return tuple(networks)


def allowed_networks() -> tuple[IPNetwork, ...]:
    configured = settings.HOOKS_ALLOWED_NETWORKS
    if isinstance(configured, str):
        configured = configured.split(",")
    return _parse_networks(tuple(c for c in configured if c.strip()))


def refusal_reason(ip: IPAddress) -> str | None:
    """Why hooks may not reach ``ip``, or None when they may."""
    plain: IPAddress = ip
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        plain = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if any(address in network for network in allowed_networks() for address in (ip, plain)):
        return None
    if plain.is_loopback:
        return "a loopback address"
    if plain.is_unspecified:
        return "the unspecified address"
    if plain.is_link_local:
        return "a link-local address"
    if plain.is_multicast:
        return "a multicast address"
    if plain in _CGNAT:
        return "a carrier-grade NAT (100.64.0.0/10) address"
    if isinstance(plain, ipaddress.IPv6Address):
        if plain in _UNIQUE_LOCAL:
            return "an IPv6 unique-local address"
        if plain.is_site_local:
            return "an IPv6 site-local address"
        if any(plain in network for network in _IPV4_TRANSLATION):
            return "an IPv6 range that reaches IPv4 networks (6to4, NAT64, Teredo)"
    elif any(plain in network for network in _SPECIAL_IPV4):
        return "a special-purpose address"
    if any(plain in network for network in _DOCUMENTATION):
        return "a documentation address"
    if plain.is_reserved:
        return "a reserved address"
    if plain.is_private:
        return "a private address"
    if not plain.is_global:
        return "a reserved address"
    return None


def resolve_allowed_addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    """Resolve ``host`` once; return the (family, sockaddr) pairs hooks may connect to.

    Raises ``AddressNotAllowed`` naming an address and the rule when none is left, and
    ``socket.gaierror`` when the name does not resolve.
    """
    allowed: list[tuple[int, tuple]] = []
    refused: list[tuple[str, str]] = []
    for family, _type, _proto, _name, sockaddr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        reason = refusal_reason(ip)
        if reason:
            refused.append((str(ip), reason))
        elif (family, sockaddr) not in allowed:
            allowed.append((family, sockaddr))
    if not allowed:
        address, reason = refused[0] if refused else ("nothing", "no usable address")
        shown = host if host == address else f"{host} resolves to {address}, which"
        raise AddressNotAllowed(
            f"{shown} is {reason}; hooks may not send there unless HOOKS_ALLOWED_NETWORKS "
            "includes it"
        )
    return allowed


class InvalidHookURL(ValidationError):
    """A Django ValidationError (forms and DRF field validators show it) whose ``str`` is
    the plain message."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class HookTarget:
    """Where a hook URL sends, read once by ``parse_hook_url`` for both the save-time check
    and the connection, so what was checked is what is reached."""

    scheme: str  # http or https
    host: str  # a name (IDNA, ASCII) or an IP address, IPv6 without its brackets
    port: int  # the URL's, or the scheme's default: always given, never guessed from host
    request_uri: str  # path and query, %-escaped as sent
    auth: str | None  # the URL's user[:password], still %-escaped; None when absent


DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_hook_url(url: str) -> HookTarget:
    """The one reading of a hook URL; raises ``InvalidHookURL`` saying what is wrong.

    The port is always passed on explicitly: left out, ``http.client`` would look for one
    after the host's last colon, reading ``2606:4700::abcd`` as a bad port and
    ``2606:4700::1234`` as host ``2606:4700:`` with port 1234.
    """
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise InvalidHookURL("url is not a valid URL") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise InvalidHookURL("url must start with http:// or https://")
    if not parsed.host:
        raise InvalidHookURL("url has no host")
    if parsed.port == 0:
        raise InvalidHookURL("url's port must be between 1 and 65535")
    host = parsed.host
    if host.startswith("["):
        host = host[1:-1]  # an IPv6 literal, which urllib3 has checked
    if not host.isascii():  # urllib3 gives names in IDNA form; anything else cannot be sent
        raise InvalidHookURL("url's host is not a valid host name")
    return HookTarget(
        scheme=parsed.scheme,
        host=host,
        port=parsed.port or DEFAULT_PORTS[parsed.scheme],
        request_uri=parsed.request_uri,
        auth=parsed.auth,
    )


def validate_hook_url(url: str) -> None:
    """Save-time check of a hook URL, for forms and the API; raises ``InvalidHookURL``.

    Refuses what can never work (not http/https, no host, a bad port) and hosts that resolve
    only to refused addresses. A host that does not resolve yet is accepted: DNS may follow,
    and the connect-time check in ``send`` is the real guard.
    """
    target = parse_hook_url(url)
    try:
        resolve_allowed_addresses(target.host, target.port)
    except AddressNotAllowed as exc:
        raise InvalidHookURL(f"url is blocked: {exc}") from None
    except (OSError, UnicodeError):
        return
