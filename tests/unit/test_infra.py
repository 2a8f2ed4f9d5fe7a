"""The deployment in infra/, checked without a container runtime: every manifest parses, the Kafka
cluster is a real three-voter KRaft quorum with replication 3 / min ISR 2 in compose and in
Kubernetes, every command a container runs is one the platform has (with the options it takes),
probes and resource requests are everywhere, and no secret is written inline."""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from services.cli import app

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
FLEXFLEET_IMAGES = ("flexfleet:", "flexfleet-statements:")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/@:\s]+:[^/@\s]+@")


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    """The objects kustomization.yaml deploys."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load_all(K8S / name)]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: expected once, found {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")]


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: str(v) for k, v in env.items()}


def compose_argv(service: dict[str, Any]) -> list[str]:
    """What the container runs, `$$` (compose's escaped dollar) as the shell sees it."""
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return [a.replace("$$", "$") for a in argv]


# -- every file --------------------------------------------------------------------------------
def test_every_yaml_file_parses_and_every_k8s_object_names_its_kind():
    files = sorted(INFRA.rglob("*.yaml"))
    assert {INFRA / "compose.yaml", INFRA / "compose.dev.yaml", K8S / "kustomization.yaml"} <= set(files)
    for path in files:
        docs = load_all(path)
        assert docs, f"{path}: empty"
        if path.is_relative_to(K8S) and path.name != "kustomization.yaml":
            for doc in docs:
                assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), f"{path}: {doc}"


def test_kustomization_lists_existing_files_and_every_object_of_the_folder():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert all((K8S / name).is_file() for name in listed)
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}, "a manifest is left out"
    assert kustomization["namespace"] == "flexfleet"


# -- Kafka: three KRaft voters, replication 3, min ISR 2 ----------------------------------------
def voters(spec: str) -> dict[int, str]:
    """KAFKA_CONTROLLER_QUORUM_VOTERS as {node id: host}."""
    out = {}
    for voter in spec.split(","):
        node, _, address = voter.strip().partition("@")
        out[int(node)] = address.rsplit(":", 1)[0]
    return out


def test_compose_kafka_is_three_kraft_voters_each_knowing_the_same_quorum(compose):
    brokers = {name: s for name, s in compose["services"].items() if s.get("image", "").startswith("apache/kafka")
               and "KAFKA_PROCESS_ROLES" in compose_env(s)}
    assert len(brokers) == 3
    envs = {name: compose_env(s) for name, s in brokers.items()}
    quorum = {env["KAFKA_CONTROLLER_QUORUM_VOTERS"] for env in envs.values()}
    assert len(quorum) == 1, "every broker must list the same voters"
    expected = voters(quorum.pop())
    assert len(expected) == 3
    assert {int(env["KAFKA_NODE_ID"]): name for name, env in envs.items()} == expected
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    for env in envs.values():
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        check_replication(env)


def check_replication(env: dict[str, str]) -> None:
    assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3
    assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3
    assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == 3
    assert int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == 2
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics are created with their partitions, not by accident"


def test_k8s_kafka_is_three_kraft_voters_one_per_pod_with_a_disruption_budget(k8s):
    kafka = named(k8s, "StatefulSet", "kafka")
    assert kafka["spec"]["replicas"] == 3
    (container,) = pod_spec(kafka)["containers"]
    env = k8s_env(container)
    service = kafka["spec"]["serviceName"]
    headless = named(k8s, "Service", service)
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    # the node id is the pod's ordinal + 1 (the start script), so voter n is pod n-1
    assert "${HOSTNAME##*-} + 1" in container["args"][0]
    expected = {i + 1: f"kafka-{i}.{service}.flexfleet.svc.cluster.local" for i in range(3)}
    assert voters(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]) == expected
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    check_replication(env)
    pdb = named(k8s, "PodDisruptionBudget", "kafka")
    assert pdb["spec"]["maxUnavailable"] == 1, "2 of 3 keep the quorum and min ISR"
    assert pdb["spec"]["selector"]["matchLabels"] == kafka["spec"]["selector"]["matchLabels"]


def topic_specs(env: dict[str, str]) -> dict[str, int]:
    return {name: int(n) for name, n in (spec.split(":") for spec in env["TOPICS"].split())}


