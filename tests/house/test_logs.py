"""Logs: JSON lines in production, a readable console in development, the request id on
every line of a request, and no secret or token in any line, whoever logs it."""

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog
from fastapi import FastAPI

from services.aggregator.settings import AggregatorSettings
from tiendo.logs import configure_logging, get_logger, scrub
from tiendo.web import RequestIdMiddleware

SECRETS = ("s3cr3t-admin", "s3cr3t-hook", "pa55word", "tok-123456", "hunter2", "abcdef123")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(err: str) -> list[dict[str, object]]:
    parsed = [json.loads(line) for line in err.splitlines() if line.strip()]
    return [p for p in parsed if p.get("logger") != "httpx"]  # the test's client


def test_production_logs_are_json_lines_with_level_time_and_logger(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    get_logger("tiendo.test").info("batch_applied", partition=1, offsets={"1": 41})
    logging.getLogger("aiokafka.fake").warning("broker %s away", "b1")  # the stdlib too
    get_logger("tiendo.test").debug("not_shown")
    first, second = lines(capsys.readouterr().err)
    assert first["event"] == "batch_applied"
    assert first["partition"] == 1
    assert first["offsets"] == {"1": 41}
    assert first["level"] == "info"
    assert first["logger"] == "tiendo.test"
    assert str(first["timestamp"]).endswith("Z")
    assert second["event"] == "broker b1 away"
    assert second["level"] == "warning"


def test_development_logs_are_readable_console_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", json=False)
    get_logger("tiendo.test").info("batch_applied", partition=2)
    err = capsys.readouterr().err
    assert "batch_applied" in err
    assert "partition=2" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[0])


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(RequestIdMiddleware)
    log = get_logger("tiendo.test")

    @app.get("/work")
    async def work() -> dict[str, bool]:
        log.info("work_started")
        logging.getLogger("some.library").warning("library line")
        log.info("work_done")
        return {"ok": True}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom with Bearer tok-123456 inside")

    @app.post("/v1/events/{event_id}")
    async def post_event(event_id: str) -> dict[str, str]:
        return {"id": event_id}

    return app


async def test_every_line_of_a_request_carries_its_request_id(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/work")
        own = await client.get("/work", headers={"X-Request-ID": "briefing-42"})
        bogus = await client.get("/work", headers={"X-Request-ID": "x" * 65})
    logged = lines(capsys.readouterr().err)
    assert len(logged) == 12  # three lines of the route and the request line, three times
    by_request: dict[object, list[str]] = {}
    for line in logged:
        by_request.setdefault(line["request_id"], []).append(str(line["event"]))
    assert set(by_request) == {
        r.headers["x-request-id"],
        "briefing-42",
        bogus.headers["x-request-id"],
    }
    assert own.headers["x-request-id"] == "briefing-42"
    assert len(bogus.headers["x-request-id"]) == 32  # replaced, not echoed
    for events in by_request.values():
        assert events == ["work_started", "library line", "work_done", "request_handled"]
    handled = next(line for line in logged if line["event"] == "request_handled")
    assert handled["method"] == "GET"
    assert handled["path"] == "/work"
    assert handled["status"] == 200
    assert isinstance(handled["duration_ms"], float)


async def test_a_failing_request_is_logged_once_with_its_id_and_no_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert r.status_code == 500
    # the server's own copy of the traceback, without the request's context, is dropped
    logging.getLogger("uvicorn.error").error("Exception in ASGI application\n")
    err = capsys.readouterr().err
    (failed,) = lines(err)
    assert failed["event"] == "request_failed"
    assert failed["request_id"] == "req-boom"
    assert "RuntimeError: boom with Bearer ***" in str(failed["exception"])
    assert "tok-123456" not in err


def test_secrets_never_reach_a_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("DEBUG", json=True)
    log = get_logger("tiendo.test")
    log.info(
        "settings_loaded",
        admin_token="s3cr3t-admin",
        webhook_secret="s3cr3t-hook",
        database_url="postgresql://tiendo:pa55word@db:5432/tiendo",
        headers={"Authorization": "Bearer tok-123456", "Accept": "application/json"},
        token_file=".local/demo-token",
    )
    log.warning("upstream said: Authorization: Bearer abcdef123 was refused")
    logging.getLogger("asyncpg.fake").error("cannot connect to postgresql://u:hunter2@h/db")
    try:
        raise ConnectionError("postgresql://tiendo:pa55word@db/tiendo refused")
    except ConnectionError:
        log.exception("database_unreachable")
    err = capsys.readouterr().err
    for secret in SECRETS:
        assert secret not in err
    first = lines(err)[0]
    assert first["admin_token"] == first["webhook_secret"] == "***"
    assert first["database_url"] == "postgresql://tiendo:***@db:5432/tiendo"
    assert first["headers"] == {"Authorization": "***", "Accept": "application/json"}
    assert first["token_file"] == ".local/demo-token"  # a path, not a secret


def test_production_settings_can_be_logged_whole_without_their_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json=True)
    settings = AggregatorSettings(
        environment="production",
        admin_token="s3cr3t-admin",
        database_url="postgresql://tiendo:pa55word@db:5432/tiendo",
    )
    get_logger("tiendo.test").info("aggregator_settings", **settings.model_dump())
    err = capsys.readouterr().err
    assert "s3cr3t-admin" not in err
    assert "pa55word" not in err
    assert lines(err)[0]["metrics_unit_level"] == 2


def test_scrub_keeps_ordinary_text() -> None:
    text = "applied 5000 records, offsets 0:41 1:17, see http://127.0.0.1:8002/docs"
    assert scrub(text) == text
    assert scrub("basic dXNlcjpwYXNz") == "basic ***"


MADE_UP = ("timestamp", "duration_ms", "request_id")


async def test_no_number_from_a_path_reaches_a_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # an identity number in a URL: the route's template when one matched, else the path
    # with its digits replaced (a redirect, a 404, a 405)
    configure_logging("DEBUG", json=True)
    transport = httpx.ASGITransport(app=_app())
    sent = {
        "/v1/events/001203004567": "/v1/events/{event_id}",
        "/v1/events/001203004567/": "/v1/events/#/",
        "/v1/event/001203004567": "/v1/event/#",
        "/v1/events/001-203-004567/x": "/v1/events/#/x",
        "/v1/x/0/0/1/2/0/3/0/0/4/5/6/7": "/v1/x/#",
        "/v1/eventz/cccd001203004567.1": "/v1/eventz/cccd#",
        "/v1/x/０１２３４５６７８": "/v1/x/#",
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in sent:
            await client.post(path, json={})
        await client.get("/v1/events/036094123")  # 405
    logged = lines(capsys.readouterr().err)  # (the test client's own lines left out)
    handled = [line for line in logged if line["event"] == "request_handled"]
    assert [line["path"] for line in handled] == [*sent.values(), "/v1/events/{event_id}"]
    # (what the server makes up left out: a timestamp at .203 s or a random request id
    # holding "203" would read as a leak)
    searched = [{k: v for k, v in line.items() if k not in MADE_UP} for line in logged]
    text = json.dumps(searched, ensure_ascii=False)
    for number in ("001203004567", "203", "004567", "036094123", "０１２"):
        assert number not in text
