"""Cross-process notices over the channel layer (at-most-once; used only for prompt reactions,
never for delivery of data that must not be lost)."""
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def key_group(api_key_pk: str) -> str:
    return f"apikey.{api_key_pk}"


def key_revoked_broadcast(*, api_key_pk: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(key_group(api_key_pk), {"type": "key.revoked", "api_key_pk": api_key_pk})
