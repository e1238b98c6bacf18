"""The weekly briefing pack of the demo campaign (issue 14), rendered for real: the HTML page
in Debian's chromium, the PDF by WeasyPrint and turned into PNG by pdftoppm, the XLSX read
back; laggards' explanations shown escaped, those who did not explain marked."""

import io
import os
import shutil
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import pytest
from openpyxl import load_workbook

from devtools.demo import seed
from devtools.localstack import KafkaBroker
from services.notifier.app import create_app
from services.notifier.explanations import Commitment, ExplanationIn
from services.notifier.repository import explanations as sql
from tests.briefing.browser import CHROMIUM, chromium
from tests.briefing.demo import BRIEFING, CAMPAIGN, NOW, TZ, seed_demo
from tests.support.identities import ADMIN
from tests.support.notifier import SmtpReceiver, notifier_settings
from tests.support.stack import Topics, running
from tiendo.clock import ManualClock

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium (.ci/run installs it)"),
    pytest.mark.skipif(not shutil.which("pdftoppm"), reason="poppler-utils (.ci/run)"),
    pytest.mark.timeout(900),
]
# Set to a folder (docs/images) to refresh the README's pictures from this run.
IMAGES = os.environ.get("TIENDO_BRIEFING_IMAGES")


def _laggards() -> list[str]:
    """The two slowest wards of the demo: behind at any briefing."""
    speed = seed.performance(seed.hanoi_wards())
    return sorted(speed, key=lambda w: speed[w])[:2]


async def _explain(dsn: str) -> tuple[str, str]:
    first, second = _laggards()
    conn = await asyncpg.connect(dsn)
    try:
        link = await sql.create_link(
            conn, CAMPAIGN, first, [], "test", BRIEFING - timedelta(days=6), timedelta(days=7)
        )
        said = [
            # an amendment: the pack shows the latest version by the briefing
            (first, "mat_dien", "mất điện hai ngày", Commitment(date(2023, 6, 5), None), 6),
            (first, "thieu_may", "<b>Máy hỏng</b> từ 20/5", Commitment(date(2023, 6, 5), None), 5),
            # due on 27 May: checked in this briefing's "last week's commitments"
            (second, "dan_di_xa", "dân đi làm xa", Commitment(date(2023, 5, 26), None), 6),
        ]
        for unit, cause, detail, commitment, days_before in said:
            await sql.add_explanation(
                conn,
                CAMPAIGN,
                unit,
                ExplanationIn("cccd_collected", cause, detail, commitment),
                value_then=0,
                link_id=link.id,
                at=BRIEFING - timedelta(days=days_before),
                remote="test",
            )
    finally:
        await conn.close()
    return first, second


async def test_the_demo_campaigns_pack_is_rendered_read_and_printed_on_a4(
    database: str, kafka: KafkaBroker, topics: Topics, smtp_receiver: SmtpReceiver, tmp_path: Path
) -> None:
    await seed_demo(database)
    first, second = await _explain(database)
    settings = notifier_settings(
        database, kafka, topics, smtp_receiver, evaluate_every_seconds=3600.0
    )
    app = create_app(settings, clock=ManualClock(NOW.astimezone(TZ)))
    url = f"/v1/campaigns/{CAMPAIGN}/briefing"
    params = {"at": BRIEFING.isoformat(), "level": "3"}
    timings: dict[str, float] = {}
    async with running(app) as api:
        api.headers.update(ADMIN)
        for fmt in ("html", "pdf", "xlsx"):
            started = time.perf_counter()
            r = await api.get(url, params={**params, "format": fmt}, timeout=600)
            timings[fmt] = time.perf_counter() - started
            assert r.status_code == 200, r.text
            (tmp_path / f"pack.{fmt}").write_bytes(r.content)
        english = await api.get(url, params={**params, "lang": "en", "level": "2"}, timeout=600)
    page = (tmp_path / "pack.html").read_text(encoding="utf-8")

    # Vietnamese by default; explanations escaped, the latest version, the silent marked
    assert '<html lang="vi">' in page
    assert "&lt;b&gt;Máy hỏng&lt;/b&gt; từ 20/5" in page
    assert "<b>Máy hỏng" not in page
    assert "mất điện hai ngày" not in page  # amended since
    assert page.count("CHƯA GIẢI TRÌNH") >= 5
    assert page.count('<tr class="') == 2 * 579  # the full ranking of both indicators
    assert "▲" in page
    assert "▼" in page
    assert "Cam kết kỳ trước" in page
    assert "Weekly briefing" in english.text
    assert "Too few machines" not in page

    book = load_workbook(io.BytesIO((tmp_path / "pack.xlsx").read_bytes()))
    assert book.sheetnames == ["Xếp hạng", "Giải trình", "Cam kết"]
    assert book.worksheets[0].max_row == 1 + 2 * 579
    laggards = list(book.worksheets[1].iter_rows(values_only=True))[1:]
    explained = {(r[2], r[6]) for r in laggards if r[0]}
    assert (first, "Thiếu máy") in explained
    commitments = list(book.worksheets[2].iter_rows(values_only=True))[1:]
    assert [r[1] for r in commitments] == [second]

    # The PDF: A4, its first page as a picture (what the README shows)
    pdf = tmp_path / "pack.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run(
        ["pdftoppm", "-png", "-r", "72", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "a4")],
        check=True,
    )
    small = next(tmp_path.glob("a4*.png"))
    width, height = _png_size(small.read_bytes())
    assert abs(width - 595) <= 1
    assert abs(height - 842) <= 1
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "110",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(tmp_path / "pack-page1"),
        ],
        check=True,
    )
    await _screenshot(tmp_path / "pack.html", tmp_path / "pack-html.png")
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    assert "(A4)" in pages.stdout
    print(  # noqa: T201
        f"\npack 579 wards: html {len(page.encode()):,} B in {timings['html']:.1f} s, "
        f"pdf {pdf.stat().st_size:,} B in {timings['pdf']:.1f} s "
        f"({_pages(pages.stdout)} pages), xlsx {(tmp_path / 'pack.xlsx').stat().st_size:,} B "
        f"in {timings['xlsx']:.1f} s"
    )
    if IMAGES:
        for name in ("pack-page1.png", "pack-html.png"):
            shutil.copy(tmp_path / name, Path(IMAGES) / f"briefing-{name}")


def _png_size(data: bytes) -> tuple[int, int]:
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _pages(info: str) -> int:
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


async def _screenshot(page_file: Path, out: Path) -> None:
    async with chromium() as browser:
        page = await browser.new_page(viewport={"width": 1100, "height": 1400})
        await page.goto(page_file.as_uri())
        assert await page.locator("img.chart").count() == 2
        assert await page.locator("img.chart").first.evaluate("i => i.naturalWidth") > 0
        await page.screenshot(path=str(out))
