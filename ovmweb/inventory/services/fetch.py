"""Downloads of user-given URLs by the manager (ISO import, appliance import, PVM kernel
and initrd), refused wherever they could reach something the user did not mean.

Invariants:

- Only the schemes a caller names (at most http, https, ftp; nfs is checked here but
  mounted by a server, never fetched) are accepted, by name. A URL with userinfo, an
  empty host, a host starting with ``-``, a control character, a space or a non-ASCII
  character is refused.
- The host is resolved once; if ANY of its addresses is loopback, link-local (cloud
  metadata 169.254.169.254, fe80::/10), private, shared, unspecified, multicast or
  reserved, or embeds such an IPv4 address (IPv4-mapped, 6to4, Teredo, NAT64), the URL
  is refused unless the address lies in a network of ``OVMWEB_IMPORT_ALLOWED_NETWORKS``.
  The connection goes to an address that was checked, never to a second resolution
  (DNS rebinding); HTTPS still verifies the certificate against the host name (SNI).
- Redirects are followed by hand (at most ``MAX_REDIRECTS``), each target checked like
  the first; a redirect away from http/https is refused.
- A download stops beyond ``OVMWEB_IMPORT_MAX_BYTES``, beyond the free space of the
  destination, or on a short body; ``fetch_to_file`` then removes the partial file.
- Every socket read blocks at most ``READ_POLL`` seconds, and ``check_abort`` runs at
  least every ``ABORT_EVERY`` seconds while bytes are awaited: an abort ends a download
  within a second, a silent server after ``STALL_TIMEOUT``.
- No proxy is used (``http_proxy`` is ignored): a proxy would connect where these
  checks cannot see.
"""

from __future__ import annotations

import errno
import ftplib  # nosec B402
import http.client
import io
import ipaddress
import re
import select
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils.translation import gettext as _

SCHEMES = frozenset({"http", "https", "ftp"})
REDIRECT_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "nfs": 2049}
MAX_REDIRECTS = 5
READ_POLL = 0.5  # seconds one socket read may block before check_abort runs again
ABORT_EVERY = 0.5  # seconds between two calls of check_abort (it queries the database)
STALL_TIMEOUT = 30  # seconds without a byte after which the server counts as gone
CONNECT_TIMEOUT = 30
CHUNK = 1024 * 1024
DISK_RESERVE = 64 * 1024 * 1024  # a download never takes the last bytes of the manager's disk
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MISSING = frozenset({403, 404, 410})
_HOST = re.compile(r"[a-z0-9_][a-z0-9_.-]*")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class FetchError(Exception):
    """A download that was refused or failed; the message is for the user."""


class UrlRefused(FetchError):
    """The URL, or an address its host resolves to, is not one the manager may fetch."""


class FetchFailed(FetchError):
    """The source could not be reached or did not deliver. ``missing``: it answered that
    the file is not there (HTTP 403/404/410, FTP 550), so a caller may try another path."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


# --------------------------------------------------------------------------
# the rules: URL syntax, addresses
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A URL that passed every check, with the addresses its host resolved to."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # as given, percent-encoded, with the query; "/" when empty
    addresses: tuple[tuple[int, tuple], ...]  # (family, sockaddr), each checked


def allowed_networks() -> list:
    value = getattr(settings, "OVMWEB_IMPORT_ALLOWED_NETWORKS", "") or ""
    items = value.split(",") if isinstance(value, str) else value
    try:
        return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]
    except ValueError as exc:
        raise ImproperlyConfigured(f"OVMWEB_IMPORT_ALLOWED_NETWORKS: {exc}") from exc


def _embedded_ipv4(ip) -> list:
    """The IPv4 addresses an IPv6 address carries (and reaches through a gateway)."""
    if ip.version != 6:
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def _special(ip) -> bool:
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (ip.version == 6 and ip.is_site_local)
    )


def address_refused(address: str, networks: Iterable | None = None) -> bool:
    """True when ``address`` is internal and not in an administrator-allowed network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    forms = [ip, *_embedded_ipv4(ip)]
    if not any(_special(form) for form in forms):
        return False
    networks = allowed_networks() if networks is None else networks
    own = [ip, ip.ipv4_mapped] if ip.version == 6 and ip.ipv4_mapped else [ip]
    return not any(form in net for form in own for net in networks if form.version == net.version)


