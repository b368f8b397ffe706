"""Reads of the tasks dialect: stored images."""
from __future__ import annotations

import uuid

from realtime.models import TaskImage


def task_image_for_project(*, project_id: int, image_uuid: str) -> TaskImage | None:
    """An image the project stored (None for an unknown id or another project's image)."""
    try:
        parsed = uuid.UUID(image_uuid)
    except (ValueError, TypeError, AttributeError):
        return None
    return TaskImage.objects.filter(project_id=project_id, image_uuid=parsed).first()


def task_image_public(*, image_uuid: uuid.UUID) -> TaskImage | None:
    """The image behind a public image URL (the unguessable id is the capability)."""
    return TaskImage.objects.filter(image_uuid=image_uuid).only("data", "content_type").first()
