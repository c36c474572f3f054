"""Input images given by URL (JSON edits): `data:` URLs decoded, `http(s)` URLs fetched safely.

A URL a client names is fetched by the gateway, from inside the operator's network: without care
it would reach Redis, a cloud metadata service or an admin page (SSRF).  So every host name is
resolved first and refused when any of its addresses is loopback, private, link-local or
otherwise not public (unless the operator allows it; core/addresses.py states the rule, which
webhooks share); the connection then goes to that checked address, not to a second lookup a
rebinding DNS server could answer differently; redirects are followed by hand and checked the
same way; the body is capped while it streams and the whole fetch has one deadline.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import socket
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import httpx

from core.addresses import addresses_of, allowed
from core.addresses import is_public as is_public  # the rule's home is core; re-exported
from core.errors import OpenAIError, bad_request

MAX_REDIRECTS = 3


def decode_data_url(url: str, param: str, limit: int) -> bytes:
    """`data:[type][;base64],DATA` -> bytes (the type is ignored: formats are sniffed)."""
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise bad_request(f"Invalid '{param}': a data URL needs a comma before its data.", param,
                          "invalid_image_url")
    if len(payload) > limit * 4 // 3 + 8:  # before decoding: base64 is 4/3 the size
        raise bad_request(f"'{param}' is larger than the {limit} bytes allowed per file.", param,
                          "file_too_large")
    try:
        data = (base64.b64decode(payload, validate=True) if header.endswith(";base64")
                else unquote_to_bytes(payload))
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"Invalid '{param}': the data URL is not valid base64.", param,
                          "invalid_image_url") from exc
    if len(data) > limit:
        raise bad_request(f"'{param}' is larger than the {limit} bytes allowed per file.", param,
                          "file_too_large")
    return data


async def _address(host: str, port: int, param: str, allow_private: bool) -> str:
    """One checked address of `host` to connect to: every answer must be public, or the
    host is refused (a name with one private answer is how rebinding attacks start)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise bad_request(f"Invalid '{param}': the host {host[:80]!r} could not be resolved.",
                          param, "invalid_image_url") from exc
    ips = addresses_of(infos)
    if not ips:
        raise bad_request(f"Invalid '{param}': the host {host[:80]!r} has no address.", param,
                          "invalid_image_url")
    if not allowed(ips, allow_private):  # core.addresses: the one rule, for webhooks too
        raise bad_request(f"Invalid '{param}': {host[:80]!r} is a loopback, private or "
                          "link-local address, which this server does not fetch (operators: "
                          "EASEL_FETCH_PRIVATE_URLS).", param, "image_url_refused")
    return str(ips[0])


async def _get(client: httpx.AsyncClient, url: str, param: str, limit: int,
               allow_private: bool) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request(f"Invalid '{param}': only data:, http: and https: URLs are "
                              "accepted.", param, "invalid_image_url")
        if parts.username or parts.password:
            raise bad_request(f"Invalid '{param}': URLs with credentials are not fetched.",
                              param, "invalid_image_url")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = await _address(parts.hostname, port, param, allow_private)
        target = httpx.URL(url).copy_with(host=ip)  # the checked address, not a new lookup
        host = parts.netloc.rpartition("@")[2]
        # TLS still checks the certificate against the name (SNI), not the address.
        request = client.build_request("GET", target, headers={"Host": host},
                                       extensions={"sni_hostname": parts.hostname})
        response = await client.send(request, stream=True)
        try:
            if response.is_redirect and "location" in response.headers:
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code != 200:
                raise bad_request(f"Invalid '{param}': fetching the URL answered "
                                  f"{response.status_code}.", param, "invalid_image_url")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise bad_request(f"'{param}' is larger than the {limit} bytes allowed per "
                                      "file.", param, "file_too_large")
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            await response.aclose()
    raise bad_request(f"Invalid '{param}': more than {MAX_REDIRECTS} redirects.", param,
                      "invalid_image_url")


async def load_image_url(url: str, param: str, limit: int, timeout: float,
                         allow_private: bool = False) -> bytes:
    """The bytes an image URL names, or a 400 naming `param`."""
    if url.startswith("data:"):
        return decode_data_url(url, param, limit)
    try:
        async with asyncio.timeout(timeout), httpx.AsyncClient(
                follow_redirects=False, trust_env=False, timeout=timeout) as client:
            return await _get(client, url, param, limit, allow_private)
    except TimeoutError as exc:
        raise bad_request(f"Invalid '{param}': the image was not fetched within {timeout:g} s.",
                          param, "image_url_timeout") from exc
    except OpenAIError:
        raise
    except (httpx.HTTPError, ValueError, OSError) as exc:
        raise bad_request(f"Invalid '{param}': the URL could not be fetched "
                          f"({type(exc).__name__}).", param, "invalid_image_url") from exc
