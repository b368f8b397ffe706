"""Seed 001 at least once: a result produced while the network path is silent (no FIN, no RST) is not
lost in the dead socket; the client resuming with its connectionSessionUUID receives it, on the same
process or another one."""
from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from asgiref.sync import sync_to_async

from accounts.models import EnvironmentKind
from tests.test_tasks_support import TIMEOUT, TaskUpstream, new_connection, recv_json, task_uuid

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _set_task_upstream(project, url: str) -> None:
    deployment = project.deployments.get(environment__kind=EnvironmentKind.DEVELOPMENT, is_default=True)
    deployment.task_upstream_url = url
    deployment.save(update_fields=["task_upstream_url"])


set_task_upstream = sync_to_async(_set_task_upstream)


class FreezingProxy:
    """A loopback TCP proxy that, once frozen, forwards nothing in either direction and closes nothing:
    what a silently dropped network path looks like to both ends. Bytes the server sends meanwhile
    are counted (and lost)."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.frozen = False
        self.lost_from_server = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/"

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in self._writers:
            writer.close()

    async def _accept(self, client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_writer, server_writer]
        for reader, writer, from_server in ((client_reader, server_writer, False),
                                            (server_reader, client_writer, True)):
            task = asyncio.get_running_loop().create_task(self._pipe(reader, writer, from_server))
            self._pipes.add(task)

    async def _pipe(self, reader, writer, from_server: bool):
        while data := await reader.read(65536):
            if self.frozen:
                if from_server:
                    self.lost_from_server.set()
                continue
            writer.write(data)
            await writer.drain()


@pytest.mark.parametrize("resume_on", ["same process", "another process"])
async def test_a_result_sent_into_a_silent_network_reaches_the_resumed_client(
        server_factory, project, dev_key, resume_on):
    _, raw = dev_key
    async with TaskUpstream() as upstream:
        await set_task_upstream(project, upstream.url)
        first = server_factory()
        second = first if resume_on == "same process" else server_factory()
        async with FreezingProxy(first.port) as proxy:
            ws = await websockets.connect(proxy.url, open_timeout=TIMEOUT, compression=None, ping_interval=None)
            session_uuid = (await new_connection(ws, raw))["newConnectionSessionUUID"]["connectionSessionUUID"]
            before = {"taskType": "text2img", "taskUUID": task_uuid(), "positivePrompt": "before"}
            during = {"taskType": "text2img", "taskUUID": task_uuid(), "positivePrompt": "during"}
            await ws.send(json.dumps([before, during]))
            for _ in range(2):
                await upstream.next_task()
            upstream.release(before["taskUUID"])
            delivered = await recv_json(ws)
            assert delivered["data"][0]["taskUUID"] == before["taskUUID"]

            proxy.frozen = True
            upstream.release(during["taskUUID"])
            # The gateway wrote the result into the silent path (and pinged after it: no pong comes).
            await asyncio.wait_for(proxy.lost_from_server.wait(), TIMEOUT)

            async with websockets.connect(f"{second.ws_url}/v1/", open_timeout=TIMEOUT, compression=None) as again:
                reply = await new_connection(again, raw, session_uuid)
                assert reply == {"newConnectionSessionUUID": {"connectionSessionUUID": session_uuid}}
                seen = set()
                async with asyncio.timeout(TIMEOUT):
                    while during["taskUUID"] not in seen:
                        message = await recv_json(again)
                        seen |= {item["taskUUID"] for item in message.get("data", [])}
                # At least once: a duplicate of "before" may come too (its pong may have been lost); the
                # client drops it by taskUUID. Nothing else is there.
                assert seen <= {before["taskUUID"], during["taskUUID"]}
            ws.transport.abort()
