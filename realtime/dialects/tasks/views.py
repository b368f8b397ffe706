"""The public URL of a stored task image: ``/v1/images/<imageUUID>.<ext>`` (the id is the capability)."""
from __future__ import annotations

from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

from realtime.dialects.tasks.selectors import task_image_public


@require_GET
def task_image(request, image_uuid, ext):
    image = task_image_public(image_uuid=image_uuid)
    if image is None:
        raise Http404("No such image.")
    response = HttpResponse(bytes(image.data), content_type=image.content_type)
    response["Cache-Control"] = "private, max-age=86400, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    return response
