"""compose.yaml checked without a Docker engine.

- It validates against the Compose specification's JSON schema, vendored as deploy/compose-schema.json
  (compose-spec/compose-spec, schema/compose-spec.json at commit 00655e2222608fa6eaecdf12ac5195889ca2244a).
- Every `ragload …` command in it exists and its flags parse (with `${VAR:-default}` replaced by the default);
  the Locust commands parse with Locust's own option parser; the healthchecks name real checks.
- Every variable it sets on a ragload or Locust service is read by a settings class of that service, and its
  default value passes that class's validation (checked in a child process with exactly that environment).
- The compose healthcheck helper (loadtests/stack/healthcheck.py) answers right against real services.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
import yaml
from rq import Queue, Worker

from loadtests.cli import COMMANDS
from loadtests.stack import healthcheck
from loadtests.stack.services import free_port
from system.metrics import BrokerCollector
from tests.promtool import promtool, requires_promtool

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
EXPECTED_SERVICES = {
    "valkey", "qdrant", "mock", "ingest", "api", "api-lb", "worker", "baseline",
    "locust-master", "locust-worker", "rq-dashboard", "prometheus", "grafana", "saq-worker",
}  # fmt: skip
ONE_SHOT = {"ingest"}
PYTHON_IMAGE = "ragload:local"
# The settings classes each kind of process reads ("module:Class"). The mock has none: it reads its flags.
RAG = ["system.rag.settings:RagSettings", "system.rag.breaker:BreakerSettings"]
SETTINGS_OF = {
    "api": ["system.settings:SystemSettings", *RAG],
    "worker": ["system.settings:SystemSettings", *RAG],
    "baseline": ["sync_baseline.settings:BaselineSettings", *RAG],
    "ingest": ["system.rag.settings:RagSettings"],
    "mock": [],
    "locust": ["loadtests.locust.user_support:ScenarioSettings"],
}
PLACEHOLDER_SECRET = "compose-check-secret"  # stands for a required `${VAR:?…}` such as VALKEY_PASSWORD
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's interpolation with an empty environment: defaults, a placeholder for required values."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        op = match.group("op") or ""
        if op.endswith("?"):
            return PLACEHOLDER_SECRET
        return match.group("arg") if op.endswith("-") else ""

    return INTERPOLATION.sub(replace, value)


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    assert isinstance(command, list), "commands are lists (exec form), so no shell re-splits them"
    return [interpolate(str(part)) for part in command]


def kind_of(name: str) -> str | None:
    """'api', 'worker', … for a ragload service, 'locust' for a Locust one, None for third-party images."""
    command = command_of(SERVICES[name])
    if command[:1] == ["ragload"]:
        return command[1]
    if command[:1] == ["locust"]:
        return "locust"
    return None


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    return {key: interpolate(str(value)) for key, value in (service.get("environment") or {}).items()}


# ---- the file as a whole --------------------------------------------------------------------------------


def test_compose_yaml_validates_against_the_compose_specification_schema() -> None:
    schema = json.loads((ROOT / "deploy" / "compose-schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(COMPOSE)
    assert "version" not in COMPOSE  # obsolete in the Compose specification


def test_schema_check_catches_a_mistake() -> None:
    schema = json.loads((ROOT / "deploy" / "compose-schema.json").read_text(encoding="utf-8"))
    broken = {"services": {"api": {**SERVICES["api"], "depends_on": {"valkey": {"condition": "healthy"}}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_it_has_exactly_the_services_of_the_design() -> None:
    assert set(SERVICES) == EXPECTED_SERVICES
    behind_profiles = {name for name, service in SERVICES.items() if service.get("profiles")}
    assert behind_profiles == {"prometheus", "grafana", "saq-worker"}
    assert int(interpolate(str(SERVICES["worker"]["deploy"]["replicas"]))) >= 1
    assert int(interpolate(str(SERVICES["api"]["deploy"]["replicas"]))) >= 2  # replicas behind api-lb
    assert int(interpolate(str(SERVICES["locust-worker"]["deploy"]["replicas"]))) >= 1


def test_every_long_running_service_has_a_healthcheck_and_dependencies_wait_for_it() -> None:
    for name, service in SERVICES.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, rule in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, f"{name} -> {dependency}"
    assert SERVICES["ingest"]["restart"] == "no"


def test_third_party_images_are_pinned_and_python_services_share_one_image_built_here() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        if kind_of(name) is not None:
            assert image == PYTHON_IMAGE and service["build"] == {"context": ".", "target": "runtime"}, name
        elif "build" in service:  # rq-dashboard: another target of the same Dockerfile
            assert service["build"]["context"] == "." and "dockerfile" not in service["build"], name
        else:
            tag = image.rpartition(":")[2]
            assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image}"
    targets = re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert {"runtime", "rq-dashboard"} <= set(targets)


def test_valkey_persists_and_requires_the_password_that_redis_url_carries() -> None:
    command = SERVICES["valkey"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--requirepass") + 1].startswith("${VALKEY_PASSWORD:?")
    for name in ("api", "worker"):
        url = SERVICES[name]["environment"]["REDIS_URL"]
        assert url.startswith("redis://:${VALKEY_PASSWORD:?") and url.endswith("@valkey:6379/0"), name
        assert SERVICES[name]["environment"]["QDRANT_URL"] == "http://qdrant:6333"


def test_the_files_it_mounts_exist_and_inline_configs_parse() -> None:
    for name, config in COMPOSE["configs"].items():
        if "file" in config:
            assert (ROOT / config["file"]).is_file(), name
        else:
            yaml.safe_load(config["content"])
    lb = (ROOT / "deploy" / "nginx" / "api-lb.conf").read_text()
    assert "server api:8000 resolve;" in lb and "listen 8000;" in lb
    assert SERVICES["api-lb"]["ports"] == ["${API_PORT:-8000}:8000"]


# ---- Prometheus: every replica of every service that serves /metrics is a target ------------------------

PROMETHEUS_CONFIG = ROOT / COMPOSE["configs"]["prometheus"]["file"]
METRICS_KINDS = {"api", "worker", "baseline"}  # the ragload processes that serve /metrics
DASHBOARD = ROOT / COMPOSE["configs"]["grafana-dashboard"]["file"]
Target = tuple[str, int, str]  # compose service, port, how it is found: "dns-a", "dns-srv" or "static"


def scrape_targets(config: dict[str, Any]) -> dict[str, list[Target]]:
    """Job name → its targets, from a Prometheus config's dns_sd_configs and static_configs."""
    jobs: dict[str, list[Target]] = {}
    for job in config["scrape_configs"]:
        assert set(job) & {"dns_sd_configs", "static_configs"}, f"{job['job_name']}: no compose discovery"
        targets = jobs.setdefault(job["job_name"], [])
        for sd in job.get("dns_sd_configs", []):
            how = f"dns-{sd.get('type', 'SRV').lower()}"
            targets += [(name, int(sd["port"]), how) for name in sd["names"]]
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets.append((host, int(port), "static"))
    return jobs


