"""Keyset ("cursor") pagination of any ordered queryset.

An offset page makes the database read and drop every row before it, so the last
page of 100,000 VMs costs three times the first. A keyset page starts where the
previous one ended instead: ``WHERE (name, id) > (last name, last id)``, which
costs the same on page 1 and on page 2,000, and never skips or repeats a row when
rows are added or removed between two requests.

The cursor is opaque to clients: URL-safe base64 of the ordering values of the row
it starts after (or before, going back), as JSON. Nothing in it is trusted: each
value goes through its model field's ``to_python``, and the query only compares it.

Invariants: the ordering always ends with the primary key (added when missing), so
it is total and pages never overlap; NULL sorts as the smallest value on every
database (SQLite's rule, asked of PostgreSQL with ``NULLS FIRST``/``LAST``), so a
page boundary on a VM without a server means the same thing everywhere.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import json
import uuid
from dataclasses import dataclass
from functools import reduce
from operator import and_, or_

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import F, Q, QuerySet
from django.db.models.expressions import OrderBy


class KeysetError(ValueError):
    """A cursor that does not decode or does not fit this list's ordering."""


@dataclass(frozen=True)
class Key:
    """One term of the ordering: a field path (``server__name``) and its direction."""

    path: str
    descending: bool
    nullable: bool
    field: object  # the model field at the end of the path (its to_python reads cursor values)

    def order_by(self, backwards: bool) -> OrderBy:
        descending = self.descending != backwards
        if not self.nullable:
            return F(self.path).desc() if descending else F(self.path).asc()
        # NULL is the smallest value: first going up, last going down.
        return F(self.path).desc(nulls_last=True) if descending else F(self.path).asc(nulls_first=True)

    def equal(self, value) -> Q:
        return Q(**{f"{self.path}__isnull": True}) if value is None else Q(**{self.path: value})

    def beyond(self, value, backwards: bool) -> Q:
        """Rows strictly past ``value`` in the direction a page reads."""
        downwards = self.descending != backwards
        if value is None:
            # Nothing is below NULL; everything not NULL is above it.
            return Q(pk__in=[]) if downwards else Q(**{f"{self.path}__isnull": False})
        if downwards:
            below = Q(**{f"{self.path}__lt": value})
            return below | Q(**{f"{self.path}__isnull": True}) if self.nullable else below
        return Q(**{f"{self.path}__gt": value})

    def value_of(self, obj):
        for part in self.path.split("__"):
            if obj is None:
                return None
            obj = getattr(obj, part)
        return obj


@dataclass(frozen=True)
class Position:
    values: tuple | None  # None: from the very end (the last page, read backwards)
    backwards: bool


@dataclass
class KeysetPage:
    rows: list
    next_cursor: str | None
    previous_cursor: str | None


def _resolve(model, path: str) -> tuple[object, bool]:
    """The field at the end of ``path`` and whether any step of it may be NULL."""
    nullable = False
    field = None
    for i, part in enumerate(path.split("__")):
        if field is not None:
            model = field.related_model
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            raise KeysetError(f"cannot page by {path!r}") from None
        last = i == len(path.split("__")) - 1
        if field.is_relation and (last or not (field.many_to_one or field.one_to_one)):
            # Ordering by a relation means the related model's own ordering: not a column to compare.
            raise KeysetError(f"cannot page by {path!r}")
        nullable = nullable or bool(field.null)
    return field, nullable


def ordering_keys(queryset: QuerySet) -> list[Key]:
    """The queryset's ordering as keys, ended by the primary key so that it is total."""
    model = queryset.model
    terms = list(queryset.query.order_by) or list(model._meta.ordering)
    pk_name = model._meta.pk.name
    keys = []
    for term in terms:
        if not isinstance(term, str) or term.lstrip("-") in ("?", ""):
            raise KeysetError("this ordering cannot be paged by cursor")
        path = term.lstrip("-")
        path = pk_name if path == "pk" else path
        field, nullable = _resolve(model, path)
        keys.append(Key(path, term.startswith("-"), nullable, field))
    if not keys or keys[-1].path != pk_name:
        descending = keys[-1].descending if keys else False
        keys.append(Key(pk_name, descending, False, model._meta.pk))
    return keys


def _plain(value):
    # Full precision: Django's JSON encoder cuts datetimes to milliseconds, and a job
    # created in the same millisecond as the cursor's would be skipped.
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot put {type(value).__name__} in a cursor")


def encode(values: tuple | None, backwards: bool) -> str:
    raw = json.dumps({"v": values, "b": backwards}, default=_plain, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, keys: list[Key]) -> Position:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        values, backwards = data["v"], data["b"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise KeysetError("invalid cursor") from None
    if not isinstance(backwards, bool):
        raise KeysetError("invalid cursor")
    if values is None:
        return Position(None, backwards)
    if not isinstance(values, list) or len(values) != len(keys):
        raise KeysetError("invalid cursor")
    try:
        parsed = tuple(None if v is None else key.field.to_python(v) for key, v in zip(keys, values, strict=True))
    except (ValidationError, TypeError, ValueError):
        raise KeysetError("invalid cursor") from None
    return Position(parsed, backwards)


def after(keys: list[Key], values: tuple, backwards: bool) -> Q:
    """``(k0, k1, ...) > (v0, v1, ...)`` in the reading direction, NULL-aware.

    Written as ``k0 >= v0 AND (k0 > v0 OR (k0 = v0 AND ...))``: the leading range lets
    the database seek in an index on the first key instead of scanning from the top."""
    terms = []
    for i, key in enumerate(keys):
        equal_before = [keys[j].equal(values[j]) for j in range(i)]
        terms.append(reduce(and_, [*equal_before, key.beyond(values[i], backwards)]))
    lexicographic = reduce(or_, terms)
    first = keys[0]
    return (first.beyond(values[0], backwards) | first.equal(values[0])) & lexicographic


def last_page_cursor() -> str:
    """The cursor of the last page (read backwards from the end), for a "last" link."""
    return encode(None, True)


def page(queryset: QuerySet, *, cursor: str | None, limit: int) -> KeysetPage:
    """The ``limit`` rows after (or before) ``cursor``, in the queryset's ordering.

    One query of ``limit + 1`` rows whatever the position (the extra row says whether
    there is a further page). ``cursor=None`` is the first page."""
    keys = ordering_keys(queryset)
    position = decode(cursor, keys) if cursor else Position(None, False)
    backwards = position.backwards
    qs = queryset.order_by(*(key.order_by(backwards) for key in keys))
    if position.values is not None:
        qs = qs.filter(after(keys, position.values, backwards))
    rows = list(qs[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    started = position.values is not None  # a page after (or before) some row: there is one on the other side
    has_next = more if not backwards else started
    has_previous = more if backwards else started
    if not rows:
        return KeysetPage(rows, None, encode(position.values, True) if started and not backwards else None)
    values_first = tuple(key.value_of(rows[0]) for key in keys)
    values_last = tuple(key.value_of(rows[-1]) for key in keys)
    return KeysetPage(
        rows,
        encode(values_last, False) if has_next else None,
        encode(values_first, True) if has_previous else None,
    )
