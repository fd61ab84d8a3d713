"""Cursor pagination for every list endpoint: ``{"results": [...], "next": <url or null>}``.

Cursor (keyset) pagination keeps pages stable while new rows are being appended, which is the
normal case for executions and history events. ``?limit=N`` sets the page size (max 500).
"""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response


class CursorPagination(pagination.CursorPagination):
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = "-id"
    cursor_query_param = "cursor"

    def decode_cursor(self, request):
        # DRF answers a garbled cursor with 404; it is a bad argument, not a missing resource.
        try:
            return super().decode_cursor(request)
        except NotFound:
            message = self.invalid_cursor_message
            raise ValidationError({self.cursor_query_param: [message]}) from None

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {
                    "type": "string",
                    "nullable": True,
                    "format": "uri",
                    "description": "URL of the next page, or null on the last page.",
                },
            },
        }
