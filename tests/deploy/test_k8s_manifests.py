"""The Kubernetes manifests render, validate offline and keep the issue's rules.

Rendered with the pinned kustomize, validated with kubernetes-validate --strict against the
Kubernetes version below; then the rules a schema cannot say (security context, probes,
limits, replica bounds, secrets never committed) are checked on the rendered objects.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from contracts import topics
from pulse_k8s import K8S, OVERLAYS, REPO, objects, pod_spec

KUBERNETES_VERSION = "1.33.0"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
PULSE_SERVICES = (
    "ingest",
    "query",
    "dashboard",
    "cdc-processor",
    "s3-archiver",
    "crawler",
    "market-feeds",
    "notifier",
)
SECRETS = (
    "pulse-db",
    "pulse-api",
    "pulse-s3",
    "pulse-cdc",
    "pulse-market-feeds",
    "pulse-notifier",
    "pulse-kafka-scram",
    "pulse-kafka-tls",
    "pulse-dashboard",
)


def kubernetes_validate(
    tools_bin: Path, manifest: Path, *, timeout_s: float = 300
) -> subprocess.CompletedProcess[str]:
    """`kubernetes-validate --strict` of `manifest` against KUBERNETES_VERSION's schemas."""
    return subprocess.run(
        [
            str(tools_bin / "kubernetes-validate"),
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES_VERSION,
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schemas(
    overlay: str, rendered_text: dict[str, str], tools_bin: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered_text[overlay])
    result = kubernetes_validate(tools_bin, manifest)
    assert result.returncode == 0, result.stdout + result.stderr


def test_validator_rejects_an_unknown_field(tools_bin: Path, tmp_path: Path) -> None:
    """Guards the check above: a misspelt field must fail, not pass silently."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  prots: []\n")
    result = kubernetes_validate(tools_bin, bad, timeout_s=120)
    assert result.returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_base_services_render_in_every_overlay(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[overlay]
    deployments = objects(docs, "Deployment")
    for name in (*PULSE_SERVICES, "nginx"):
        assert name in deployments, f"{overlay}: no Deployment {name}"
        assert name in objects(docs, "ServiceAccount"), f"{overlay}: no ServiceAccount {name}"
        assert name in objects(docs, "Service"), f"{overlay}: no Service {name}"
        assert name in objects(docs, "PodDisruptionBudget"), f"{overlay}: no PDB {name}"
    assert all(d["metadata"].get("namespace") == "pulse" for d in docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_restricted(overlay: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    problems = []
    for obj in rendered[overlay]:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(obj)
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            if non_root is not True:
                problems.append(f"{where}/{c['name']}: runAsNonRoot is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}/{c['name']}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}/{c['name']}: capabilities do not drop ALL")
            if "limits" not in c.get("resources", {}) or "requests" not in c["resources"]:
                problems.append(f"{where}/{c['name']}: no resource requests and limits")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_probes_and_a_read_only_root(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    problems = []
    for name, dep in objects(rendered[overlay], "Deployment").items():
        spec = pod_spec(dep)
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in spec["containers"]:
            where = f"Deployment/{name}/{c['name']}"
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{where}: no {probe}")
            if name == "connect":
                continue  # the Debezium image writes its config at start (see connect.yaml)
            if c.get("securityContext", {}).get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if mounts.get("/tmp") not in tmp_volumes:
                problems.append(f"{where}: /tmp is not an emptyDir")
    assert not problems, "\n".join(problems)


def partitions_setting(docs: list[dict[str, Any]]) -> str | None:
    """PULSE_TOPIC_PARTITIONS in the overlay's pulse-common ConfigMap (its name is hashed)."""
    (common,) = (
        obj for name, obj in objects(docs, "ConfigMap").items() if name.startswith("pulse-common")
    )
    value = common.get("data", {}).get(topics.PARTITIONS_SETTING)
    return None if value is None else str(value)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_consumers_never_outnumber_partitions(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[overlay]
    counts = topics.parse_partition_counts(partitions_setting(docs) or "")
    topics.check_partition_counts(counts)
    # Every topic cdc_processor and the archiver consume has at least this many partitions.
    consumed = min(
        counts.get(s.name, counts.get("*", topics.DEFAULT_PARTITIONS)) for s in topics.ALL
    )
    hpas = objects(docs, "HorizontalPodAutoscaler")
    assert set(hpas) >= {"ingest", "cdc-processor"}
    assert hpas["cdc-processor"]["spec"]["maxReplicas"] <= consumed
    assert (
        hpas["cdc-processor"]["spec"]["minReplicas"] <= hpas["cdc-processor"]["spec"]["maxReplicas"]
    )
    assert objects(docs, "Deployment")["s3-archiver"]["spec"]["replicas"] <= consumed


def test_overlays_set_their_own_partition_counts(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    settings = {name: partitions_setting(docs) for name, docs in rendered.items()}
    assert settings == {"k3s": "*=3", "eks": "*=6"}
    assert (
        objects(rendered["eks"], "HorizontalPodAutoscaler")["cdc-processor"]["spec"]["maxReplicas"]
        == 6
    )


@pytest.mark.parametrize("setting", ["", "*=6", "*=6,pulse.dlq.v1=2", "alerts.v1=5, *=4"])
def test_topics_job_applies_the_override_as_the_services_do(setting: str) -> None:
    """The Job's bash `partitions_for` and contracts.topics give every topic the same count."""
    job = yaml.safe_load((K8S / "components" / "topics" / "topics-job.yaml").read_text())
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    functions = script[: script.index("create() {")]
    env = {"PATH": "/usr/bin:/bin", topics.PARTITIONS_SETTING: setting}
    in_job = subprocess.run(
        [
            "bash",
            "-ec",
            functions
            + "".join(f"partitions_for {s.name} {topics.DEFAULT_PARTITIONS}\n" for s in topics.ALL),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    ).stdout.split()
    in_services = subprocess.run(
        [
            sys.executable,
            "-c",
            "from contracts import topics; print(*(s.partitions for s in topics.ALL))",
        ],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO / "libs/contracts/src")},
        timeout=30,
        check=True,
    ).stdout.split()
    assert in_job == in_services
    if setting:
        assert in_job != [str(topics.DEFAULT_PARTITIONS)] * len(topics.ALL)


def test_k3s_runs_one_replica_of_everything(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["k3s"]
    for name, obj in {**objects(docs, "Deployment"), **objects(docs, "StatefulSet")}.items():
        assert obj["spec"].get("replicas", 1) == 1, name
    for name, hpa in objects(docs, "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["minReplicas"] == 1, name


def test_eks_runs_more_replicas_than_k3s(rendered: dict[str, list[dict[str, Any]]]) -> None:
    k3s, eks = (
        objects(rendered["k3s"], "HorizontalPodAutoscaler"),
        objects(rendered["eks"], "HorizontalPodAutoscaler"),
    )
    assert eks["ingest"]["spec"]["minReplicas"] > k3s["ingest"]["spec"]["minReplicas"]
    assert objects(rendered["eks"], "Deployment")["nginx"]["spec"]["replicas"] > 1


def test_k3s_uses_local_images_and_eks_one_registry(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for overlay, docs in rendered.items():
        registries = set()
        for name in PULSE_SERVICES:
            for c in pod_spec(objects(docs, "Deployment")[name])["containers"]:
                if overlay == "k3s":
                    assert c["image"] == f"pulse/{name}:dev", c["image"]
                    assert c["imagePullPolicy"] in ("IfNotPresent", "Never")
                else:
                    registry, _, rest = c["image"].partition("/")
                    registries.add(registry)
                    assert rest.startswith(f"pulse/{name}:"), c["image"]
        if overlay == "eks":
            assert len(registries) == 1, registries


def test_eks_uses_aws_services_and_irsa(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["eks"]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for in_cluster in ("kafka", "postgres", "minio"):
        assert ("StatefulSet", in_cluster) not in kinds, (
            f"EKS must use the AWS service, not {in_cluster}"
        )
    common = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("pulse-common")
    )
    assert "S3_ENDPOINT_URL" not in common["data"], "EKS talks to S3 itself"
    accounts = objects(docs, "ServiceAccount")
    s3_readers = {name: objects(docs, "Deployment")[name] for name in ("s3-archiver", "query")}
    s3_readers.update({name: objects(docs, "CronJob")[name] for name in QUALITY_CRONJOBS})
    for name, workload in s3_readers.items():
        spec = pod_spec(workload)
        account = accounts[spec["serviceAccountName"]]
        role = account["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn")
        assert role and role.startswith("arn:aws:iam::"), f"{name}: no IRSA role"
        assert spec.get("automountServiceAccountToken") is True, f"{name}: IRSA needs the token"
        for c in spec["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == "pulse-s3":
                    assert ref.get("optional") is True, f"{name}: static S3 keys required on EKS"


def test_archiver_outlives_its_flush_grace(rendered: dict[str, list[dict[str, Any]]]) -> None:
    from pulse_settings_discovery import service_settings

    grace = 25.0  # servicekit.settings.ServiceSettings.shutdown_grace_s
    for spec in service_settings().get("s3_archiver", []):
        for field in spec.fields:
            if field.name in ("shutdown_grace_s", "flush_grace_s") and field.default is not None:
                grace = max(grace, float(field.default))
    for overlay, docs in rendered.items():
        dep = objects(docs, "Deployment")["s3-archiver"]
        env = effective_env(docs, dep)
        for key, value in env.items():
            if key.endswith("SHUTDOWN_GRACE_S"):
                grace = max(grace, float(value))
        period = pod_spec(dep)["terminationGracePeriodSeconds"]
        assert period > grace, f"{overlay}: {period}s does not exceed the {grace}s flush grace"


def pod_spec_labels(obj: dict[str, Any]) -> dict[str, str]:
    """The pod template's labels of a Deployment or CronJob."""
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return dict(spec["template"]["metadata"]["labels"])


def effective_env(docs: list[dict[str, Any]], dep: dict[str, Any]) -> dict[str, str]:
    """Plain values a workload's first container gets from env and ConfigMap envFrom."""
    maps = objects(docs, "ConfigMap")
    out: dict[str, str] = {}
    container = pod_spec(dep)["containers"][0]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            out.update(maps[source["configMapRef"]["name"]].get("data", {}))
    for env in container.get("env", []):
        if "value" in env:
            out[env["name"]] = env["value"]
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_committed(
    overlay: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"], "a Secret object is committed"
    docs_text = (REPO / "docs" / "deploy.md").read_text()
    for obj in docs:
        if obj["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(obj)
        for c in spec.get("initContainers", []) + spec["containers"]:
            refs = [
                e["valueFrom"]["secretKeyRef"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            ]
            refs += [s["secretRef"] for s in c.get("envFrom", []) if "secretRef" in s]
            for ref in refs:
                assert ref["name"] in SECRETS, f"{obj['metadata']['name']}: unknown secret {ref}"
                key = ref.get("key")
                if key:  # docs/deploy.md must show how to create each key
                    pattern = rf"create secret generic {ref['name']}\b[^\n]*(\\\n[^\n]*)*{key}="
                    assert re.search(pattern, docs_text), (
                        f"docs/deploy.md does not create {ref['name']}/{key}"
                    )


def test_nginx_upstreams_are_cluster_services(rendered: dict[str, list[dict[str, Any]]]) -> None:
    conf = K8S / "base" / "nginx" / "conf"
    for overlay, docs in rendered.items():
        services = objects(docs, "Service")
        for upstream in sorted(conf.glob("upstream-*.conf")):
            for host, port in re.findall(
                r"^\s*server\s+([\w.-]+):(\d+)", upstream.read_text(), re.M
            ):
                name = host.split(".")[0]
                assert name in services, f"{overlay}: nginx upstream {host} has no Service"
                ports = [p["port"] for p in services[name]["spec"]["ports"]]
                assert int(port) in ports, f"{overlay}: Service {name} has no port {port}"


def _check(script: str) -> subprocess.CompletedProcess[str]:
    """`deploy/k8s/<script> --check`: nonzero when the generated files are out of date."""
    return subprocess.run(
        [sys.executable, str(K8S / script), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_copied_configuration_matches_its_source() -> None:
    result = _check("sync_files.py")
    assert result.returncode == 0, result.stderr


def test_topics_job_matches_the_contracts() -> None:
    result = _check("generate_topics.py")
    assert result.returncode == 0, result.stderr
    job = (K8S / "components" / "topics" / "topics-job.yaml").read_text()
    for spec in topics.ALL:  # the contract's defaults; the Job applies the override at run time
        assert f"create {spec.name} {topics.DEFAULT_PARTITIONS}" in job


def test_topics_job_creates_a_compacted_topic_with_the_services_configs() -> None:
    """A compacted contract topic would get the same configs from the Job as from
    servicekit's `ensure_topics` (both read `contracts.topics.topic_configs`)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import generate_topics as g; "
        "print(g.topic_command(g.topics.TopicSpec('c', 3, g.topics.Producer.ANY, 'k', "
        "compacted=True)))"
    )
    command = subprocess.run(
        [sys.executable, "-c", code, str(K8S)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    compacted = topics.TopicSpec("c", 3, topics.Producer.ANY, "k", compacted=True)
    expected = topics.topic_configs(compacted)
    assert command[:3] == ["create", "c", "3"]
    assert command[3::2] == ["--config"] * len(expected)
    assert dict(c.split("=", 1) for c in command[4::2]) == expected
    assert "segment.ms" in expected


def test_kustomizations_use_current_fields() -> None:
    deprecated = (
        "commonLabels",
        "patchesStrategicMerge",
        "patchesJson6902",
        "bases",
        "vars",
        "imageTags",
    )
    for path in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        used = [key for key in deprecated if key in doc]
        assert not used, f"{path.relative_to(REPO)} uses deprecated {used}"


def test_k3s_isolates_pods_with_network_policies(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    policies = objects(rendered["k3s"], "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    labelled = {
        p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for p in policies.values()
    }
    for obj in rendered["k3s"]:
        if obj["kind"] in WORKLOAD_KINDS:
            spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
            name = spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
            assert name in labelled, f"{name} has no network policy of its own"


def test_crawler_cronjob_component_replaces_the_deployment(tools_bin: Path, tmp_path: Path) -> None:
    """The opt-in component, added to the k3s overlay, yields a valid `--once` CronJob."""
    from pulse_k8s import build_with_component

    docs = build_with_component(tools_bin, tmp_path, "crawler-cronjob")
    assert "crawler" not in objects(docs, "Deployment")
    cron = objects(docs, "CronJob")["crawler"]
    container = pod_spec(cron)["containers"][0]
    assert container["image"] == "pulse/crawler:dev"
    assert container["command"] == ["python", "-m", "crawler", "--once"]
    maps = objects(docs, "ConfigMap")
    for source in container["envFrom"]:
        assert source["configMapRef"]["name"] in maps
    manifest = tmp_path / "cron.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    result = kubernetes_validate(tools_bin, manifest)
    assert result.returncode == 0, result.stdout + result.stderr


KAFKA_CLIENTS = ("cdc-processor", "s3-archiver", "crawler", "market-feeds", "notifier", "dashboard")
# The quality CronJobs read the archive and publish results and alerts: Kafka clients and S3
# readers like the Deployments above.
QUALITY_CRONJOBS = ("quality-check", "quality-report")


def kafka_client_workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every Pulse workload that speaks Kafka: the Deployments and the quality CronJobs."""
    deployments = objects(docs, "Deployment")
    cronjobs = objects(docs, "CronJob")
    return {
        **{name: deployments[name] for name in KAFKA_CLIENTS},
        **{name: cronjobs[name] for name in QUALITY_CRONJOBS},
    }


def test_k3s_kafka_clients_use_scram_over_tls(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Every Pulse Kafka client and Connect reach the broker's SASL_SSL listener with the
    SCRAM password from its Secret and the CA mounted where KAFKA_SSL_CAFILE points."""
    docs = rendered["k3s"]
    deployments = objects(docs, "Deployment")
    tls_clients = objects(docs, "NetworkPolicy")["kafka-tls-clients"]["spec"]["podSelector"]
    allowed = tls_clients["matchExpressions"][0]["values"]
    for name, dep in kafka_client_workloads(docs).items():
        env = effective_env(docs, dep)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9094", name
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == (
            "SASL_SSL",
            "SCRAM-SHA-512",
        ), name
        container = pod_spec(dep)["containers"][0]
        password = [e for e in container["env"] if e["name"] == "KAFKA_SASL_PASSWORD"]
        assert password[0]["valueFrom"]["secretKeyRef"]["name"] == "pulse-kafka-scram", name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(Path(env["KAFKA_SSL_CAFILE"]).parent) in mounts, f"{name}: CA not mounted"
        label = pod_spec_labels(dep)["app.kubernetes.io/name"]
        assert label in allowed, f"{name}: the network policy keeps it from port 9094"
    connect = {e["name"]: e for e in pod_spec(deployments["connect"])["containers"][0]["env"]}
    for prefix in ("CONNECT_", "CONNECT_PRODUCER_", "CONNECT_CONSUMER_", "CONNECT_ADMIN_"):
        assert connect[f"{prefix}SECURITY_PROTOCOL"]["value"] == "SASL_SSL", prefix
        assert "$(KAFKA_SASL_PASSWORD)" in connect[f"{prefix}SASL_JAAS_CONFIG"]["value"]
    broker = pod_spec(objects(docs, "StatefulSet")["kafka"])["containers"][0]
    broker_env = {e["name"]: e.get("value") for e in broker["env"]}
    assert "SASL_SSL://:9094" in broker_env["KAFKA_LISTENERS"]
    assert broker_env["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert "kafka-scram-user" in objects(docs, "Job")


def test_eks_kafka_clients_use_msk_iam_through_irsa(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["eks"]
    accounts = objects(docs, "ServiceAccount")
    for name, dep in kafka_client_workloads(docs).items():
        env = effective_env(docs, dep)
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_MECHANISM"]) == (
            "SASL_SSL",
            "OAUTHBEARER",
        ), name
        assert all(s.endswith(":9098") for s in env["KAFKA_BOOTSTRAP_SERVERS"].split(","))
        assert env["AWS_REGION"], f"{name}: the MSK IAM token is signed for AWS_REGION"
        account = accounts[pod_spec(dep)["serviceAccountName"]]
        role = account["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn")
        assert role and role.startswith("arn:aws:iam::"), f"{name}: no IRSA role"
        assert pod_spec(dep).get("automountServiceAccountToken") is True, name
        assert "KAFKA_SASL_PASSWORD" not in env, f"{name}: IAM, not a password"
