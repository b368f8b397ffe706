"""imageUpload and upscale: images stored in the database, decoded and resampled with Pillow in the
bounded CPU pool (never on the event loop)."""
from __future__ import annotations

import base64
import io
import re

from channels.db import database_sync_to_async
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from realtime.dialects.tasks import TaskContext, TaskFailed
from realtime.dialects.tasks.inputs import param_base64, param_choice
from realtime.dialects.tasks.selectors import task_image_for_project
from realtime.dialects.tasks.services import task_image_create
from realtime.local_agent.speech.pool import run_in_pool

FORMATS = {"PNG": ("PNG", "image/png"), "JPEG": ("JPEG", "image/jpeg"), "WEBP": ("WEBP", "image/webp"),
           "GIF": ("GIF", "image/gif"), "BMP": ("BMP", "image/bmp")}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp"}
OUTPUT_FORMATS = {"PNG": "PNG", "JPG": "JPEG", "JPEG": "JPEG", "WEBP": "WEBP"}
UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def image_url(ctx: TaskContext, image) -> str:
    return f"{ctx.public_base_url}/v1/images/{image.image_uuid}.{EXTENSIONS[image.content_type]}"


def _inspect(data: bytes) -> tuple[str, int, int]:
    """(content type, width, height) of an image Pillow can fully decode."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            kind = FORMATS.get(img.format or "")
            if kind is None:
                raise TaskFailed("unsupported_image_format", f"{img.format} images are not supported "
                                 f"(use {', '.join(FORMATS)}).", parameter="image")
            width, height = img.size
            if width * height > settings.TASKS_MAX_OUTPUT_PIXELS:
                raise TaskFailed("image_too_large", f"The image is {width}x{height}; the limit is "
                                 f"{settings.TASKS_MAX_OUTPUT_PIXELS} pixels.", parameter="image")
            img.load()
            return kind[1], width, height
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError):
        raise TaskFailed("invalid_image", "The data is not a readable image.", parameter="image") from None


def _upscale(data: bytes, factor: int, out_format: str | None) -> tuple[bytes, str, int, int]:
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        img: Image.Image = opened
        fmt = out_format or (img.format if img.format in ("PNG", "JPEG", "WEBP") else "PNG")
        width, height = img.size[0] * factor, img.size[1] * factor
        if width * height > settings.TASKS_MAX_OUTPUT_PIXELS:
            raise TaskFailed("image_too_large", f"Upscaled x{factor} the image would be {width}x{height}; the "
                             f"limit is {settings.TASKS_MAX_OUTPUT_PIXELS} pixels.", parameter="upscaleFactor")
        if img.mode not in ("RGB", "RGBA", "L", "LA"):
            img = img.convert("RGBA" if "transparency" in img.info or img.mode in ("P", "PA") else "RGB")
        if fmt == "JPEG" and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")  # JPEG has no alpha
        # Lanczos: the high-quality resampling filter Pillow offers for enlargement.
        out = img.resize((width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        out.save(buffer, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
        return buffer.getvalue(), FORMATS[fmt][1], width, height


async def _store(ctx: TaskContext, data: bytes, content_type: str, width: int, height: int):
    return await database_sync_to_async(task_image_create)(
        project_id=ctx.auth.project_id, api_key_pk=ctx.auth.pk, data=data, content_type=content_type,
        width=width, height=height,
    )


def _output(ctx: TaskContext, task: dict, image, data: bytes) -> dict:
    output_type = param_choice(task, "outputType", {"URL": "URL", "base64Data": "base64Data", "dataURI": "dataURI"},
                               "URL")
    result = {"imageUUID": str(image.image_uuid), "imageURL": image_url(ctx, image)}
    if output_type == "base64Data":
        result["imageBase64Data"] = base64.b64encode(data).decode("ascii")
    elif output_type == "dataURI":
        result["imageDataURI"] = f"data:{image.content_type};base64," + base64.b64encode(data).decode("ascii")
    return result


async def image_upload(task: dict, ctx: TaskContext) -> dict:
    data = param_base64(task, "image")
    content_type, width, height = await run_in_pool(_inspect, data)
    image = await _store(ctx, data, content_type, width, height)
    return {"imageUUID": str(image.image_uuid), "imageURL": image_url(ctx, image), "width": width, "height": height}


async def upscale(task: dict, ctx: TaskContext) -> dict:
    source = task.get("inputImage")
    if isinstance(source, str) and UUID_PATTERN.match(source):
        stored = await database_sync_to_async(task_image_for_project)(project_id=ctx.auth.project_id,
                                                                      image_uuid=source)
        if stored is None:
            raise TaskFailed("image_not_found", "No uploaded image with this imageUUID in this project.",
                             parameter="inputImage")
        data = bytes(stored.data)
    else:
        data = param_base64(task, "inputImage")
        await run_in_pool(_inspect, data)
    factor = param_choice(task, "upscaleFactor", {2: 2, 4: 4}, 2)
    out_format = param_choice(task, "outputFormat", {**OUTPUT_FORMATS, "": None}, "")
    output, content_type, width, height = await run_in_pool(_upscale, data, factor, out_format)
    image = await _store(ctx, output, content_type, width, height)
    return {**_output(ctx, task, image, output), "width": width, "height": height}
