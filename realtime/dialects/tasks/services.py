"""Writes of the tasks dialect: stored images."""
from __future__ import annotations

import uuid

from realtime.models import TaskImage


def task_image_create(*, project_id: int, api_key_pk: str | None, data: bytes, content_type: str,
                      width: int, height: int) -> TaskImage:
    return TaskImage.objects.create(
        image_uuid=uuid.uuid4(), project_id=project_id, api_key_id=api_key_pk, data=data,
        content_type=content_type, width=width, height=height,
    )