def test_topics_are_created_replicated_with_min_isr_and_enough_partitions(compose, k8s):
    (job,) = pod_spec(named(k8s, "Job", "topics"))["containers"]
    for env, script in ((compose_env(compose["services"]["topics"]), compose_argv(compose["services"]["topics"])[0]),
                        (k8s_env(job), job["args"][0])):
        assert int(env["REPLICATION_FACTOR"]) == 3 and int(env["MIN_INSYNC_REPLICAS"]) == 2
        topics = topic_specs(env)
        assert {"telemetry.v1", "telemetry.dlq.v1", "forecasts.v1", "deliveries.v1"} <= set(topics)
        assert topics["telemetry.v1"] >= 24
        for flag in ("--replication-factor \"$REPLICATION_FACTOR\"", "min.insync.replicas=\"$MIN_INSYNC_REPLICAS\"",
                     "--partitions", "--if-not-exists"):
            assert flag in script
    assert topic_specs(compose_env(compose["services"]["topics"])) == topic_specs(k8s_env(job))


def test_telemetry_partitions_bound_every_ingest_autoscaler(compose, k8s):
    (job,) = pod_spec(named(k8s, "Job", "topics"))["containers"]
    partitions = topic_specs(k8s_env(job))["telemetry.v1"]
    hpa = named(k8s, "HorizontalPodAutoscaler", "ingest")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ingest"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    (keda,) = load_all(K8S / "optional" / "keda-ingest.yaml")
    assert keda["spec"]["maxReplicaCount"] <= partitions
    assert compose["services"]["ingest"]["deploy"]["replicas"] <= partitions


# -- commands ----------------------------------------------------------------------------------
CLICK_APP = typer.main.get_command(app)
RUNNER = CliRunner()


def check_flexfleet(argv: list[str], where: str) -> None:
    """argv (after `flexfleet`) names a real sub-command, and every --option is one it takes."""
    path = []
    for token in argv:
        if token.startswith("-"):
            break
        path.append(token)
    command = CLICK_APP                 # typer's own click: groups are the commands with .commands
    for name in path:
        assert name in getattr(command, "commands", {}), f"{where}: no `flexfleet {' '.join(path)}`"
        command = command.commands[name]
    assert not hasattr(command, "commands"), f"{where}: `flexfleet {' '.join(path)}` is a group, not a command"
    result = RUNNER.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"{where}: {result.output}"
    known = {opt for param in command.params for opt in param.opts}
    for token in argv:
        if token.startswith("--"):
            assert token.split("=", 1)[0] in known, f"{where}: `flexfleet {' '.join(path)}` has no {token}"


def check_python(argv: list[str], where: str) -> None:
    if argv[1] == "-m":
        module = argv[2]
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"
        if module == "uvicorn":
            target = next(a for a in argv[3:] if ":" in a and not a.startswith("-"))
            module_name, attr = target.split(":")
            factory = getattr(importlib.import_module(module_name), attr)
            assert callable(factory) and "--factory" in argv, f"{where}: {target} is served as a factory"
        if module == "services.runtime.health":
            from services.runtime.health import main
            with pytest.raises(SystemExit) as exit_:
                main([*argv[3:], "--help"])
            assert exit_.value.code == 0, f"{where}: {argv}"
    else:
        script = argv[1]
        assert (ROOT / script).is_file(), f"{where}: no {script} in the repository"
        assert f"COPY {script} ./{script}" in (INFRA / "Dockerfile").read_text(), f"{where}: {script} not in the image"


def check_argv(argv: list[str], where: str) -> None:
    if argv[:2] == ["sh", "-c"]:
        # the shell lines: every `flexfleet ...` in them, up to the next && or ;
        segments = re.findall(r"(?:^|exec |&& |; )(flexfleet\s[^;&]*)", argv[2])
        assert segments, f"{where}: no flexfleet command in {argv[2]!r}"
        for segment in segments:
            check_flexfleet(shlex.split(segment)[1:], where)
    elif argv[0] == "flexfleet":
        check_flexfleet(argv[1:], where)
    elif argv[0] == "python":
        check_python(argv, where)
    else:
        raise AssertionError(f"{where}: runs neither flexfleet nor python: {argv}")