def metrics_port(name: str) -> int | None:
    """The port a compose service serves /metrics on: the `--port` of `ragload api|baseline`, the
    WORKER_METRICS_PORT of a worker (None: the worker serves no metrics)."""
    if kind_of(name) == "worker":
        port = environment_of(SERVICES[name]).get("WORKER_METRICS_PORT")
        return int(port) if port else None
    command = command_of(SERVICES[name])
    return int(command[command.index("--port") + 1])


def discovery_problems(config: dict[str, Any]) -> list[str]:
    """What a Prometheus config misses of compose's metrics services and their replicas."""
    found = {service: how for targets in scrape_targets(config).values() for service, _, how in targets}
    problems = []
    for name in SERVICES:
        if kind_of(name) not in METRICS_KINDS or metrics_port(name) is None:
            continue
        if name not in found:
            problems.append(f"{name} serves /metrics but no scrape job finds it")
        elif "replicas" in SERVICES[name].get("deploy", {}) and found[name] != "dns-a":
            # A static `name:port` reaches one replica per scrape, a different one each time.
            problems.append(f"{name} is scaled: discover its replicas by DNS (type A), not {found[name]}")
    return problems


PROMETHEUS = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))


def test_compose_mounts_the_prometheus_config_of_deploy() -> None:
    assert PROMETHEUS_CONFIG == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    mounted = {"source": "prometheus", "target": "/etc/prometheus/prometheus.yml"}
    assert mounted in SERVICES["prometheus"]["configs"]


