"""Uploads at the HTTP edge: refused before they are parsed, streamed to the staging area.

``UploadLimitMiddleware`` runs before anything reads a multipart body (the CSRF
check and DRF's parser both would): a declared Content-Length over the cap or
over the staging area's free space is answered at once (413 / 507), and the
body is then parsed here, through ``StagingUploadHandler``, so a body without a
Content-Length, or longer than it said, is stopped by counting its bytes.

``StagingUploadHandler`` writes a file bigger than FILE_UPLOAD_MAX_MEMORY_SIZE
as it arrives to a temporary file inside the staging area (not memory, not
/tmp), which the upload's service then renames into place: one copy on disk.
The rules themselves (cap, free space, cleanup) live in ovmweb.inventory.staging.
"""

from __future__ import annotations

import tempfile

from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpResponse, JsonResponse

from ovmweb.inventory import staging

# Bytes of multipart framing (boundaries, part headers, small fields) allowed over the file cap.
FRAMING_ALLOWANCE = 1024 * 1024
# Free space is looked at again after every this many bytes of a body (cheap: one statvfs).
_SPACE_CHECK_EVERY = 64 * 1024 * 1024


class StagedUploadedFile(TemporaryUploadedFile):
    """A TemporaryUploadedFile created in the staging area, whatever FILE_UPLOAD_TEMP_DIR says."""

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        file = tempfile.NamedTemporaryFile(suffix=".upload", dir=staging.staging_dir())
        UploadedFile.__init__(self, file, name, content_type, size, charset, content_type_extra)


class StagingUploadHandler(TemporaryFileUploadHandler):
    """Counts every file byte against the cap and the free space, and stops the upload at once."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.received = 0
        self.checked_at = 0
        if content_length:
            staging.check_size(max(content_length - FRAMING_ALLOWANCE, 0))

    def new_file(self, *args, **kwargs):
        # Bypass TemporaryFileUploadHandler.new_file: the file goes to the staging area.
        super(TemporaryFileUploadHandler, self).new_file(*args, **kwargs)
        self.file = StagedUploadedFile(self.file_name, self.content_type, 0, self.charset, self.content_type_extra)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        try:
            if self.received > staging.max_bytes():
                staging.check_size(self.received)
            if self.received - self.checked_at >= _SPACE_CHECK_EVERY:
                self.checked_at = self.received
                staging.check_free_space(len(raw_data))
        except staging.UploadRefused:
            self.file.close()  # a NamedTemporaryFile: closing removes what was written
            raise
        return super().receive_data_chunk(raw_data, start)


def _is_multipart(request) -> bool:
    return request.method in ("POST", "PUT", "PATCH") and request.content_type == "multipart/form-data"


def _declared_length(request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def refusal_response(request, exc: staging.UploadRefused) -> HttpResponse:
    """JSON for the API and the page's XHR (``{"detail", "errors"}``), plain text otherwise."""
    accept = request.headers.get("Accept", "")
    if request.path.startswith("/api/") or accept.startswith("application/json"):
        return JsonResponse({"ok": False, "detail": exc.text, "errors": {"file": [exc.text]}}, status=exc.status)
    return HttpResponse(exc.text, status=exc.status, content_type="text/plain; charset=utf-8")


class UploadLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _is_multipart(request):
            try:
                length = _declared_length(request)
                if length is not None:
                    staging.check_size(max(length - FRAMING_ALLOWANCE, 0))
                # Parse now, through the counting handler, before any view or check reads it.
                request.POST  # noqa: B018
                request.FILES  # noqa: B018
            except staging.UploadRefused as exc:
                return refusal_response(request, exc)
        return self.get_response(request)
