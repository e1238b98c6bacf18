"""docker-compose.yml runs the same stack as `make dev`: the same settings under the same
variable names, the same ports and topics, the same processes, and Prometheus and Grafana
wired to what the compose file actually runs. Docker cannot run on the development machine,
so this is what keeps the compose file honest."""

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from devtools.devstack import PORTS
from devtools.localstack import PostgresServer
from services.aggregator.settings import AggregatorSettings
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from tiendo.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SETTINGS: dict[str, type[ServiceSettings]] = {
    "ingest": IngestSettings,
    "aggregator": AggregatorSettings,
    "notifier": NotifierSettings,
}
# Only where the containers must differ from loopback processes.
HOST_SPECIFIC = {"HOST", "DATABASE_URL", "KAFKA_BOOTSTRAP"}
_DEFAULTED = re.compile(r"^\$\{\w+:-(.*)\}$")
# what `tiendo migrate` (and, in make dev, the demo) logs in with: the database owner
MIGRATE_URL = "TIENDO_MIGRATE_DATABASE_URL"


def prefix(service: str) -> str:
    return f"TIENDO_{service.upper()}_"


def dev_env() -> dict[str, str]:
    values = {}
    for line in (ROOT / "deploy" / "dev.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose_env(service: str) -> dict[str, str]:
    """The service's environment as the container sees it (`${X:-default}` → default)."""
    out = {}
    for key, value in (SERVICES[service].get("environment") or {}).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        m = _DEFAULTED.match(text)
        out[key] = m.group(1) if m else text
    return out


def settings_from(service: str, env: dict[str, str]) -> ServiceSettings:
    """The service's settings built from `env` alone (defaults for the rest)."""
    p = prefix(service)
    # strings from the environment, parsed by the settings class as the service would
    kwargs: dict[str, Any] = {
        k.removeprefix(p).lower(): v for k, v in env.items() if k.startswith(p)
    }
    return SETTINGS[service](**kwargs)


def published(service: str) -> dict[int, int]:
    """container port → host port."""
    out = {}
    for mapping in SERVICES[service].get("ports", []):
        host, _, container = str(mapping).rpartition(":")
        out[int(container)] = int(host)
    return out


def host_port_of(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_variable_a_service_container_gets_is_one_of_its_settings(service: str) -> None:
    fields = set(SETTINGS[service].model_fields)
    for key in compose_env(service):
        assert key.startswith(prefix(service)), f"{service} does not read {key}"
        assert key.removeprefix(prefix(service)).lower() in fields, f"{service} has no {key}"
    settings_from(service, compose_env(service))  # valid values


def test_every_variable_in_dev_env_is_read_by_someone() -> None:
    demo_reads = {"TIENDO_LOG_LEVEL", "TIENDO_AGGREGATOR_DATABASE_URL", MIGRATE_URL}
    for key in dev_env():
        service = next((s for s in SETTINGS if key.startswith(prefix(s))), None)
        if service is None:
            assert key in demo_reads, f"nothing reads {key} (deploy/dev.env)"
            continue
        assert key.removeprefix(prefix(service)).lower() in SETTINGS[service].model_fields, key


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_compose_sets_what_dev_env_sets_with_the_same_values(service: str) -> None:
    dev = {k: v for k, v in dev_env().items() if k.startswith(prefix(service))}
    compose = compose_env(service)
    for key, value in dev.items():
        assert key in compose, f"{key} is in deploy/dev.env but not in docker-compose.yml"
        if key.removeprefix(prefix(service)) not in HOST_SPECIFIC:
            assert compose[key] == value, f"{key}: compose {compose[key]!r}, dev {value!r}"
    for key in compose.keys() - dev.keys():
        name = key.removeprefix(prefix(service))
        assert name in HOST_SPECIFIC or name.endswith("SECRET"), (
            f"{key} is set only in docker-compose.yml"
        )


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_services_listen_on_the_dev_ports_inside_and_outside(service: str) -> None:
    dev = settings_from(service, dev_env())
    container = settings_from(service, compose_env(service))
    assert dev.port == container.port == PORTS[service]
    assert published(service).get(container.port) == dev.port
    assert container.host == "0.0.0.0"  # reachable from the other containers


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_services_reach_kafka_and_postgres_by_their_compose_names(service: str) -> None:
    dev = settings_from(service, dev_env())
    container = settings_from(service, compose_env(service))
    for setting, target in (("kafka_bootstrap", "kafka"), ("database_url", "postgres")):
        host, port = host_port_of(getattr(container, setting))
        assert host == target, f"{service}.{setting} should use the compose name {target}"
        assert published(target).get(port) == host_port_of(getattr(dev, setting))[1]
    dsn, dev_dsn = urlsplit(container.database_url), urlsplit(dev.database_url)
    assert (dsn.username, dsn.path) == (dev_dsn.username, dev_dsn.path)
    env = SERVICES["postgres"]["environment"]
    # each service logs in as its own role (created by the migrations), never as the owner
    assert (f"tiendo_{service}", "/" + env["POSTGRES_DB"]) == (dsn.username, dsn.path)


def test_the_owner_migrates_once_before_any_service_starts() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["build"]["target"] == "service"
    assert [str(a) for a in migrate["command"]] == ["migrate"]
    assert migrate["restart"] == "no"  # one-shot: a finished migration is not run again
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    owner = urlsplit(compose_env("migrate")[MIGRATE_URL])
    dev_owner = urlsplit(dev_env()[MIGRATE_URL])
    env = SERVICES["postgres"]["environment"]
    assert (owner.username, owner.path) == (env["POSTGRES_USER"], "/" + env["POSTGRES_DB"])
    assert (owner.username, owner.path) == (dev_owner.username, dev_owner.path)
    assert (owner.hostname, owner.port) == ("postgres", 5432)
    assert dev_owner.port == PORTS["postgres"]
    for name in SETTINGS:
        condition = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def test_all_services_use_the_same_topics_as_make_dev() -> None:
    topics = ("topic_events", "topic_progress", "topic_dead_letters")
    for source in (compose_env, lambda s: dev_env()):
        resolved = {s: settings_from(s, source(s)) for s in SETTINGS}
        for topic in topics:
            names = {getattr(resolved[s], topic) for s in SETTINGS}
            assert names == {getattr(IngestSettings(), topic)}, topic


def test_compose_runs_every_process_of_the_procfile_with_the_same_arguments() -> None:
    procfile = {}
    for line in (ROOT / "deploy" / "Procfile.dev").read_text().splitlines():
        if line.strip():
            name, _, command_line = line.partition(":")
            procfile[name.strip()] = shlex.split(command_line)
    assert set(procfile) <= set(SERVICES), set(procfile) - set(SERVICES)
    for name, argv in procfile.items():
        images = {"services.cli": "service", "devtools": "demo"}
        # `KEY=$OTHER command`: the process reads OTHER's value (dev.env) under KEY
        assigned = {}
        while argv and "=" in argv[0]:
            key, _, value = argv.pop(0).partition("=")
            assigned[key] = value.removeprefix("$")
        if argv[:2] != ["python", "-m"] or argv[2] not in images:
            continue  # kafka and postgres: official images in compose
        service = SERVICES[name]
        for key, source in assigned.items():
            assert compose_env(name)[key] == compose_env("migrate")[source], (name, key)
        assert service["build"]["target"] == images[argv[2]], f"{name} runs the wrong image"
        cli = argv[3:]
        command = [str(a) for a in service["command"]]
        assert command[: len(cli)] == cli, f"{name}: compose runs {command}, make dev {cli}"


def test_start_order_and_healthchecks() -> None:
    for name, service in SERVICES.items():
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck"
    for name in (*SETTINGS, "kafka", "postgres", "prometheus", "grafana"):
        assert "healthcheck" in SERVICES[name], f"{name} has no healthcheck"
    for name in SETTINGS:
        deps = SERVICES[name]["depends_on"]
        assert deps["kafka"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
    # ingest validates events against tables that the aggregator's migrations create
    assert SERVICES["ingest"]["depends_on"]["aggregator"]["condition"] == "service_healthy"


def test_the_demo_and_its_webhook_match_make_dev() -> None:
    notifier = compose_env("notifier")
    assert notifier["TIENDO_NOTIFIER_WEBHOOK_URL"] == dev_env()["TIENDO_NOTIFIER_WEBHOOK_URL"]
    # the receiver listens on loopback, so it lives in the notifier's network namespace
    assert SERVICES["webhook"]["network_mode"] == "service:notifier"
    assert PORTS["webhook receiver"] in published("notifier").values()
    secret = compose_env("webhook")["TIENDO_NOTIFIER_WEBHOOK_SECRET"]
    assert secret == notifier["TIENDO_NOTIFIER_WEBHOOK_SECRET"]
    demo = [str(a) for a in SERVICES["demo"]["command"]]
    url = demo[demo.index("--ingest-url") + 1]
    assert host_port_of(url) == ("ingest", PORTS["ingest"])
    assert set(compose_env("demo")) <= set(dev_env())


def test_kafka_image_is_the_version_of_the_local_stack() -> None:
    pom = ET.parse(ROOT / "deploy" / "kafka" / "pom.xml")
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.find(".//m:properties/m:kafka.version", ns)
    assert version is not None
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{version.text}"
    assert published("kafka") == {9092: PORTS["kafka"]}
    assert published("postgres") == {5432: PORTS["postgres"]}


def _scrape_targets(config: dict[str, Any]) -> dict[str, str]:
    return {
        job["job_name"]: target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }


def test_prometheus_scrapes_the_three_services_in_both_stacks() -> None:
    folder = ROOT / "deploy" / "prometheus"
    local = yaml.safe_load((folder / "prometheus.yml").read_text())
    service = SERVICES["prometheus"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in service["volumes"]
    config_flag = next(a for a in service["command"] if a.startswith("--config.file="))
    in_compose = folder / Path(config_flag.split("=", 1)[1]).relative_to("/etc/prometheus")
    compose = yaml.safe_load(in_compose.read_text())
    assert local["global"] == compose["global"]
    assert local["rule_files"] == compose["rule_files"]
    for pattern in local["rule_files"]:
        assert list(folder.glob(pattern)), f"no rule file matches {pattern}"
    jobs = {f"tiendo-{s}": s for s in SETTINGS}
    assert _scrape_targets(local) == {
        job: f"127.0.0.1:{settings_from(s, dev_env()).port}" for job, s in jobs.items()
    }
    assert _scrape_targets(compose) == {
        job: f"{s}:{settings_from(s, compose_env(s)).port}" for job, s in jobs.items()
    }


def test_grafana_is_provisioned_with_the_boards_and_the_compose_datasources() -> None:
    folder = ROOT / "deploy" / "grafana"
    volumes = SERVICES["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    provider = yaml.safe_load((folder / "provisioning/dashboards/tiendo.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in volumes
    assert list((folder / "dashboards").glob("*.json"))
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (folder / "dashboards" / Path(home).relative_to(path)).exists()
    sources = yaml.safe_load((folder / "provisioning/datasources/tiendo.yml").read_text())
    by_uid = {d["uid"]: d for d in sources["datasources"]}
    assert host_port_of(by_uid["prometheus"]["url"]) == ("prometheus", 9090)
    assert published("prometheus") == {9090: 9090}
    postgres = by_uid["postgres"]
    assert host_port_of(postgres["url"]) == ("postgres", 5432)
    dsn = urlsplit(compose_env("migrate")[MIGRATE_URL])
    assert (postgres["user"], "/" + postgres["jsonData"]["database"]) == (dsn.username, dsn.path)


def test_the_image_runs_the_tiendo_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    service, demo = dockerfile.split("FROM service AS demo")
    assert 'ENTRYPOINT ["tiendo"]' in service
    for folder in ("tiendo", "services"):
        assert f"COPY {folder} ./{folder}" in service
    # dev tooling reaches the demo image only, never the product's
    assert "devtools" not in service.split("FROM", 2)[-1]
    assert "COPY devtools ./devtools" in demo
    exposed = {int(p) for p in re.findall(r"^EXPOSE (.+)$", service, re.M)[0].split()}
    assert exposed >= {PORTS[s] for s in SETTINGS}


def _server_settings(command: list[str]) -> dict[str, str]:
    """The `-c key=value` settings of a postgres command line."""
    return dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "-c")


def test_postgres_runs_the_settings_of_the_local_clusters(tmp_path: Path) -> None:
    """The figures of docs/capacity.md come from the local clusters (make dev, the tests,
    the benchmark): the compose server runs their settings, all but where it listens and
    logs."""
    local = _server_settings(PostgresServer(tmp_path).command())
    where = {
        "listen_addresses",
        "port",
        "unix_socket_directories",
        "log_min_messages",
        "log_timezone",
    }
    compose = _server_settings([str(arg) for arg in SERVICES["postgres"]["command"]])
    assert compose == {k: v for k, v in local.items() if k not in where}