def test_every_scrape_target_is_a_compose_service_on_the_port_it_serves_metrics_on() -> None:
    for job, targets in scrape_targets(PROMETHEUS).items():
        assert targets, job
        for service, port, _ in targets:
            assert service in SERVICES, f"{job}: no compose service {service!r}"
            assert kind_of(service) in METRICS_KINDS, f"{job}: {service} serves no /metrics"
            assert port == metrics_port(service), f"{job}: {service}:{port}, not {metrics_port(service)}"
            published = {str(p).rpartition(":")[2] for p in SERVICES[service].get("ports", [])}
            assert str(port) in {*map(str, SERVICES[service].get("expose", [])), *published}, service


def test_every_replica_of_every_metrics_service_is_scraped() -> None:
    assert discovery_problems(PROMETHEUS) == []
    worker_env = environment_of(SERVICES["worker"])
    assert worker_env["PROMETHEUS_MULTIPROC_DIR"] in SERVICES["worker"]["tmpfs"]  # required by the port


def test_the_replica_check_catches_a_static_target_of_a_scaled_service() -> None:
    static_api = {
        "scrape_configs": [
            {"job_name": "api", "static_configs": [{"targets": ["api:8000", "baseline:8001"]}]},
            {
                "job_name": "workers",
                "dns_sd_configs": [{"names": ["worker", "saq-worker"], "type": "A", "port": 9100}],
            },
        ]
    }
    assert discovery_problems(static_api) == [
        "api is scaled: discover its replicas by DNS (type A), not static"
    ]


