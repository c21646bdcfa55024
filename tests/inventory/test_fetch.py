"""The import fetcher (services/fetch.py) against real servers in threads: internal
addresses refused (also after a redirect and at the door, HTTP 400), redirects checked,
sizes and free space capped, a stalled download aborted, base URLs that cannot smuggle
a query or fragment, the checked address connected to (DNS rebinding), TLS checked
against the host name, FTP. Loopback is allowed only where a test says so."""

import contextlib
import datetime
import http.server
import logging
import shutil
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from ovmweb.inventory import rules
from ovmweb.inventory.services import appliances, fetch, install_sources, storage
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.registry import JobAborted, JobContext
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f

from .conftest import GUEST_DIR, http_tree

LOOPBACK = ["127.0.0.0/8"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.log.append((self.path, self.headers.get("Host")))
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def site(routes: dict, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None):
    """A real HTTP(S) server on ``host`` in a thread: yields it (``.base``, ``.log``)."""
    httpd = http.server.ThreadingHTTPServer((host, 0), _Handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    httpd.routes, httpd.log = routes, []
    httpd.base = f"{'https' if tls else 'http'}://{host}:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def body(data: bytes, *, length: bool = True):
    def route(req):
        req.send_response(200)
        if length:
            req.send_header("Content-Length", str(len(data)))
        req.end_headers()  # HTTP/1.0: without a length the body ends when the connection does
        req.wfile.write(data)

    return route


def redirect(location: str, code: int = 302):
    def route(req):
        req.send_response(code)
        req.send_header("Location", location)
        req.send_header("Content-Length", "0")
        req.end_headers()

    return route


def stall(stalled: threading.Event, release: threading.Event):
    """Headers and a first few bytes of 10000, then silence until released."""

    def route(req):
        req.send_response(200)
        req.send_header("Content-Length", "10000")
        req.end_headers()
        req.wfile.write(b"x" * 100)
        req.wfile.flush()
        stalled.set()
        release.wait(60)

    return route


@pytest.fixture
def no_allowed(settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = []


@pytest.fixture
def loopback(settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = LOOPBACK


# ---------------------------------------------------------------- addresses and URLs


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1:8000/admin/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://localhost:8000/admin/",  # a name resolving to loopback
        "http://10.1.2.3/os.iso",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[::1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "https://[::]/",
        "ftp://10.0.0.1/pub/os.iso",
    ],
)
def test_internal_addresses_are_refused(no_allowed, url):
    with pytest.raises(fetch.UrlRefused, match="internal address"):
        fetch.open_url(url)
    with pytest.raises(ValidationError):
        fetch.validate_url(url, field="url")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/",
        "nfs://example.com/export",  # mounted by a server, never fetched by the manager
        "http://user:secret@example.com/a.iso",
        "http://example.com@127.0.0.1/a.iso",
        "http://-oProxyCommand=x/",
        "http:///etc/passwd",
        "http://exa mple.com/",
        "http://example.com/a\r\nX-Injected: 1",
        "http://exämple.com/",
        "http://[::1/",
        "http://example.com:99999/",
        "",
    ],
)
def test_malformed_and_tricky_urls_are_refused(url):
    with pytest.raises(fetch.UrlRefused):
        fetch.open_url(url)


def test_a_listening_local_server_is_never_contacted(no_allowed, tmp_path):
    with site({"/os.iso": body(b"secret")}) as srv:
        port = srv.server_address[1]
        for url in (f"{srv.base}/os.iso", f"http://localhost:{port}/os.iso", f"http://[::ffff:127.0.0.1]:{port}/"):
            with pytest.raises(fetch.UrlRefused):
                fetch.fetch_to_file(url, tmp_path / "out")
    assert srv.log == [] and not (tmp_path / "out").exists()


def test_an_unresolvable_host_passes_the_door_but_is_not_fetched(no_allowed):
    fetch.validate_url("http://mirror.invalid/os.iso", field="url")
    with pytest.raises(fetch.FetchFailed, match="Cannot resolve"):
        fetch.open_url("http://mirror.invalid/os.iso")


def test_an_allowed_network_is_fetched_from_and_only_that(settings, tmp_path):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = "127.0.0.1/32"  # the environment's form: comma-separated
    with site({"/os.iso": body(b"data" * 1000)}) as srv:
        port = srv.server_address[1]
        assert fetch.fetch_to_file(f"http://localhost:{port}/os.iso", tmp_path / "out") == 4000
        with pytest.raises(fetch.UrlRefused):
            fetch.open_url(f"http://127.0.0.2:{port}/os.iso")
    assert (tmp_path / "out").read_bytes() == b"data" * 1000
    assert srv.log == [("/os.iso", f"localhost:{port}")]


# ---------------------------------------------------------------- at the door: HTTP 400


def test_internal_urls_are_refused_at_the_door(no_allowed, db):
    repo, user = f.RepositoryFactory(), f.UserFactory()
    with pytest.raises(ValidationError) as err:
        storage.iso_import(repository=repo, user=user, url="http://169.254.169.254/latest/os.iso")
    assert "url" in err.value.message_dict
    with pytest.raises(ValidationError) as err:
        appliances.appliance_import(user=user, repository=repo, url="http://example.com@127.0.0.1/a.ova")
    assert "url" in err.value.message_dict
    for url in (
        "http://10.0.0.1/ol6/",
        "nfs://127.0.0.1/export/ol6",
        "http://mirror.invalid/ol6?x=",
        "ftp://m.invalid/#",
    ):
        with pytest.raises(ValidationError) as err:
            rules.check_pvm_url(url)
        assert "pvm_boot_url" in err.value.message_dict, url
    client = APIClient()
    client.force_authenticate(f.SuperUserFactory())
    response = client.post(
        "/api/v1/iso-files/import/", {"repository": repo.pk, "url": "http://[::1]:8000/admin/x.iso"}, format="json"
    )
    assert response.status_code == 400 and "url" in response.json()
    assert not Job.objects.exists()


# ---------------------------------------------------------------- redirects


def test_a_redirect_from_an_allowed_server_to_loopback_is_refused(settings, db):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    with (
        site({"/secret.iso": body(b"secret")}, host="127.0.0.2") as inside,
        site({"/os.iso": redirect(f"{inside.base}/secret.iso")}) as allowed,
    ):
        with pytest.raises(fetch.UrlRefused, match="127.0.0.2"):
            fetch.open_url(f"{allowed.base}/os.iso")
        # The same through the ISO import job.
        job = storage.iso_import(repository=f.RepositoryFactory(), user=f.UserFactory(), url=f"{allowed.base}/os.iso")
        run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILURE and "internal address" in job.error
    assert inside.log == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/"])
def test_a_redirect_to_another_scheme_is_refused(loopback, location):
    with site({"/a": redirect(location)}) as srv, pytest.raises(fetch.UrlRefused, match="another scheme"):
        fetch.open_url(f"{srv.base}/a", schemes={"http", "https", "ftp"})


def test_redirects_are_followed_up_to_five(loopback, tmp_path):
    routes = {f"/{i}": redirect(f"/{i + 1}", code=301 + i % 3) for i in range(6)}
    routes["/5"] = body(b"end")
    with site(routes) as srv:
        assert fetch.fetch_to_file(f"{srv.base}/0", tmp_path / "out") == 3
        routes["/5"] = redirect("/6")
        routes["/6"] = body(b"too far")
        with pytest.raises(fetch.FetchFailed, match="more than 5"):
            fetch.open_url(f"{srv.base}/0")
    assert [path for path, _host in srv.log].count("/6") == 0


# ---------------------------------------------------------------- sizes and space


@pytest.mark.parametrize("length", [True, False])
def test_the_size_cap_stops_a_download_and_removes_the_file(loopback, settings, tmp_path, length):
    settings.OVMWEB_IMPORT_MAX_BYTES = 1000
    with site({"/big": body(b"x" * 5000, length=length), "/ok": body(b"x" * 1000, length=length)}) as srv:
        with pytest.raises(fetch.FetchFailed, match="limit of 1000"):
            fetch.fetch_to_file(f"{srv.base}/big", tmp_path / "big")
        assert fetch.fetch_to_file(f"{srv.base}/ok", tmp_path / "ok") == 1000
    assert not (tmp_path / "big").exists()


@pytest.mark.parametrize("length", [True, False])
def test_free_space_is_checked_before_and_while_writing(loopback, monkeypatch, tmp_path, length):
    seen = []
    monkeypatch.setattr(fetch, "_free_bytes", lambda directory: seen.append(directory) or 1000)
    with (
        site({"/big": body(b"x" * 5000, length=length)}) as srv,
        pytest.raises(fetch.FetchFailed, match="1000 bytes free"),
    ):
        fetch.fetch_to_file(f"{srv.base}/big", tmp_path / "big")
    assert seen == [tmp_path] and not (tmp_path / "big").exists()


def test_a_body_shorter_than_announced_fails(loopback, tmp_path):
    def short(req):
        req.send_response(200)
        req.send_header("Content-Length", "5000")
        req.end_headers()
        req.wfile.write(b"x" * 100)

    with site({"/short": short}) as srv, pytest.raises(fetch.FetchFailed, match="ended after 100 of 5000"):
        fetch.fetch_to_file(f"{srv.base}/short", tmp_path / "short")
    assert not (tmp_path / "short").exists()


def test_the_iso_import_job_keeps_to_the_cap(loopback, settings, db):
    settings.OVMWEB_IMPORT_MAX_BYTES = 1000
    uploads = Path(settings.VAR_DIR) / "uploads"
    before = set(uploads.glob("*")) if uploads.exists() else set()
    with site({"/os.iso": body(b"x" * 5000, length=False)}) as srv:
        job = storage.iso_import(repository=f.RepositoryFactory(), user=f.UserFactory(), url=f"{srv.base}/os.iso")
        run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILURE and "limit of 1000" in job.error
    assert set(uploads.glob("*")) == before


# ---------------------------------------------------------------- abort


def test_an_abort_ends_a_stalled_download(loopback, tmp_path):
    stalled, release = threading.Event(), threading.Event()

    class Stop(Exception):
        pass

    def check_abort():
        if stalled.is_set():
            raise Stop

    try:
        with site({"/slow": stall(stalled, release)}) as srv, pytest.raises(Stop):
            fetch.fetch_to_file(f"{srv.base}/slow", tmp_path / "slow", check_abort=check_abort)
    finally:
        release.set()
    assert not (tmp_path / "slow").exists()


def test_aborting_the_iso_import_job_stops_its_download(loopback, settings, monkeypatch, db):
    stalled, release = threading.Event(), threading.Event()

    def check_abort(ctx):
        if stalled.is_set():
            raise JobAborted("Aborted on request.")

    monkeypatch.setattr(JobContext, "check_abort", check_abort)
    uploads = Path(settings.VAR_DIR) / "uploads"
    before = set(uploads.glob("*")) if uploads.exists() else set()
    try:
        with site({"/os.iso": stall(stalled, release)}) as srv:
            job = storage.iso_import(repository=f.RepositoryFactory(), user=f.UserFactory(), url=f"{srv.base}/os.iso")
            run_pending_jobs()
    finally:
        release.set()
    job.refresh_from_db()
    assert job.status == JobStatus.ABORTED and stalled.is_set()
    assert set(uploads.glob("*")) == before


# ---------------------------------------------------------------- base URLs of install trees


def test_join_encodes_each_segment_and_refuses_a_base_with_query_or_fragment():
    assert fetch.join_url("http://m/tree/", "images/pxeboot/vmlinuz") == "http://m/tree/images/pxeboot/vmlinuz"
    assert fetch.join_url("http://m/t", "a b/c#d/e?f") == "http://m/t/a%20b/c%23d/e%3Ff"
    for base in ("http://m/tree?x=", "http://m/tree#", "http://m/tree?#"):
        with pytest.raises(fetch.UrlRefused):
            fetch.join_url(base, "isolinux/vmlinuz")
    with pytest.raises(fetch.UrlRefused):
        fetch.join_url("http://m/tree", "../etc/passwd")


@pytest.fixture
def pvm(db, tmp_path):
    repo = f.RepositoryFactory(path=str(tmp_path / "repo"))
    return f.VirtualMachineFactory(domain_type="PVM", os_type="OL6", repository=repo)


@pytest.fixture
def local_server(db):
    return f.ServerFactory(transport="local", hostname="localhost")


def _vm_dir(vm) -> Path:
    return Path(vm.repository.path) / "VirtualMachines" / str(vm.uuid)


@pytest.mark.parametrize("suffix", ["/evil#", "/evil?", "/evil?x=1&y="])
def test_an_install_tree_url_cannot_smuggle_a_query_or_fragment(loopback, pvm, local_server, tmp_path, suffix):
    tree = tmp_path / "www"
    tree.mkdir()
    shutil.copy(GUEST_DIR / "vmlinuz", tree / "evil")  # what the fragment would have fetched instead
    with http_tree(tree) as url:
        pvm.pvm_boot_url = url + suffix
        with pytest.raises(install_sources.InstallSourceError, match="no query"):
            install_sources.pvm_boot_files_fetch(vm=pvm, server=local_server)
    assert not (_vm_dir(pvm) / "vmlinuz").exists()


def test_a_stored_install_tree_url_on_loopback_is_refused_at_start(no_allowed, pvm, local_server, install_tree):
    with http_tree(install_tree) as url:
        pvm.pvm_boot_url = url
        with pytest.raises(install_sources.InstallSourceError, match="internal address"):
            install_sources.pvm_boot_files_fetch(vm=pvm, server=local_server)
    pvm.pvm_boot_url = "nfs://169.254.169.254/export/ol6"
    with pytest.raises(install_sources.InstallSourceError, match="internal address"):
        install_sources.pvm_boot_files_fetch(vm=pvm, server=local_server)
    assert not (_vm_dir(pvm) / "vmlinuz").exists() and not (_vm_dir(pvm) / ".install-tree").exists()


# ---------------------------------------------------------------- DNS rebinding, TLS


@pytest.fixture
def names(monkeypatch):
    """Host names of the tests: name -> a list of addresses, one per resolution."""
    table: dict[str, list[str]] = {}
    calls: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in table:
            return real(host, port, *args, **kwargs)
        calls.append(host)
        address = table[host][min(calls.count(host), len(table[host])) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table, calls


def test_the_checked_address_is_the_one_connected_to(settings, names):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    table, calls = names
    with site({"/f": body(b"checked")}) as srv:
        port = srv.server_address[1]
        table["rebind.test"] = ["127.0.0.1", "127.0.0.2"]  # a second resolution would go inside
        with fetch.open_url(f"http://rebind.test:{port}/f") as download:
            assert download.read() == b"checked"
    assert calls == ["rebind.test"] and srv.log == [("/f", f"rebind.test:{port}")]


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_checks_the_certificate_against_the_host_name(loopback, names, monkeypatch, tmp_path):
    table, _calls = names
    cert, key = _certificate(tmp_path, "good.test")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    sni = []
    server_tls.sni_callback = lambda sock, name, ctx: sni.append(name)
    monkeypatch.setattr(fetch, "_tls_context", lambda: ssl.create_default_context(cafile=str(cert)))
    table["good.test"] = table["bad.test"] = ["127.0.0.1"]
    with site({"/os.iso": body(b"over tls")}, tls=server_tls) as srv:
        port = srv.server_address[1]
        with fetch.open_url(f"https://good.test:{port}/os.iso") as download:
            assert download.read() == b"over tls"
        with pytest.raises(fetch.FetchFailed, match="TLS with bad.test"):
            fetch.open_url(f"https://bad.test:{port}/os.iso")
    assert sni[0] == "good.test" and len(srv.log) == 1


# ---------------------------------------------------------------- FTP


@contextlib.contextmanager
def ftp_site(root: Path):
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    authorizer = DummyAuthorizer()
    authorizer.add_anonymous(str(root))
    handler = type("Handler", (FTPHandler,), {"authorizer": authorizer})
    server = ThreadedFTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2}, daemon=True)
    thread.start()
    try:
        yield f"ftp://127.0.0.1:{server.address[1]}"
    finally:
        server.close_all()
        thread.join(10)


