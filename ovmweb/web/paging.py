"""Keyset paging of the web UI's long tables (VMs, jobs): ``?cursor=`` links.

A table opens on its first page read by keyset; Next, Previous and Last carry a
cursor, so page 2,000 of 100,000 VMs costs what page 1 does (``ovmweb.core.keyset``).
``?page=N`` still answers by offset, for links saved before."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import HttpRequest

from ovmweb.core import keyset


@dataclass
class CursorPage:
    """What the pager template shows: the rows, the total, and the cursors of the
    pages around. Where the page sits is known only at the two ends."""

    rows: list
    count: int
    per: int
    first: bool
    last: bool
    next_cursor: str | None
    previous_cursor: str | None
    last_cursor: str = keyset.last_page_cursor()

    def __iter__(self):
        return iter(self.rows)

    @property
    def object_list(self) -> list:
        return self.rows

    @property
    def num_pages(self) -> int:
        return max(1, math.ceil(self.count / self.per))

    @property
    def start_index(self) -> int | None:
        if not self.rows:
            return 0
        if self.first:
            return 1
        return self.count - len(self.rows) + 1 if self.last else None

    @property
    def end_index(self) -> int | None:
        start = self.start_index
        return None if start is None else start + len(self.rows) - 1 if self.rows else 0

    @property
    def number(self) -> int | None:
        return 1 if self.first else self.num_pages if self.last else None


def cursor_page(request: HttpRequest, queryset: QuerySet, per: int) -> CursorPage | None:
    """The keyset page ``request`` asks for, or None when it asks for ``?page=N`` (offset).

    A cursor that does not decode (edited by hand, or from another sort order) gives
    the first page rather than an error page."""
    if "page" in request.GET:
        return None
    cursor = request.GET.get("cursor") or None
    try:
        found = keyset.page(queryset, cursor=cursor, limit=per)
    except keyset.KeysetError:
        cursor, found = None, keyset.page(queryset, cursor=None, limit=per)
    return CursorPage(
        rows=found.rows,
        count=queryset.count(),
        per=per,
        first=cursor is None or found.previous_cursor is None,
        last=found.next_cursor is None,
        next_cursor=found.next_cursor,
        previous_cursor=found.previous_cursor,
    )