def _split(url: str, schemes: Iterable[str]):
    if not isinstance(url, str) or not url:
        raise UrlRefused(_("No URL given."))
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in url):
        raise UrlRefused(_("The URL holds a space, a control or a non-ASCII character; percent-encode it."))
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed [IPv6
        raise UrlRefused(_("The URL is malformed: %(error)s") % {"error": exc}) from exc
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise UrlRefused(
            _("Only %(schemes)s URLs are accepted.") % {"schemes": ", ".join(f"{s}://" for s in sorted(schemes))}
        )
    if "@" in parts.netloc:
        raise UrlRefused(_("A URL with a user name or password (user@host) is not accepted."))
    return parts, scheme


def _host_port(parts, scheme: str) -> tuple[str, int]:
    host = parts.hostname or ""
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise UrlRefused(_("The URL has an invalid port.")) from exc
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise UrlRefused(_("The URL has an invalid IPv6 address.")) from exc
    elif not _HOST.fullmatch(host):
        raise UrlRefused(_("The URL has no valid host name (it must not be empty or start with '-')."))
    return host, port


def _resolve(host: str, port: int) -> tuple[tuple[int, tuple], ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(_("Cannot resolve %(host)s: %(error)s") % {"host": host, "error": exc}) from exc
    seen: dict[tuple, int] = {}
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            seen.setdefault(sockaddr, family)
    if not seen:
        raise FetchFailed(_("%(host)s has no IP address.") % {"host": host})
    return tuple((family, sockaddr) for sockaddr, family in seen.items())


def check_url(url: str, *, schemes: Iterable[str] = SCHEMES, base: bool = False) -> Target:
    """Every rule of this module on ``url``: syntax, scheme, host, and each address the
    host resolves to now. ``base``: the URL is a directory others are appended to, so it
    may have no query or fragment. Raises ``UrlRefused``, or ``FetchFailed`` when the
    host does not resolve."""
    parts, scheme = _split(url, schemes)
    if base and ("?" in url or "#" in url):
        raise UrlRefused(_("The URL of a directory may have no query (?) or fragment (#)."))
    host, port = _host_port(parts, scheme)
    addresses = _resolve(host, port)
    networks = allowed_networks()
    for _family, sockaddr in addresses:
        if address_refused(sockaddr[0], networks):
            raise UrlRefused(
                _(
                    "%(host)s is at %(address)s, an internal address the manager does not fetch from "
                    "(an administrator may allow its network in OVMWEB_IMPORT_ALLOWED_NETWORKS)."
                )
                % {"host": host, "address": sockaddr[0]}
            )
    path = parts.path or "/"
    return Target(url, scheme, host, port, f"{path}?{parts.query}" if parts.query else path, addresses)


def validate_url(url: str, *, field: str, schemes: Iterable[str] = SCHEMES, base: bool = False) -> None:
    """The same rules at input time: ``ValidationError`` on ``field`` (HTTP 400). A host
    that does not resolve now is let through: the job resolves it again, checks it
    again, and reports."""
    try:
        check_url(url, schemes=schemes, base=base)
    except UrlRefused as exc:
        raise ValidationError({field: [str(exc)]}) from exc
    except FetchFailed:
        pass


def join_url(base: str, relative: str) -> str:
    """``relative`` (a/b/c) below the directory ``base``, each segment percent-encoded,
    so that nothing in either turns the result into another path, query or fragment."""
    if "?" in base or "#" in base:
        raise UrlRefused(_("The URL of a directory may have no query (?) or fragment (#)."))
    segments = relative.strip("/").split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise UrlRefused(_("Invalid relative path %(path)s.") % {"path": relative})
    return base.rstrip("/") + "/" + "/".join(quote(segment, safe="") for segment in segments)


# --------------------------------------------------------------------------
# the connection: to a checked address, reads that wake up for check_abort
# --------------------------------------------------------------------------


class _Abort:
    """``check_abort``, run at most every ABORT_EVERY seconds."""

    def __init__(self, check_abort: Callable[[], None] | None):
        self.check_abort, self.last = check_abort, None

    def __call__(self) -> None:
        now = time.monotonic()
        if self.check_abort is not None and (self.last is None or now - self.last >= ABORT_EVERY):
            self.last = now
            self.check_abort()


class _PatientRaw(io.RawIOBase):
    """A socket's bytes; a read waits in READ_POLL steps, checking for an abort between
    them, up to STALL_TIMEOUT (a timed-out socket.makefile could not be read again)."""

    def __init__(self, sock: socket.socket, abort: _Abort):
        super().__init__()
        self.sock, self.abort = sock, abort

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        deadline = time.monotonic() + STALL_TIMEOUT
        while True:
            self.abort()
            try:
                return self.sock.recv_into(buffer)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise FetchFailed(_("The server sent nothing for %(s)d seconds.") % {"s": STALL_TIMEOUT}) from None


class _Sock:
    """What http.client needs of a socket, reading through _PatientRaw. http.client
    closes its connection while the response is still being read; the real socket is
    closed by whoever opened it, so ``close`` here does nothing."""

    def __init__(self, sock: socket.socket, abort: _Abort):
        self.sock, self.abort = sock, abort

    def sendall(self, data) -> None:
        self.sock.sendall(data)

    def makefile(self, mode: str, *args, **kwargs):
        return io.BufferedReader(_PatientRaw(self.sock, self.abort), 64 * 1024)

    def close(self) -> None:
        pass


def _connect_one(family: int, sockaddr: tuple, abort: _Abort) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while code in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            abort()
            if time.monotonic() > deadline:
                raise TimeoutError(_("Connection timed out."))
            if select.select([], [sock], [], READ_POLL)[1]:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, errno.errorcode.get(code, str(code)))
        sock.settimeout(READ_POLL)
        return sock
    except BaseException:
        sock.close()
        raise


def _connect(target: Target, abort: _Abort) -> socket.socket:
    error: OSError | None = None
    for family, sockaddr in target.addresses:
        try:
            return _connect_one(family, sockaddr, abort)
        except OSError as exc:
            error = exc
    raise FetchFailed(
        _("Cannot connect to %(host)s port %(port)s: %(error)s")
        % {"host": target.host, "port": target.port, "error": error}
    )


def _tls_context() -> ssl.SSLContext:
    """The system's trusted CAs, certificate and host name checked (a test trusts its own CA)."""
    return ssl.create_default_context()


def _tls(sock: socket.socket, host: str) -> socket.socket:
    """TLS on the connected socket, the certificate checked against the URL's host name."""
    context = _tls_context()
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        wrapped = context.wrap_socket(sock, server_hostname=host)
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise FetchFailed(_("TLS with %(host)s failed: %(error)s") % {"host": host, "error": exc}) from exc
    wrapped.settimeout(READ_POLL)
    return wrapped


# --------------------------------------------------------------------------
# HTTP(S) and FTP
# --------------------------------------------------------------------------


def _http_get(target: Target, abort: _Abort):
    sock = _connect(target, abort)
    if target.scheme == "https":
        sock = _tls(sock, target.host)
    conn = http.client.HTTPConnection(target.host, target.port)
    conn.sock, conn.auto_open = _Sock(sock, abort), 0  # connected here: http.client never resolves
    try:
        conn.request("GET", target.path, headers={"User-Agent": "ovmweb", "Connection": "close"})
        return sock, conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        sock.close()
        raise FetchFailed(_("%(url)s: %(error)s") % {"url": target.url, "error": exc}) from exc
    except BaseException:
        sock.close()
        raise


def _redirect(url: str, location: str) -> str:
    try:
        following = urljoin(url, location.strip())
        scheme = urlsplit(following).scheme.lower()
    except ValueError as exc:
        raise UrlRefused(_("%(url)s redirects to a malformed URL: %(error)s") % {"url": url, "error": exc}) from exc
    if scheme not in REDIRECT_SCHEMES:
        raise UrlRefused(_("%(url)s redirects to %(to)s, another scheme.") % {"url": url, "to": following})
    return following


def _open_http(url: str, schemes: Iterable[str], abort: _Abort) -> Download:
    for _hop in range(MAX_REDIRECTS + 1):
        target = check_url(url, schemes=schemes)
        sock, response = _http_get(target, abort)
        location = response.getheader("Location") if response.status in _REDIRECTS else None
        if location is None:
            if response.status != 200:
                sock.close()
                raise FetchFailed(
                    _("%(url)s answered HTTP %(code)s %(reason)s.")
                    % {"url": url, "code": response.status, "reason": response.reason},
                    missing=response.status in _MISSING,
                )
            return Download(url, response, response.length, [response.close, sock.close])
        sock.close()
        url = _redirect(url, location)
    raise FetchFailed(_("%(url)s redirects more than %(n)d times.") % {"url": url, "n": MAX_REDIRECTS})


def _ftp_path(target: Target) -> tuple[list[str], str]:
    names = [unquote(segment) for segment in target.path.split("?", 1)[0].split("/") if segment]
    if not names or any(ord(c) < 0x20 or c == "\x7f" for name in names for c in name):
        raise UrlRefused(_("%(url)s names no file, or a name with control characters.") % {"url": target.url})
    return names[:-1], names[-1]


def _open_ftp(url: str, abort: _Abort) -> Download:
    target = check_url(url, schemes={"ftp"})
    directories, name = _ftp_path(target)
    abort()
    # Plain FTP is what install trees are served on (seed 7.1): anonymous and read-only.
    ftp = ftplib.FTP(timeout=CONNECT_TIMEOUT)  # nosec B321
    try:
        # The checked address, not the name: ftplib would resolve it again. Passive data
        # connections go to the same peer (ftplib ignores the address a PASV reply names).
        ftp.connect(target.addresses[0][1][0], target.port)
        ftp.login()
        for directory in directories:
            ftp.cwd(directory)
        ftp.voidcmd("TYPE I")
        conn, size = ftp.ntransfercmd(f"RETR {name}")
    except ftplib.error_perm as exc:
        ftp.close()
        raise FetchFailed(_("%(url)s: %(error)s") % {"url": url, "error": exc}, missing=str(exc)[:3] == "550") from exc
    except (*ftplib.all_errors,) as exc:
        ftp.close()
        raise FetchFailed(_("%(url)s: %(error)s") % {"url": url, "error": exc}) from exc
    conn.settimeout(READ_POLL)
    stream = io.BufferedReader(_PatientRaw(conn, abort), 64 * 1024)
    return Download(url, stream, size, [conn.close, ftp.close])


# --------------------------------------------------------------------------
# the download
# --------------------------------------------------------------------------


class Download:
    """An open download: ``read(n)`` returns up to n bytes, b"" at the end; it raises
    ``FetchFailed`` past OVMWEB_IMPORT_MAX_BYTES or when the body ends short of its
    announced length. ``length`` is None when the server did not announce it."""

    def __init__(self, url: str, stream, length: int | None, closers: list[Callable[[], None]]):
        self.url, self.stream, self.length, self.closers, self.done = url, stream, length, closers, 0
        self.max_bytes = int(settings.OVMWEB_IMPORT_MAX_BYTES)
        if length is not None and length > self.max_bytes:
            self.close()
            raise FetchFailed(self._too_large(length))

    def _too_large(self, size: int) -> str:
        return _("%(url)s is %(size)d bytes or more, over the import limit of %(max)d bytes.") % {
            "url": self.url,
            "size": size,
            "max": self.max_bytes,
        }

    def read(self, size: int = CHUNK) -> bytes:
        try:
            data = self.stream.read1(size)
        except (OSError, http.client.HTTPException) as exc:
            raise FetchFailed(_("Reading %(url)s failed: %(error)s") % {"url": self.url, "error": exc}) from exc
        self.done += len(data)
        if self.done > self.max_bytes:
            raise FetchFailed(self._too_large(self.done))
        if not data and self.length is not None and self.done < self.length:
            raise FetchFailed(
                _("%(url)s ended after %(done)d of %(size)d bytes.")
                % {"url": self.url, "done": self.done, "size": self.length}
            )
        return data

    def close(self) -> None:
        for close in self.closers:
            try:
                close()
            except (OSError, *ftplib.all_errors):
                pass  # closing what is already broken

    def __enter__(self) -> Download:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_url(url: str, *, check_abort: Callable[[], None] | None = None, schemes: Iterable[str] = SCHEMES) -> Download:
    """Open ``url`` after checking it (and every redirect) against the rules above.
    Raises ``UrlRefused``, ``FetchFailed``, or whatever ``check_abort`` raises."""
    abort = _Abort(check_abort)
    schemes = frozenset(schemes) & SCHEMES
    if _split(url, schemes)[1] == "ftp":
        return _open_ftp(url, abort)
    return _open_http(url, schemes - {"ftp"}, abort)


def _free_bytes(directory: Path) -> int:
    return max(shutil.disk_usage(directory).free - DISK_RESERVE, 0)


def _no_space(url: str, size: int, free: int) -> FetchFailed:
    return FetchFailed(
        _("%(url)s needs %(size)d bytes or more; the manager has %(free)d bytes free for it.")
        % {"url": url, "size": size, "free": free}
    )


def fetch_to_file(
    url: str,
    path: str | Path,
    *,
    check_abort: Callable[[], None] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    schemes: Iterable[str] = SCHEMES,
) -> int:
    """Download ``url`` into ``path`` and return its size. The announced length is
    checked against the free space of path's directory before writing, the bytes
    written while streaming; on any failure or abort ``path`` is removed."""
    path = Path(path)
    try:
        with open_url(url, check_abort=check_abort, schemes=schemes) as download:
            free = _free_bytes(path.parent)
            if download.length is not None and download.length > free:
                raise _no_space(url, download.length, free)
            with open(path, "wb") as out:
                while chunk := download.read(CHUNK):
                    if download.done > free:
                        raise _no_space(url, download.done, free)
                    out.write(chunk)
                    if progress:
                        progress(download.done, download.length)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return download.done
