"""Every outbound connection Switchboard makes goes through here: the one seam for tests and for
policy (destinations, timeouts, size limits, headers). Upstream agents, LLM endpoints and task
upstreams all use it.

Destination policy: tenants choose upstream URLs, so a URL could aim the gateway at the machine's own
services or the private network (server-side request forgery). Every connection resolves the host
itself and connects only to an address the policy allows; the address checked is the address
connected to, so DNS rebinding and odd spellings (``0x7f000001``, ``127.1``, ``[::ffff:127.0.0.1]``)
cannot slip past. Loopback, private, link-local, unique-local, multicast, unspecified and other
reserved ranges are refused unless listed in ``OUTBOUND_ALLOWED_NETWORKS``. Connections the operator
configured (the built-in local agent, ``LOCAL_AGENT_LLM_URL``) pass ``trusted=True``. No proxy from
the environment is used and no redirect is followed: either would move the connection elsewhere.
A refused destination fails exactly like an unreachable one (``DestinationRefused`` is an OSError).
"""
from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import json
import socket
import ssl
import typing
from collections.abc import AsyncIterator, Iterable
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
import websockets
from django.conf import settings
from websockets.asyncio.client import ClientConnection

from realtime.lib.frames import UpstreamClientConnection
from realtime.lib.keepalive import keepalive_add

CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class DestinationRefused(OSError):
    """The destination resolves only to addresses the outbound policy refuses."""


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def allowed_networks() -> tuple[Network, ...]:
    return _networks_parse(tuple(settings.OUTBOUND_ALLOWED_NETWORKS))


@functools.lru_cache(maxsize=8)
def _networks_parse(spec: tuple[str, ...]) -> tuple[Network, ...]:
    # Parsed once per setting value, not on every connect of a connect storm.
    return tuple(ipaddress.ip_network(net, strict=False) for net in spec)


def address_allowed(address: str | IPAddress, *, allowed: Iterable | None = None) -> bool:
    """True when the policy lets Switchboard connect to this address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    networks = allowed_networks() if allowed is None else tuple(allowed)
    if any(ip.version == net.version and ip in net for net in networks):
        return True
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return address_allowed(embedded, allowed=networks)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_private or ip.is_link_local)


async def _resolve(host: str, port: int) -> list[tuple[int, tuple]]:
    """(family, sockaddr) of every address the host resolves to that the policy allows."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    found: list[tuple[int, tuple]]
    if literal is not None:  # an address as written needs no resolver thread (odd spellings do: below)
        found = [(socket.AF_INET, (host, port)) if literal.version == 4 else (socket.AF_INET6, (host, port, 0, 0))]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             proto=socket.IPPROTO_TCP)
        found = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
    usable = [(family, sockaddr) for family, sockaddr in found
              if family in (socket.AF_INET, socket.AF_INET6) and address_allowed(str(sockaddr[0]))]
    if not usable:
        raise DestinationRefused(errno.EACCES, "the address is on a loopback, private or otherwise internal "
                                 "network, which Switchboard does not connect to")
    return usable


async def _open_socket(host: str, port: int) -> socket.socket:
    """A connected non-blocking TCP socket to the first allowed address of ``host`` that answers."""
    loop = asyncio.get_running_loop()
    last_error: OSError | None = None
    for family, sockaddr in await _resolve(host, port):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert last_error is not None
    raise last_error


def destination_refusal(url: str) -> str | None:
    """Why a tenant may not save ``url`` as an upstream (None: acceptable). Checks the host as written
    (any spelling an address can take) and what it resolves to now; the connect-time check remains
    the guarantee, since what a name resolves to can change."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return "Enter a valid URL."
    if not host:
        return None
    message = ("This address is on a loopback, private, link-local or otherwise internal network, "
               "which Switchboard does not connect to. Use a public address "
               "(or ask the operator to allow the network).")
    if host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
        return message
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None  # unknown today: the connect-time check decides
    addresses = [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if any(not address_allowed(address) for address in addresses):
        return message
    return None


async def websocket_connect(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
    max_size: int = DEFAULT_MAX_FRAME,
    open_timeout: float = CONNECT_TIMEOUT,
    trusted: bool = False,
) -> ClientConnection:
    """Open a client WebSocket. Raises OSError (DestinationRefused included) / websockets exceptions /
    TimeoutError on failure. ``trusted``: the operator configured this URL; skip the destination policy."""
    options: dict[str, typing.Any] = {}
    if not trusted:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        async with asyncio.timeout(open_timeout):
            options["sock"] = await _open_socket(host, port)
        if secure:
            options["server_hostname"] = host
    try:
        connection = await websockets.connect(
            url,
            additional_headers=headers or {},
            subprotocols=subprotocols,  # type: ignore[arg-type]
            max_size=max_size,
            open_timeout=open_timeout,
            ping_interval=None,  # the process's keepalive pings it instead (realtime.lib.keepalive)
            compression=None,  # realtime audio does not compress; deflate costs latency and CPU
            proxy=None,  # a proxy from the environment would connect somewhere the policy never saw
            create_connection=UpstreamClientConnection,  # lets go of each received payload once delivered
            **options,  # with a socket of ours, websockets refuses to follow redirects
        )
    except BaseException:
        if "sock" in options:
            options["sock"].close()
        raise
    keepalive_add(connection)
    return connection


class _PolicyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows (TLS still
    verifies the URL's host name: httpcore passes it as server_hostname)."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await _resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from None
        last_error: Exception | None = None
        for _family, sockaddr in addresses:
            try:
                return await self._inner.connect_tcp(sockaddr[0], port, timeout=timeout,
                                                     local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[typing.Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not an outbound destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _client(timeout: float, *, trusted: bool = False) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    if not trusted:
        # httpx has no resolver hook; its transport's pool takes a network backend.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(cafile=certifi.where()),
            network_backend=_PolicyBackend(),
        )
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT), follow_redirects=False,
                             trust_env=False, transport=transport)


async def http_post_json(url: str, *, payload: dict | list, headers: dict[str, str] | None = None,
                         timeout: float = 60.0, trusted: bool = False) -> httpx.Response:
    """POST JSON. A refused destination raises httpx.ConnectError, like an unreachable one."""
    async with _client(timeout, trusted=trusted) as client:
        return await client.post(url, json=payload, headers=headers or {})


async def http_post_sse(
    url: str, *, payload: dict, headers: dict[str, str] | None = None, timeout: float = 60.0,
    trusted: bool = False,
) -> AsyncIterator[dict]:
    """POST and yield each ``data:`` JSON object of a server-sent-event stream (chat completions)."""
    async with _client(timeout, trusted=trusted) as client:
        async with client.stream("POST", url, json=payload, headers=headers or {}) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                yield json.loads(data)
