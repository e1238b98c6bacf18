"""A webhook receiver for the demo: verifies each message as the Standard Webhooks spec
says (signature, a timestamp at most 5 minutes old), keeps each `webhook-id` once, and
prints each alert."""

import uvicorn
from fastapi import FastAPI, Request
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.responses import JSONResponse

from tiendo.logs import configure_logging, get_logger

log = get_logger(__name__)


def create_sink(secret: str) -> FastAPI:
    app = FastAPI(title="tiendo demo webhook receiver")
    # `whsec_…` as tiendo issues them; the development fallback's UTF-8 bytes otherwise
    webhook = Webhook(secret if secret.startswith("whsec_") else secret.encode())
    received: dict[str, dict[str, object]] = {}  # by webhook-id: a redelivery is kept once
    app.state.received = received

    @app.post("/alerts")
    async def alerts(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            # also refuses a timestamp more than 5 minutes from now: a captured message
            # cannot be replayed later
            payload = webhook.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError) as exc:
            log.warning("webhook_refused", reason=str(exc))
            return JSONResponse({"error": "bad signature"}, status_code=401)
        webhook_id = request.headers["webhook-id"]
        if webhook_id in received:
            # a redelivery (the sender did not hear our answer) or a replay: acted on once,
            # and answered 200 so that the sender stops
            return JSONResponse({"ok": True, "duplicate": True})
        received[webhook_id] = payload
        log.info(
            "webhook_alert_received",
            kind=payload.get("kind"),
            recipient=(payload.get("recipient") or {}).get("unit"),
            firing=len(payload.get("firing") or ()),
            resolved=len(payload.get("resolved") or ()),
        )
        return JSONResponse({"ok": True})

    @app.get("/alerts")
    async def list_alerts() -> list[dict[str, object]]:
        return list(received.values())

    return app


def serve_sink(port: int, secret: str) -> None:
    configure_logging("INFO", json=False)
    uvicorn.run(create_sink(secret), host="127.0.0.1", port=port, log_config=None, access_log=False)
