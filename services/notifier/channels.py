"""Delivery channels. Each is a `Channel`: one message in, one result out."""

import hashlib
import hmac
from dataclasses import dataclass
from typing import Protocol

import httpx

SIGNATURE_HEADER = "X-Tiendo-Signature"


@dataclass(frozen=True, slots=True)
class Message:
    address: str
    body: bytes


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    ok: bool
    error: str | None = None


class Channel(Protocol):
    async def send(self, message: Message) -> DeliveryResult: ...


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex>` HMAC of the exact body bytes, as receivers recompute it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """POSTs the JSON body, signed with HMAC-SHA256 in X-Tiendo-Signature."""

    def __init__(self, client: httpx.AsyncClient, secret: str) -> None:
        self._client = client
        self._secret = secret

    async def send(self, message: Message) -> DeliveryResult:
        try:
            response = await self._client.post(
                message.address,
                content=message.body,
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self._secret, message.body),
                },
            )
        except httpx.HTTPError as exc:
            return DeliveryResult(False, f"{type(exc).__name__}: {exc}")
        if response.is_success:
            return DeliveryResult(True)
        return DeliveryResult(False, f"HTTP {response.status_code}")