@requires_promtool
def test_prometheus_accepts_the_config() -> None:
    done = promtool("check", "config", PROMETHEUS_CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_reads_broker_gauges_once_however_many_api_replicas(redis_url: str) -> None:
    """Every API replica reports the same broker-wide gauges: a panel must aggregate them (max/min), or it
    draws one line per replica (and a sum would count the queue once per replica)."""
    connection = redis.Redis.from_url(redis_url)
    try:
        gauges = {
            family.name for family in BrokerCollector(connection, "ragload", lambda: "closed").collect()
        }
    finally:
        connection.close()
    assert {"ragload_queue_depth", "ragload_workers"} <= gauges
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = 0
    for expr in exprs:
        for match in re.finditer(r"\b(ragload_\w+)", expr):
            if match.group(1) in gauges:
                used += 1
                assert re.search(r"\b(max|min)\($", expr[: match.start()]), expr
    assert used >= len(gauges) - 1


# ---- commands ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(name for name in SERVICES if kind_of(name) not in (None, "locust")))
def test_every_ragload_command_exists_and_its_flags_parse(name: str) -> None:
    command = command_of(SERVICES[name])
    assert command[1] in COMMANDS, f"`ragload {command[1]}` is no ragload command"
    module = importlib.import_module(COMMANDS[command[1]][0])
    parser = argparse.ArgumentParser(prog=f"ragload {command[1]}", exit_on_error=False)
    module.add_arguments(parser)
    parser.parse_args(command[2:])  # raises (or exits 2) on an unknown flag or a bad value


def test_locust_commands_parse_with_locusts_own_parser() -> None:
    commands = [command_of(SERVICES[name]) for name in SERVICES if kind_of(name) == "locust"]
    assert len(commands) == 2
    for command in commands:
        assert (ROOT / command[command.index("-f") + 1]).is_file()
    script = (
        "import json, sys\n"
        "from locust.argument_parser import parse_options\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    parse_options(args[1:])\n"
    )
    done = subprocess.run(  # its own process: `import locust` patches the interpreter with gevent
        [sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_healthchecks_name_real_checks() -> None:
    for name, service in SERVICES.items():
        test = service["healthcheck"]["test"] if "healthcheck" in service else []
        if "loadtests.stack.healthcheck" in test:
            assert test[test.index("loadtests.stack.healthcheck") + 1] in healthcheck.CHECKS, name


# ---- environment ------------------------------------------------------------------------------------------

READ_SETTINGS = """
import importlib, importlib.util, json, sys
from pydantic import AliasChoices, ValidationError
names, missing, errors = set(), [], {}
for spec in sys.argv[1:]:
    module_name, class_name = spec.split(":")
    if importlib.util.find_spec(module_name) is None:
        missing.append(module_name)
        continue
    cls = getattr(importlib.import_module(module_name), class_name)
    prefix = cls.model_config.get("env_prefix", "")
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias or prefix + field_name]
        names.update(str(choice).upper() for choice in choices if isinstance(choice, str))
    try:
        cls()
    except ValidationError as exc:
        errors[spec] = str(exc)
print(json.dumps({"names": sorted(names), "missing": missing, "errors": errors}))
"""


def read_settings(specs: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Env names the classes read, and their validation errors, in a process whose environment is `env`."""
    clean = {key: os.environ[key] for key in ("PATH", "HOME", "PYTHONPATH") if key in os.environ}
    done = subprocess.run(
        [sys.executable, "-c", READ_SETTINGS, *specs],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("name", sorted(name for name in SERVICES if kind_of(name) is not None))
def test_every_variable_set_on_a_service_is_read_and_valid(name: str, tmp_path: Path) -> None:
    env = environment_of(SERVICES[name])
    if "PROMETHEUS_MULTIPROC_DIR" in env:  # importing the metrics creates it: not the container path in /tmp
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    kind = kind_of(name)
    assert kind is not None
    specs = SETTINGS_OF[kind]
    if not specs:
        assert env == {}, f"{name} reads no settings class, yet compose sets {sorted(env)}"
        return
    found = read_settings(specs, env)
    if found["missing"]:
        pytest.skip(f"settings module(s) not written yet: {found['missing']}")
    unread = sorted(set(env) - set(found["names"]))
    assert not unread, f"{name}: no settings class of {specs} reads {unread}"
    assert not found["errors"], found["errors"]


def test_variable_check_catches_a_misspelt_name() -> None:
    found = read_settings(SETTINGS_OF["api"], {"REDIS_URL": "redis://x:6379/0", "QUEUE_NAM": "ragload"})
    assert "QUEUE_NAME" in found["names"] and "QUEUE_NAM" not in found["names"]


# ---- the healthcheck helper against real services -------------------------------------------------------


def test_http_check_follows_the_service(mock_server: Any) -> None:
    assert healthcheck.check_http(f"{mock_server.base_url}/models") is None
    assert healthcheck.check_http(f"http://127.0.0.1:{free_port()}/readyz") is not None
    assert healthcheck.main(["http", f"{mock_server.base_url}/models"]) == 0


def test_tcp_check_follows_the_listener() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert healthcheck.check_tcp(f"127.0.0.1:{listener.getsockname()[1]}") is None
    assert healthcheck.check_tcp(f"127.0.0.1:{free_port()}") is not None


def test_rq_worker_check_needs_a_worker_of_this_host(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("QUEUE_NAME", "ragload")
    assert healthcheck.check_rq_worker() is not None  # nobody registered yet
    connection = redis.Redis.from_url(redis_url)
    worker = Worker([Queue("ragload", connection=connection)], connection=connection)
    worker.register_birth()
    try:
        assert worker.hostname == socket.gethostname()
        assert healthcheck.check_rq_worker() is None
    finally:
        worker.register_death()
        connection.close()
    assert healthcheck.main(["rq-worker"]) == 1
