"""Development is explicit (issue 16): a service started anywhere but in the dev mode `make
dev` sets refuses a default secret, and every mode refuses an empty or short one — at start,
before it connects to anything, with one error line and no traceback."""

import os
import subprocess
import sys

import pytest

from devtools.localstack import free_port


def _serve(env: dict[str, str]) -> tuple[int, list[str]]:
    """`tiendo notifier serve` with `env` alone, pointed at ports nothing listens on."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIENDO_")}
    clean |= {
        "TIENDO_NOTIFIER_DATABASE_URL": f"postgresql://tiendo@127.0.0.1:{free_port()}/tiendo",
        "TIENDO_NOTIFIER_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "TIENDO_NOTIFIER_PORT": str(free_port()),
        "TIENDO_NOTIFIER_DEPENDENCY_TIMEOUT_SECONDS": "1",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "notifier", "serve"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, "TIENDO_NOTIFIER_WEBHOOK_SECRET is a development default"),
        # production has no shared webhook secret (each endpoint signs with its own,
        # docs/alerts.md): what it must still set is the key of the chiefs' links
        (
            {"TIENDO_NOTIFIER_ENVIRONMENT": "production"},
            "TIENDO_NOTIFIER_LINK_SECRET is empty",
        ),
        (
            {"TIENDO_NOTIFIER_ENVIRONMENT": "development", "TIENDO_NOTIFIER_WEBHOOK_SECRET": ""},
            "TIENDO_NOTIFIER_WEBHOOK_SECRET is empty",
        ),
        (
            {"TIENDO_NOTIFIER_ENVIRONMENT": "development", "TIENDO_NOTIFIER_WEBHOOK_SECRET": "abc"},
            "TIENDO_NOTIFIER_WEBHOOK_SECRET is too short",
        ),
        # and a shared one in production is refused whatever its length
        (
            {
                "TIENDO_NOTIFIER_ENVIRONMENT": "production",
                "TIENDO_NOTIFIER_WEBHOOK_SECRET": "a-long-enough-shared-secret",
            },
            "webhook_secret is a development fallback",
        ),
    ],
)
def test_a_weak_or_default_secret_stops_the_start_with_one_clear_error(
    env: dict[str, str], problem: str
) -> None:
    code, lines = _serve(env)
    assert code == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    [error] = [line for line in lines if "error" in line.lower()]
    assert "unsafe_settings" in error
    assert problem in error
    # refused before anything connects: no line waits for PostgreSQL or Kafka
    assert not any("waiting_for_" in line for line in lines), lines


def test_the_explicit_dev_mode_starts_with_the_default_secret() -> None:
    code, lines = _serve({"TIENDO_NOTIFIER_ENVIRONMENT": "development"})
    # past the check: it goes on to wait for PostgreSQL, which never comes
    assert code == 1, lines
    assert not any("unsafe_settings" in line for line in lines), lines
    assert any("waiting_for_postgres" in line for line in lines), lines