def test_ftp_fetches_from_the_checked_address_and_reports_a_missing_file(loopback, settings, tmp_path):
    (tmp_path / "pub" / "os").mkdir(parents=True)
    (tmp_path / "pub" / "os" / "a b.iso").write_bytes(b"ftp data" * 100)
    with ftp_site(tmp_path) as base:
        assert fetch.fetch_to_file(f"{base}/pub/os/a%20b.iso", tmp_path / "out") == 800
        with pytest.raises(fetch.FetchFailed) as err:
            fetch.open_url(f"{base}/pub/os/nothere.iso")
        assert err.value.missing
        with pytest.raises(fetch.UrlRefused, match="control"):
            fetch.open_url(f"{base}/pub/x%0d%0aDELE%20a.iso")
        settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = []
        with pytest.raises(fetch.UrlRefused, match="internal address"):
            fetch.open_url(f"{base}/pub/os/a%20b.iso")
    assert (tmp_path / "out").read_bytes() == b"ftp data" * 100


def test_a_pvm_install_tree_over_ftp_falls_back_to_isolinux(loopback, pvm, local_server, tmp_path):
    tree = tmp_path / "ftp" / "ol6"
    (tree / "isolinux").mkdir(parents=True)
    shutil.copy(GUEST_DIR / "vmlinuz", tree / "isolinux" / "vmlinuz")
    shutil.copy(GUEST_DIR / "initrd.gz", tree / "isolinux" / "initrd.img")
    with ftp_site(tmp_path / "ftp") as base:
        pvm.pvm_boot_url = f"{base}/ol6/"
        assert install_sources.pvm_boot_files_fetch(vm=pvm, server=local_server)["kernel"] == "isolinux/vmlinuz"
    assert (_vm_dir(pvm) / "vmlinuz").read_bytes() == (GUEST_DIR / "vmlinuz").read_bytes()
    assert (_vm_dir(pvm) / "initrd.img").read_bytes() == (GUEST_DIR / "initrd.gz").read_bytes()