def test_every_compose_command_of_the_flexfleet_image_is_a_real_command(compose):
    checked = 0
    for name, service in compose["services"].items():
        if service.get("image", "").startswith(FLEXFLEET_IMAGES):
            check_argv(compose_argv(service), f"compose {name}")
            test = service.get("healthcheck", {}).get("test")
            if test and test[1] == "python":
                check_python(test[1:], f"compose {name} healthcheck")
            checked += 1
    assert checked >= 9


def test_every_k8s_container_command_of_the_flexfleet_image_is_a_real_command(k8s):
    checked = 0
    for obj in workloads(k8s):
        for container in pod_spec(obj)["containers"]:
            if container["image"].startswith(FLEXFLEET_IMAGES):
                where = f"k8s {obj['kind']}/{obj['metadata']['name']}"
                check_argv(container["command"] + container.get("args", []), where)
                for probe in ("livenessProbe", "readinessProbe"):
                    if "exec" in container.get(probe, {}):
                        check_python(container[probe]["exec"]["command"], f"{where} {probe}")
                checked += 1
    assert checked >= 9


def test_the_same_services_run_the_same_commands_in_compose_and_k8s(compose, k8s):
    by_name = {obj["metadata"]["name"]: pod_spec(obj)["containers"][0] for obj in workloads(k8s)}
    for name in ("migrate", "ingest", "forecaster", "vtn", "api", "bid-plan", "dispatch-send", "dispatch-verify",
                 "settle"):
        k8s_argv = by_name[name]["command"] + by_name[name].get("args", [])
        assert compose_argv(compose["services"][name]) == k8s_argv, name


# -- health and resources ----------------------------------------------------------------------
def test_every_long_running_compose_service_has_a_health_check_and_one_shots_gate_the_rest(compose):
    services = compose["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert {"migrate", "topics"} <= one_shots
    for name, service in services.items():
        if name in one_shots:
            continue
        assert service.get("healthcheck", {}).get("test"), f"compose {name}: no health check"
    for name in ("ingest", "forecaster", "vtn", "api"):
        after = services[name]["depends_on"]
        assert after["migrate"]["condition"] == after["topics"]["condition"] == "service_completed_successfully"
    # ingest scales with --scale: no fixed container name or host port
    assert "container_name" not in services["ingest"] and "ports" not in services["ingest"]
    assert "--health-port" in services["ingest"]["command"]


def test_every_k8s_deployment_has_probes_and_every_workload_resource_requests(k8s):
    deployments = of_kind(k8s, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} >= {"ingest", "forecaster", "vtn", "api"}
    for obj in deployments + of_kind(k8s, "StatefulSet"):
        for container in pod_spec(obj)["containers"]:
            where = f"{obj['kind']}/{obj['metadata']['name']}"
            assert container.get("livenessProbe") and container.get("readinessProbe"), f"{where}: probes"
    for obj in workloads(k8s):
        for container in pod_spec(obj)["containers"]:
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), f"{obj['metadata']['name']}: resource requests"
            assert container["resources"].get("limits", {}).get("memory"), f"{obj['metadata']['name']}: memory limit"


