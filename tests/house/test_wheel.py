"""The product wheel carries the services and the shared library, never the dev tooling:
no devtools/, bench/ or tests/ in the built wheel, and no product module imports them."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = ("devtools", "bench", "tests", "scripts")


def test_the_wheel_holds_no_dev_tooling(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("tiendo-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"tiendo", "services"}, tops
    # the pieces production needs at run time are there
    assert "services/aggregator/migrations/001_units_campaigns.sql" in names
    assert any(n.startswith("services/notifier/templates/vi/") for n in names)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_product_module_imports_dev_tooling() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & set(DEV_ONLY))
        for package in ("tiendo", "services")
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
