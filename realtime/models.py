"""Gateway data: JWT signing keys and the record of realtime sessions."""
from django.db import models
from django.utils import timezone

from accounts.models import ApiKey, Deployment, Project


class SigningKey(models.Model):
    """An asymmetric JWT signing key. The newest active key signs; every key not yet past
    ``verify_until`` is published in the JWKS, so rotation overlaps without downtime."""

    kid = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=10, default="EdDSA")
    private_key_encrypted = models.TextField()
    public_key_pem = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(null=True, blank=True)  # stops signing
    verify_until = models.DateTimeField(null=True, blank=True)  # stops verifying (and leaves the JWKS)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.kid


class SessionRecord(models.Model):
    """One client session through the gateway, for the sessions page (live and recent)."""

    session_id = models.CharField(max_length=100, db_index=True)  # the gateway's own, unique per session
    # The client's own id for it (seed 004 ``key``, seed 001 ``connectionSessionUUID``), reusable over time.
    client_key = models.CharField(max_length=100, blank=True, db_index=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="session_records")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    key_id = models.CharField(max_length=32, blank=True)
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    dialect = models.CharField(max_length=20)
    started_at = models.DateTimeField(default=timezone.now)  # when the gateway opened it (written later, in a batch)
    ended_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["project", "started_at"])]


class TaskImage(models.Model):
    """An image stored by the tasks dialect (imageUpload, upscale results). Kept in the database so
    every gateway process and host can serve and reuse it; its URL is a capability (unguessable UUID)."""

    image_uuid = models.UUIDField(unique=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="task_images")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    content_type = models.CharField(max_length=40)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)


class Conversation(models.Model):
    """A conversation of the conversation dialect; its turns let a reconnect continue where it left off."""

    conversation_id = models.UUIDField(unique=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="conversations")
    environment = models.ForeignKey("accounts.Environment", on_delete=models.CASCADE, related_name="+")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="conversations")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel_key = models.CharField(max_length=100)
    language = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)


class ConversationTurn(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField()
    message_id = models.UUIDField()
    user_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class SessionEvent(models.Model):
    """One entry of a session's timeline (realtime.sessions.timeline): an event as it crossed the
    gateway, audio elided, long text cut. A run of same-type audio or delta events is one entry with
    its ``count``. Bounded per session; written in batches off the relay path."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    session_id = models.CharField(max_length=100)
    at = models.DateTimeField()
    direction = models.CharField(max_length=10)  # client (to the upstream), upstream (to the client), task, …
    type = models.CharField(max_length=80)
    count = models.PositiveIntegerField(default=1)
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["project", "session_id", "id"]), models.Index(fields=["at"])]
