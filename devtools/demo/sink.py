"""A webhook receiver for the demo: verifies X-Tiendo-Signature and prints each alert."""

import hmac

import uvicorn
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse

from services.notifier.channels import SIGNATURE_HEADER, sign
from tiendo.logs import configure_logging, get_logger

log = get_logger(__name__)


def create_sink(secret: str) -> FastAPI:
    app = FastAPI(title="tiendo demo webhook receiver")
    received: list[dict[str, object]] = []
    app.state.received = received

    @app.post("/alerts")
    async def alerts(request: Request) -> JSONResponse:
        body = await request.body()
        good = hmac.compare_digest(request.headers.get(SIGNATURE_HEADER, ""), sign(secret, body))
        if not good:
            log.warning("webhook_bad_signature")
            return JSONResponse({"error": "bad signature"}, status_code=401)
        payload = await request.json()
        received.append(payload)
        log.info(
            "webhook_alert_received",
            kind=payload.get("kind"),
            unit=payload.get("unit"),
            unit_name=payload.get("unit_name"),
            indicator=payload.get("indicator"),
            pace=payload.get("pace"),
        )
        return JSONResponse({"ok": True})

    @app.get("/alerts")
    async def list_alerts() -> list[dict[str, object]]:
        return received

    return app


def serve_sink(port: int, secret: str) -> None:
    configure_logging("INFO", json=False)
    uvicorn.run(create_sink(secret), host="127.0.0.1", port=port, log_config=None, access_log=False)
