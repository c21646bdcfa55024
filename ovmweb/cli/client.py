"""The REST API as the command line sees it: requests with the token, errors as one
line a person can act on (with the exit code of their kind), lists walked by cursor,
objects found by name or id."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

# Exit codes (README, "Command line"). 2 is click's usage error.
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_CONFLICT = 6
EXIT_INVALID = 7
EXIT_SERVER = 8
EXIT_INTERRUPTED = 130

STATUS_EXITS = {400: EXIT_INVALID, 401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT}
# A page of a list: the cursor walks the rest (the API answers up to 1000 a page).
PAGE = 200


class CliError(Exception):
    """What went wrong, in one line, and the exit code that says what kind of thing it was."""

    def __init__(self, message: str, code: int = EXIT_JOB_FAILED):
        super().__init__(message)
        self.code = code


def flatten_errors(body, prefix: str = "") -> list[str]:
    """DRF's field errors (nested dicts and lists) as ``field: message`` strings."""
    if isinstance(body, dict):
        out = []
        for key, value in body.items():
            name = "" if key in ("non_field_errors", "detail") else key
            out += flatten_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return out
    if isinstance(body, list):
        if all(isinstance(v, str) for v in body):
            return [f"{prefix}: {v}" if prefix else v for v in body]
        out = []
        for i, value in enumerate(body):
            if value:
                out += flatten_errors(value, f"{prefix}[{i}]")
        return out
    return [f"{prefix}: {body}" if prefix else str(body)]


def error_from(response: requests.Response) -> CliError:
    code = STATUS_EXITS.get(response.status_code, EXIT_SERVER if response.status_code >= 500 else EXIT_JOB_FAILED)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500 or body is None:
        return CliError(f"the server answered HTTP {response.status_code} {response.reason}", code)
    message = "; ".join(flatten_errors(body)) or f"HTTP {response.status_code}"
    if response.status_code == 401:
        message += " (sign in again: ovmweb login)"
    if response.status_code == 429:
        code = EXIT_AUTH
    return CliError(message, code)


@dataclass
class Client:
    url: str
    token: str | None = None
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self):
        self.url = self.url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"not a server URL: {self.url!r} (expected e.g. https://ovm.example.com)", EXIT_USAGE)
        self.session.headers["Accept"] = "application/json"
        if self.token:
            self.session.headers["Authorization"] = f"Token {self.token}"

    @property
    def origin(self) -> str:
        """What a browser on this site sends as Origin (the WebSockets check it)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def ws_url(self, path: str) -> str:
        parts = urlsplit(self.url)
        return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}{path}"

    def request(self, method: str, path: str, **kwargs):
        url = path if path.startswith(("http://", "https://")) else f"{self.url}/api/v1/{path.lstrip('/')}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise CliError(f"cannot reach {self.url}: {_reason(exc)}", EXIT_UNREACHABLE) from None
        except requests.Timeout:
            raise CliError(f"{self.url} did not answer within {self.timeout:.0f} s", EXIT_UNREACHABLE) from None
        if response.status_code >= 400:
            raise error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params):
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict | None = None):
        return self.request("POST", path, json=body or {})

    def patch(self, path: str, body: dict):
        return self.request("PATCH", path, json=body)

    def delete(self, path: str):
        return self.request("DELETE", path)

    def pages(self, collection: str, *, limit: int | None = None, **params):
        """The rows of a list, page after page by cursor (keyset): constant cost per page
        however far in. Stops after ``limit`` rows when given."""
        url, query = f"{collection}/", {**params, "cursor": "", "limit": min(limit or PAGE, PAGE)}
        seen = 0
        while url:
            body = self.get(url, **query) if query else self.get(url)
            for row in body["results"]:
                yield row
                seen += 1
                if limit is not None and seen >= limit:
                    return
            url, query = body.get("next"), None

    def find(self, collection: str, ref: str, *, what: str, search: bool = False) -> dict:
        """The object ``ref`` names: an id (digits) or an exact name. A name that several
        objects share is refused with their ids, so a script never acts on the wrong one."""
        ref = str(ref)
        if ref.isdigit():
            try:
                return self.get(f"{collection}/{ref}/")
            except CliError as exc:
                if exc.code != EXIT_NOT_FOUND:
                    raise
                raise CliError(f"no {what} with id {ref}", EXIT_NOT_FOUND) from None
        rows = self.pages(collection, search=ref) if search else self.pages(collection)
        matches = [row for row in rows if row.get("name") == ref]
        if not matches:
            raise CliError(f"no {what} named {ref!r}", EXIT_NOT_FOUND)
        if len(matches) > 1:
            ids = ", ".join(str(row["id"]) for row in matches)
            raise CliError(f"{len(matches)} {what}s are named {ref!r} (ids {ids}): give the id", EXIT_NOT_FOUND)
        return matches[0]

    def find_id(self, collection: str, ref: str | None, *, what: str) -> int | None:
        if ref is None:
            return None
        return int(ref) if str(ref).isdigit() else self.find(collection, ref, what=what)["id"]


def _reason(exc: Exception) -> str:
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if hint in text:
            return hint.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class Names:
    """id -> name of a small collection (servers, pools, repositories), read once when needed."""

    def __init__(self, client: Client):
        self.client = client
        self.cache: dict[str, dict[int, str]] = {}

    def __call__(self, collection: str, pk) -> str:
        if pk is None:
            return "-"
        if collection not in self.cache:
            try:
                self.cache[collection] = {row["id"]: row["name"] for row in self.client.pages(collection)}
            except CliError:
                self.cache[collection] = {}  # not allowed to list them: show ids
        return self.cache[collection].get(pk, str(pk))
