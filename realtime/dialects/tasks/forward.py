"""Model-backed task types (text2img, img2img, inpainting, image2text) go to the task upstream URL of
the deployment (the environment's default, or the task's ``deploymentKey``) through realtime.lib.outbound.

http(s): POST a JSON array holding the task; ws(s): send it over a WebSocket and wait for the answer
carrying its taskUUID. The answer is ``{"data": [result]}`` or ``{"errors": [error]}`` (a bare result
object or array is accepted too)."""
from __future__ import annotations

import asyncio
import json

import httpx
from channels.db import database_sync_to_async
from django.conf import settings
from websockets.exceptions import WebSocketException

from realtime.agents.selectors import deployment_resolve
from realtime.dialects.tasks import TaskContext, TaskFailed
from realtime.lib import outbound

MODEL_TASK_TYPES = ("text2img", "img2img", "inpainting", "image2text")
# The result fields docs/dialects.md documents per task type: nothing else an upstream answers is
# passed back (an upstream's own data, e.g. an internal service's, must not reach the client).
_IMAGE_RESULT = ("imageUUID", "imageURL", "imageBase64Data", "imageDataURI", "width", "height", "seed",
                 "NSFWContent", "cost")
RESULT_FIELDS = {"text2img": _IMAGE_RESULT, "img2img": _IMAGE_RESULT, "inpainting": _IMAGE_RESULT,
                 "image2text": ("text", "cost")}
UNREACHABLE = "The task upstream could not be reached or did not answer."


def _task_upstream(ctx: TaskContext, deployment_key: str | None) -> tuple[str, str, str]:
    from accounts.models import Deployment

    try:
        deployment = deployment_resolve(project_id=ctx.auth.project_id, environment_id=ctx.auth.environment_id,
                                        deployment_key=deployment_key)
    except Deployment.DoesNotExist:
        raise TaskFailed("deployment_not_found", "No such deployment in this key's environment.",
                         parameter="deploymentKey" if deployment_key else None) from None
    return deployment.task_upstream_url, deployment.name, deployment.deployment_key


def _answer_for(payload, task_uuid: str, task_type: str) -> dict | None:
    """The result (or raise the error) for ``task_uuid`` in an upstream answer; None if not in it."""
    if isinstance(payload, dict) and isinstance(payload.get("errors"), list):
        for error in payload["errors"]:
            if isinstance(error, dict) and error.get("taskUUID") in (None, task_uuid):
                raise TaskFailed("task_upstream_error",
                                 f"The task upstream refused the task: {str(error.get('message', ''))[:300]}"
                                 + (f" ({str(error['code'])[:60]})" if error.get("code") else ""))
    items = payload.get("data") if isinstance(payload, dict) and "data" in payload else payload
    items = items if isinstance(items, list) else [items]
    for item in items:
        if isinstance(item, dict) and item.get("taskUUID") in (None, task_uuid):
            return {k: item[k] for k in RESULT_FIELDS.get(task_type, ()) if k in item}
    return None


async def _over_http(url: str, task: dict) -> dict:
    try:
        response = await outbound.http_post_json(url, payload=[task], timeout=settings.TASKS_UPSTREAM_TIMEOUT_SECONDS)
    except httpx.HTTPError:
        # One code and message for every way of not reaching it (the outbound policy's refusal
        # included): the answer says nothing about the network.
        raise TaskFailed("task_upstream_unavailable", UNREACHABLE) from None
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if response.status_code >= 400 and not (isinstance(payload, dict) and payload.get("errors")):
        raise TaskFailed("task_upstream_failed", f"The task upstream answered HTTP {response.status_code}.")
    answer = _answer_for(payload, task["taskUUID"], task["taskType"])
    if answer is None:
        raise TaskFailed("task_upstream_failed", "The task upstream's answer holds no result for this task.")
    return answer


async def _over_websocket(url: str, task: dict) -> dict:
    try:
        async with asyncio.timeout(settings.TASKS_UPSTREAM_TIMEOUT_SECONDS):
            ws = await outbound.websocket_connect(url)
            try:
                await ws.send(json.dumps([task]))
                while True:
                    try:
                        answer = _answer_for(json.loads(await ws.recv()), task["taskUUID"], task["taskType"])
                    except ValueError:
                        continue
                    if answer is not None:
                        return answer
            finally:
                await ws.close()
    except (OSError, TimeoutError, WebSocketException):
        raise TaskFailed("task_upstream_unavailable", UNREACHABLE) from None


async def forward(task: dict, ctx: TaskContext) -> dict:
    deployment_key = task.get("deploymentKey")
    if deployment_key is not None and not isinstance(deployment_key, str):
        raise TaskFailed("invalid_parameter", "deploymentKey must be a string.", parameter="deploymentKey")
    url, name, key = await database_sync_to_async(_task_upstream)(ctx, deployment_key)
    if not url:
        raise TaskFailed(
            "task_upstream_not_configured",
            f"{task['taskType']} needs a model: deployment {name!r} ({key}) has no task upstream URL. "
            "Set the deployment's task_upstream_url to a service that runs this task type.",
        )
    upstream_task = {k: v for k, v in task.items() if k != "deploymentKey"}
    if url.startswith(("ws://", "wss://")):
        return await _over_websocket(url, upstream_task)
    return await _over_http(url, upstream_task)
