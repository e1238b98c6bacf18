"""`GET /v1/campaigns/{id}/briefing`: the weekly briefing pack as HTML, PDF or XLSX."""

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from starlette.concurrency import run_in_threadpool

from services.notifier.briefing import formats, pack
from services.notifier.languages import Language
from services.notifier.settings import NotifierSettings
from tiendo.board.recount_refusal import BeingRecounted, recount_problem
from tiendo.clock import Clock
from tiendo.dependencies import Pool
from tiendo.identity.guard import Guard
from tiendo.identity.model import Identity, Role
from tiendo.logs import get_logger
from tiendo.moments import Moment
from tiendo.web import ProblemError, problem_responses

log = get_logger(__name__)


def briefing_router(settings: NotifierSettings, clock: Clock, access: Guard) -> APIRouter:
    router = APIRouter(tags=["briefing"])

    async def whole_tree(
        who: Annotated[Identity, Depends(access.require(Role.reader, Role.admin))],
    ) -> None:
        # the pack ranks every unit of a level and quotes every laggard's explanation: for
        # administrators and readers of the whole tree (HQ), not for one district's reader
        if not who.everywhere:
            raise HTTPException(403, "the briefing pack is for readers of every unit")

    @router.get(
        "/v1/campaigns/{campaign_id}/briefing",
        dependencies=[Depends(whole_tree)],
        summary="The weekly briefing pack: figures against plan, chart, ranking with "
        "movement, laggards and their explanations, last week's commitments",
        response_class=Response,
        responses={
            200: {
                "content": {m.split(";")[0]: {} for m in pack.MEDIA.values()},
                "description": "the pack in the format asked for",
            },
            **problem_responses(401, 403, 404, 422, 503),
        },
    )
    async def get_briefing(
        campaign_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
        pool: Pool,
        at: Annotated[
            Moment | None,
            Query(
                description="the briefing moment, RFC 3339 with offset, not after now "
                "(422); default the latest briefing"
            ),
        ] = None,
        level: Annotated[
            int | None,
            Query(
                ge=1,
                le=6,
                description="default the bottom_rank level, or the deepest level with a "
                "target on the tree of the briefing (422: a level without one)",
            ),
        ] = None,
        format: Annotated[Literal["html", "pdf", "xlsx"], Query()] = "html",
        lang: Annotated[
            Language | None, Query(description="default the campaign's language")
        ] = None,
        indicator: Annotated[
            list[str] | None, Query(description="only these indicators (default all)")
        ] = None,
    ) -> Response:
        started = time.perf_counter()
        async with pool.acquire() as conn:
            try:
                document = await pack.briefing_pack(
                    conn,
                    settings,
                    campaign_id,
                    at=at,
                    now=clock.now(),
                    level=level,
                    language=lang,
                    fmt="html" if format == "pdf" else format,
                    indicators=indicator,
                )
            except LookupError as exc:
                raise HTTPException(404, str(exc)) from exc
            except BeingRecounted as exc:
                # no pack of figures short of the events: say how far the rebuild is
                raise recount_problem(exc) from exc
            except pack.Unanswered as exc:
                # named as the parameters' validation names a field (tiendo.web)
                problem = {"index": None, "field": exc.field, "message": str(exc)}
                raise ProblemError(422, str(exc), [problem], slug="invalid-parameters") from exc
        body = document.body
        filename = document.filename
        if format == "pdf":
            # WeasyPrint is CPU-bound for seconds on a large pack: off the event loop
            body = await run_in_threadpool(formats.pdf, body.decode("utf-8"))
            filename = filename.removesuffix(".html") + ".pdf"
        log.info(
            "briefing_rendered",
            campaign=campaign_id,
            format=format,
            bytes=len(body),
            seconds=round(time.perf_counter() - started, 2),
        )
        disposition = "inline" if format == "html" else "attachment"
        return Response(
            body,
            media_type=pack.MEDIA[format],
            headers={"Content-Disposition": f'{disposition}; filename="{filename}"'},
        )

    return router
