"""The README documents every setting the services read."""

from pathlib import Path

import pytest

from services.aggregator.settings import AggregatorSettings
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from tiendo.settings import ServiceSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize(
    ("settings", "prefix"),
    [
        (IngestSettings, "TIENDO_INGEST_"),
        (AggregatorSettings, "TIENDO_AGGREGATOR_"),
        (NotifierSettings, "TIENDO_NOTIFIER_"),
    ],
)
def test_every_setting_is_in_the_readme_configuration_table(
    settings: type[ServiceSettings], prefix: str
) -> None:
    common = set(ServiceSettings.model_fields)
    for name in settings.model_fields:
        variable = ("TIENDO_<SERVICE>_" if name in common else prefix) + name.upper()
        assert f"`{variable}`" in README, f"{variable} is not documented in README.md"
