from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=`` with ``count`` and ``results``; a page is bounded so
    that one request can never ask for the whole inventory at once."""

    default_limit = 50
    max_limit = 1000