def test_http_apps_have_services_and_probe_their_health_paths(k8s):
    for name, path in (("api", "/healthz"), ("vtn", "/healthz"), ("ingest", "/healthz"), ("forecaster", "/healthz")):
        (container,) = pod_spec(named(k8s, "Deployment", name))["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == path
        assert container["readinessProbe"]["httpGet"]["path"] == path
    for name in ("api", "vtn"):
        service = named(k8s, "Service", name)
        assert service["spec"]["selector"] == named(k8s, "Deployment", name)["spec"]["selector"]["matchLabels"]


def test_timescaledb_is_pinned_and_keeps_its_data_on_a_volume(compose, k8s):
    db = named(k8s, "StatefulSet", "timescaledb")
    (container,) = pod_spec(db)["containers"]
    assert container["image"] == compose["services"]["timescaledb"]["image"]
    assert re.fullmatch(r"timescale/timescaledb(-ha)?:\d+\.\d+\.\d+-pg\d+", container["image"])
    claims = {t["metadata"]["name"] for t in db["spec"]["volumeClaimTemplates"]}
    assert {m["name"] for m in container["volumeMounts"]} & claims
    for image in [s["image"] for s in compose["services"].values()] + \
                 [c["image"] for o in workloads(k8s) for c in pod_spec(o)["containers"]]:
        assert ":" in image and not image.endswith(":latest") or image.startswith(FLEXFLEET_IMAGES), image


# -- secrets -----------------------------------------------------------------------------------
def test_no_secret_is_written_in_compose(compose):
    for name, service in compose["services"].items():
        for key, value in compose_env(service).items():
            assert not SECRET_NAME.search(key), f"compose {name}: {key} belongs in flexfleet.env"
            assert not URL_WITH_PASSWORD.search(value), f"compose {name}: {key} carries a password"
        if service.get("image", "").startswith(FLEXFLEET_IMAGES) or name == "timescaledb":
            assert service["env_file"] == [{"path": "flexfleet.env", "required": True}], name
    assert "flexfleet.env" in (INFRA / ".gitignore").read_text().split()


def test_no_secret_is_written_in_k8s(k8s):
    assert not of_kind(k8s, "Secret"), "Secrets come from secrets.env through the secretGenerator"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (generator,) = kustomization["secretGenerator"]
    assert generator["name"] == "flexfleet-secrets" and "literals" not in generator
    assert generator["envs"] == ["secrets.env"] and "k8s/secrets.env" in (INFRA / ".gitignore").read_text()
    example_keys = {line.split("=", 1)[0] for line in (K8S / "secrets.env.example").read_text().splitlines()
                    if line and not line.startswith("#")}
    for literal in kustomization["configMapGenerator"][0]["literals"]:
        key, value = literal.split("=", 1)
        assert not SECRET_NAME.search(key) and not URL_WITH_PASSWORD.search(value), literal
    for obj in workloads(k8s):
        for container in pod_spec(obj)["containers"]:
            for env in container.get("env", []):
                where = f"{obj['metadata']['name']} {env['name']}"
                if SECRET_NAME.search(env["name"]):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    assert ref and "value" not in env, f"{where}: from the Secret, not inline"
                    assert ref["name"] == "flexfleet-secrets" and ref["key"] in example_keys, where
                assert not URL_WITH_PASSWORD.search(str(env.get("value", ""))), where


def test_the_env_file_examples_hold_placeholders_only():
    for path in (INFRA / "flexfleet.env.example", K8S / "secrets.env.example"):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                key, value = line.split("=", 1)
                assert not SECRET_NAME.search(key) or value.startswith("change-me"), f"{path.name}: {key}"


def test_the_development_quick_start_listens_on_localhost_only():
    """compose.dev.yaml keeps its throwaway password: harmless only if nothing outside can reach it."""
    dev = yaml.safe_load((INFRA / "compose.dev.yaml").read_text())
    assert [s["image"].split(":")[0] for s in dev["services"].values()] == ["apache/kafka", "timescale/timescaledb"]
    for service in dev["services"].values():
        assert all(port.startswith("127.0.0.1:") for port in service.get("ports", []))


# -- the image ---------------------------------------------------------------------------------
def dockerfile_stages() -> dict[str, str]:
    stages, name = {}, None
    for line in (INFRA / "Dockerfile").read_text().splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line)
        if match:
            name = match.group(2)
            stages[name] = line + "\n"
        elif name is not None:
            stages[name] += line + "\n"
    return stages


def test_one_image_python_slim_non_root_with_chromium_only_for_statements(compose, k8s):
    stages = dockerfile_stages()
    assert stages["base"].startswith("FROM python:3.12-slim AS base")
    assert "pip install ." in stages["base"] and "USER 10001" in stages["base"]
    assert [name for name, text in stages.items() if "chromium" in text.lower()] \
        == ["statements"]
    assert list(stages)[-1] == "runtime", "the default build has no browser"
    settle = compose["services"]["settle"]
    assert settle["build"]["target"] == "statements"
    for name, service in compose["services"].items():
        if name != "settle" and "build" in service:
            assert service["build"]["target"] == "runtime", name
    statement_images = [o["metadata"]["name"] for o in workloads(k8s) for c in pod_spec(o)["containers"]
                        if c["image"].startswith("flexfleet-statements:")]
    assert statement_images == ["settle"]
    for obj in workloads(k8s):
        if pod_spec(obj)["containers"][0]["image"].startswith(FLEXFLEET_IMAGES):
            assert pod_spec(obj)["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
