from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from ovmweb.core import keyset


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=`` with ``count`` and ``results``; a page is bounded so
    that one request can never ask for the whole inventory at once.

    ``?cursor=`` (empty for the first page) selects keyset paging instead: the
    answer has ``next``/``previous`` links carrying opaque cursors and no ``count``,
    and a page costs the same at the end of 100,000 VMs as at the start
    (``ovmweb.core.keyset``). Offset paging stays for the clients that use it."""

    default_limit = 50
    max_limit = 1000
    cursor_query_param = "cursor"

    def paginate_queryset(self, queryset, request, view=None):
        self.keyset_page = None
        if self.cursor_query_param not in request.query_params:
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        self.limit = self.get_limit(request)
        try:
            self.keyset_page = keyset.page(
                queryset, cursor=request.query_params[self.cursor_query_param] or None, limit=self.limit
            )
        except keyset.KeysetError as e:
            raise ValidationError({self.cursor_query_param: [_("Invalid cursor: %(reason)s.") % {"reason": e}]}) from e
        return self.keyset_page.rows

    def _cursor_link(self, cursor):
        if cursor is None:
            return None
        url = remove_query_param(self.request.build_absolute_uri(), self.offset_query_param)
        return replace_query_param(url, self.cursor_query_param, cursor)

    def get_paginated_response(self, data):
        if self.keyset_page is None:
            return super().get_paginated_response(data)
        return Response(
            {
                "next": self._cursor_link(self.keyset_page.next_cursor),
                "previous": self._cursor_link(self.keyset_page.previous_cursor),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        response = super().get_paginated_response_schema(schema)
        # No count in cursor mode: counting would read every row the cursor skips.
        response["required"] = ["results"]
        return response

    def get_schema_operation_parameters(self, view):
        return [
            *super().get_schema_operation_parameters(view),
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": _(
                    "Keyset paging: empty for the first page, then the cursor of a next or previous link "
                    "(the answer then has no count)."
                ),
                "schema": {"type": "string"},
            },
        ]
