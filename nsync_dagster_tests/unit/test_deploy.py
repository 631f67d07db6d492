"""deploy/: the container image definition, the Helm values for Dagster's chart and the example
Secret, checked without Docker or a cluster (neither exists here).

The chart's own values.schema.json is ~100 kB and is not vendored; CHART_KEYS below is the part
of it nsync's values use, transcribed from the dagster chart's schema (helm/dagster/schema in
dagster-io/dagster): every object lists the chart's keys, so a key the chart lacks fails."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from nsync_dagster import settings
from nsync_dagster.settings import external
from nsync_dagster_tests.support.dockerfile import dockerfile, dockerfile_cmd, dockerfile_env

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IN_ONE_POD = {"in_process", "multi_or_in_process_executor", "multiprocess"}


def obj(**props: object) -> dict:
    return {"type": "object", "properties": props, "additionalProperties": False}


ANY_OBJ, ANY_LIST, STR, INT, BOOL = ({"type": "object"}, {"type": "array"}, {"type": "string"},
                                     {"type": "integer"}, {"type": "boolean"})
ENV = {"type": "object", "additionalProperties": STR}
NAMED = {"type": "array", "items": {"type": "object", "required": ["name"]}}
USER_DEPLOYMENT = obj(**{k: ANY_OBJ for k in (
    "annotations", "nodeSelector", "affinity", "podSecurityContext", "securityContext",
    "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels")},
    name=STR, image=obj(repository=STR, tag=STR, pullPolicy=STR),
    dagsterApiGrpcArgs={"type": "array", "items": STR}, codeServerArgs=ANY_LIST,
    includeConfigInLaunchedRuns=obj(enabled=BOOL), deploymentNamespace=STR, port=INT, env=ENV,
    envConfigMaps=NAMED, envSecrets=NAMED, tolerations=ANY_LIST, volumeMounts=ANY_LIST,
    volumes=ANY_LIST, schedulerName=STR, initContainers=ANY_LIST, sidecarContainers=ANY_LIST)
K8S_RUN_LAUNCHER = obj(
    image=ANY_OBJ, imagePullPolicy=STR, jobNamespace=STR, loadInclusterConfig=BOOL,
    kubeconfigFile=STR, envConfigMaps=NAMED, envSecrets=NAMED,
    envVars={"type": "array", "items": STR}, volumeMounts=ANY_LIST, volumes=ANY_LIST,
    labels=ENV, failPodOnRunFailure=BOOL, resources=ANY_OBJ, schedulerName=STR,
    securityContext=ANY_OBJ, runK8sConfig=obj(**{k: ANY_OBJ for k in (
        "containerConfig", "podSpecConfig", "podTemplateSpecMetadata", "jobSpecConfig",
        "jobMetadata")}))
TAG_LIMIT = obj(key=STR, value=STR, limit=INT)
CHART_KEYS = obj(
    **{"dagster-user-deployments": obj(enabled=BOOL, enableSubchart=BOOL,
                                       imagePullSecrets=NAMED,
                                       deployments={"type": "array", "items": USER_DEPLOYMENT})},
    runLauncher=obj(type={"enum": ["CeleryK8sRunLauncher", "K8sRunLauncher",
                                   "CustomRunLauncher"]},
                    config=obj(k8sRunLauncher=K8S_RUN_LAUNCHER)),
    postgresql=obj(enabled=BOOL, image=ANY_OBJ, postgresqlHost=STR, postgresqlUsername=STR,
                   postgresqlPassword=STR, postgresqlDatabase=STR, postgresqlParams=ENV,
                   postgresqlScheme=STR, service=obj(port=INT)),
    generatePostgresqlPasswordSecret=BOOL,
    dagsterWebserver=obj(enableReadOnly=BOOL, service=obj(type=STR, port=INT),
                         podSecurityContext=ANY_OBJ, securityContext=ANY_OBJ),
    ingress=obj(enabled=BOOL),
    dagsterDaemon=obj(enabled=BOOL, runMonitoring=ANY_OBJ, runRetries=ANY_OBJ,
                      podSecurityContext=ANY_OBJ, securityContext=ANY_OBJ,
                      env=ENV, envSecrets=NAMED, runCoordinator=obj(
                          enabled=BOOL, type={"enum": ["QueuedRunCoordinator"]},
                          config=obj(queuedRunCoordinator=obj(
                              maxConcurrentRuns=INT,
                              tagConcurrencyLimits={"type": "array", "items": TAG_LIMIT})))),
    telemetry=obj(enabled=BOOL))


def values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def deployment() -> dict:
    (only,) = values()["dagster-user-deployments"]["deployments"]
    return only


def launcher() -> dict:
    return values()["runLauncher"]["config"]["k8sRunLauncher"]


def secret_keys() -> dict[str, set[str]]:
    docs = yaml.safe_load_all((DEPLOY / "helm" / "nsync-secret.example.yaml").read_text())
    return {d["metadata"]["name"]: set(d["stringData"]) for d in docs}


def plain_env() -> dict[str, str]:
    """Every variable the values set in the clear: the deployment's env, the launcher's."""
    pairs = dict(item.split("=", 1) for item in launcher().get("envVars", []))
    return {**deployment()["env"], **pairs}


def known(name: str) -> bool:
    ours = {s.name for s in settings.specs()}
    theirs = {n for sec in (external.AWS, external.DAGSTER) for b in sec.blocks for n in b.names}
    return name in ours | theirs or name.startswith(settings.STAGING_PASSWORD_PREFIX)


def secret_names() -> set[str]:
    return {s.name for s in settings.specs() if s.secret} | set(external.SECRETS)


def test_values_use_only_keys_the_dagster_chart_has():
    jsonschema.validate(values(), CHART_KEYS)
    with pytest.raises(jsonschema.ValidationError):  # the reference does reject a stray key
        jsonschema.validate({**values(), "runLauncher": {"type": "K8sRunLauncher",
                                                         "config": {"k8sRunLauncher": {
                                                             "env": {}}}}}, CHART_KEYS)


def test_every_variable_set_is_a_known_setting():
    names = set(plain_env()) | secret_keys()["nsync-secrets"]
    assert names and not [n for n in sorted(names) if not known(n)]


def test_secrets_come_only_from_the_kubernetes_secret():
    assert not secret_names() & set(plain_env())
    assert deployment()["envSecrets"] == launcher()["envSecrets"] == [{"name": "nsync-secrets"}]
    assert secret_keys()["dagster-postgresql-secret"] == {"postgresql-password"}
    assert values()["generatePostgresqlPasswordSecret"] is False


def test_every_required_setting_is_provided():
    required = {s.name for s in settings.specs() if s.required}
    assert required and required <= set(plain_env()) | secret_keys()["nsync-secrets"]


def test_a_run_stays_in_one_pod_with_its_work_volume():
    assert values()["runLauncher"]["type"] == "K8sRunLauncher"
    assert deployment()["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert "resources" not in deployment()  # they would replace the run pods' resources
    assert not re.search(r"executor|celery", json.dumps(values()), re.I)  # comments aside
    from nsync_dagster.definitions import defs

    jobs = defs().resolve_all_job_defs()
    assert "daily_sync_job" in {j.name for j in jobs}
    assert {j.name: j.executor_def.name for j in jobs if j.executor_def.name not in IN_ONE_POD} \
        == {}
    # the volume is sized, mounted in the run pod, and NSYNC_WORK_DIR is inside it (nsync
    # creates that folder itself with mode 0700: it cannot chmod a volume's root)
    (volume,) = launcher()["volumes"]
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert re.fullmatch(r"\d+[GT]i", claim["resources"]["requests"]["storage"])
    (mount,) = launcher()["volumeMounts"]
    assert mount["name"] == volume["name"]
    work = plain_env()["NSYNC_WORK_DIR"]
    assert Path(work).parent == Path(mount["mountPath"])
    assert dockerfile_env()["NSYNC_WORK_DIR"] == work
    assert ("VOLUME", f'["{mount["mountPath"]}"]') in dockerfile()


def test_daemon_runs_schedules_sensors_and_the_instance_settings():
    daemon = values()["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runMonitoring"]["enabled"]
    assert daemon["runRetries"]["enabled"]
    instance = yaml.safe_load((REPO / "templates" / "dagster.yaml").read_text())
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["tagConcurrencyLimits"] == instance["concurrency"]["runs"][
        "tag_concurrency_limits"]
    pg = values()["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"] == plain_env()["DAGSTER_PG_HOST"]
    assert pg["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]


def test_image_installs_production_nsync_as_a_non_root_user():
    steps = dockerfile()
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert next(args for op, args in steps if op == "FROM") == "${BASE_IMAGE}"
    assert re.fullmatch(r"python:3\.1[123]-slim(-\w+)?", args["BASE_IMAGE"])
    assert args["PG_CLIENTS"] == "pgdg"  # "distribution": the base's own Debian repository
    assert args["PG_MAJOR"] in {"17", "18"}
    run = " ".join(a for op, a in steps if op == "RUN")
    assert "https://apt.postgresql.org/pub/repos/apt" in run and "signed-by=" in run
    assert '"postgresql-client-${PG_MAJOR}"' in run and "$PGDG_KEY_FINGERPRINT" in run
    assert re.fullmatch(r"[0-9A-F]{40}", args["PGDG_KEY_FINGERPRINT"])
    installs = [a for op, a in steps if op == "RUN" and "pip install" in a]
    assert installs and not any("demo" in a for a in installs)
    pins = re.findall(r'"dagster-postgres==([\d.]+)"', (REPO / "pyproject.toml").read_text())
    assert [args["DAGSTER_K8S_VERSION"]] == pins  # the K8sRunLauncher's package, same family
    user = [a for op, a in steps if op == "USER"][-1].split(":")[0]
    assert user not in {"root", "0"}
    assert ("EXPOSE", "4000") in steps


def test_image_serves_the_code_location_and_checks_itself_with_nsync_doctor():
    cmd = dockerfile_cmd()
    assert cmd[:3] == ["dagster", "api", "grpc"]
    module = cmd[cmd.index("-m") + 1]
    assert cmd[cmd.index("-p") + 1] == str(deployment()["port"]) == "4000"
    assert deployment()["dagsterApiGrpcArgs"] == ["-m", module]
    importlib.import_module(module)
    health = next(args for op, args in dockerfile() if op == "HEALTHCHECK")
    assert health.endswith('CMD ["nsync", "doctor"]')
    from nsync_dagster.cli import checks

    assert checks.run_doctor  # the documented health check exists as a command


def test_build_context_is_an_allow_list():
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*"  # everything is left out unless named
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for op, args in dockerfile():
        if op == "COPY":
            sources = args.split()[:-1]
            assert set(sources) <= allowed, sources
    assert "nsync.env" not in allowed


def test_the_ui_is_read_only_for_the_director_and_nothing_is_exposed_by_default():
    """Issue 20: a read-only webserver beside the full one, both ClusterIP, the chart's ingress
    off; deploy/helm/ui-access.yaml lets only the ingress controller reach them, each host behind
    oauth2-proxy with its own group."""
    web = values()["dagsterWebserver"]
    assert web["enableReadOnly"] is True and web["service"]["type"] == "ClusterIP"
    assert values()["ingress"]["enabled"] is False
    docs = [d for d in yaml.safe_load_all((DEPLOY / "helm" / "ui-access.yaml").read_text()) if d]
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    selected = policy["spec"]["podSelector"]["matchExpressions"][0]["values"]
    assert set(selected) == {"dagster-webserver", "dagster-webserver-read-only"}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # the chart's names for the guide's release "dagster" and the webservers' port (the pods
    # listen on dagsterWebserver.service.port too), as rendered by deploy/check_chart.py
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": "dagster"}
    port = web["service"]["port"]
    assert port >= 1024  # a non-root process without capabilities may not bind below 1024
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [port]
    groups = {}
    for ing in (d for d in docs if d["kind"] == "Ingress"):
        auth = ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"]
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["port"]["number"] == port
        groups[backend["name"]] = set(auth.split("allowed_groups=")[1].split(","))
    assert groups == {"dagster-dagster-webserver": {"nsync-operators"},
                      "dagster-dagster-webserver-read-only": {"nsync-viewers", "nsync-operators"}}
    # the access list names who holds each group (security.md)
    listed = yaml.safe_load((REPO / "access-list.yaml").read_text())["dagster_ui"]
    assert {(g["group"], g["ui"]) for g in listed} == {("nsync-operators", "full"),
                                                         ("nsync-viewers", "read-only")}
    assert all(g["members"] and g["owner"] for g in listed)


def test_every_pod_of_the_release_runs_as_non_root():
    pods = [deployment()["podSecurityContext"], values()["dagsterWebserver"]["podSecurityContext"],
            values()["dagsterDaemon"]["podSecurityContext"],
            launcher()["runK8sConfig"]["podSpecConfig"]["securityContext"]]
    for pod in pods:
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] not in (0, None)
    containers = [deployment()["securityContext"], values()["dagsterWebserver"]["securityContext"],
                  values()["dagsterDaemon"]["securityContext"], launcher()["securityContext"]]
    for container in containers:
        assert container == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


KUBERNETES_VERSION = "1.30.0"


def test_the_manifests_shipped_validate_against_kubernetes_schemas():
    """ui-access.yaml and the example Secrets against Kubernetes' own schemas (strict: an
    unknown field fails). kubernetes-validate ships the schemas: no cluster, no network; .ci/run
    installs it (pinned)."""
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate "
                             "(.ci/run installs it)")
    kinds = []
    for name in ("ui-access.yaml", "nsync-secret.example.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / "helm" / name).read_text()):
            if doc:
                kv.validate(doc, KUBERNETES_VERSION, strict=True)  # raises on any error
                kinds.append(doc["kind"])
    assert sorted(kinds) == ["Ingress", "Ingress", "NetworkPolicy", "Secret", "Secret"]
