"""Render Dagster's Helm chart with deploy/helm/values.yaml and check what comes out.

By hand, not part of `make test` (the chart is not in this repository):

    python deploy/check_chart.py /path/to/dagster-chart [--helm /path/to/helm] [-k 1.30.0]

It runs `helm lint` (the chart's values.schema.json applies) and `helm template` as the guide's
release "dagster" in namespace "nsync", validates every rendered object and
deploy/helm/ui-access.yaml with kubernetes-validate (strict: an unknown field fails), and checks:
a read-only webserver (`--read-only`), no LoadBalancer/NodePort Service and no Ingress from the
chart, every pod (and the run pods of the K8sRunLauncher in the instance ConfigMap) non-root,
and that ui-access.yaml's backends, ports and pod labels are those the chart renders.
Without a chart path it says so and exits 0. deploy/README.md ("How this was checked")."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
VALUES, UI_ACCESS = HERE / "helm" / "values.yaml", HERE / "helm" / "ui-access.yaml"
RELEASE, NAMESPACE = "dagster", "nsync"


def say(line: str) -> None:
    sys.stdout.write(f"{line}\n")


def helm(binary: str, *args: str) -> str:
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def non_root(pod_security: dict | None, containers: list[dict]) -> bool:
    """True when the pod, or else every container, runs as a user other than root."""
    def ok(sc: dict | None) -> bool:
        return bool(sc) and sc.get("runAsUser") != 0 and (
            sc.get("runAsNonRoot") is True or sc.get("runAsUser") is not None)
    return ok(pod_security) or all(ok(c.get("securityContext")) for c in containers)


def check(docs: list[dict], ui: list[dict]) -> list[str]:
    """The findings that are wrong (empty: all good); prints what each check found."""
    wrong: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    deployments = by_kind.get("Deployment", [])
    commands = {d["metadata"]["name"]: " ".join(
        sum((c.get("command", []) + c.get("args", [])
             for c in d["spec"]["template"]["spec"]["containers"]), [])) for d in deployments}
    read_only = [n for n, cmd in commands.items()
                 if "dagster-webserver" in cmd and "--read-only" in cmd]
    say(f"read-only webserver: {read_only or 'NONE'}")
    wrong += [] if read_only else ["no Deployment runs dagster-webserver --read-only"]
    exposed = [s["metadata"]["name"] for s in by_kind.get("Service", [])
               if s["spec"].get("type", "ClusterIP") != "ClusterIP"]
    ingresses = [i["metadata"]["name"] for i in by_kind.get("Ingress", [])]
    say(f"Services not ClusterIP: {exposed or 'none'}; chart Ingresses: {ingresses or 'none'}")
    wrong += [f"exposed Service {n}" for n in exposed] + [f"chart Ingress {n}" for n in ingresses]
    for kind in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
        for d in by_kind.get(kind, []):
            spec = d["spec"]["template"]["spec"]
            good = non_root(spec.get("securityContext"),
                            spec.get("initContainers", []) + spec["containers"])
            say(f"{kind} {d['metadata']['name']}: {'non-root' if good else 'ROOT'}")
            wrong += [] if good else [f"{kind} {d['metadata']['name']} may run as root"]
    (instance,) = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"].endswith("-instance")]
    launcher = yaml.safe_load(instance["data"]["dagster.yaml"])["run_launcher"]
    run_pod = launcher["config"].get("run_k8s_config", {}).get("pod_spec_config", {})
    good = launcher["class"] == "K8sRunLauncher" and non_root(run_pod.get("securityContext"), [])
    say(f"run pods ({launcher['class']}): {'non-root' if good else 'ROOT'}")
    wrong += [] if good else ["the run pods' pod_spec_config has no non-root securityContext"]
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in deployments}
    for ing in (d for d in ui if d["kind"] == "Ingress"):
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        svc = services.get(backend["name"])
        ports = [p["port"] for p in svc["spec"]["ports"]] if svc else []
        say(f"Ingress {ing['metadata']['name']} -> {backend['name']}:{backend['port']['number']}"
              f" (rendered ports {ports or 'NO SUCH SERVICE'})")
        if backend["port"]["number"] not in ports:
            wrong.append(f"{ing['metadata']['name']}: no rendered Service {backend['name']} with "
                         f"port {backend['port']['number']}")
    for policy in (d for d in ui if d["kind"] == "NetworkPolicy"):
        sel = policy["spec"]["podSelector"]
        chosen = [n for n, labels in pods.items()
                  if all(labels.get(k) == v for k, v in sel.get("matchLabels", {}).items())
                  and all(labels.get(e["key"]) in e["values"]
                          for e in sel.get("matchExpressions", []))]
        webservers = [n for n, cmd in commands.items() if "dagster-webserver" in cmd]
        allowed = {p["port"] for r in policy["spec"]["ingress"] for p in r.get("ports", [])}
        listen = {int(commands[n].split(" -p ")[1].split()[0]) for n in webservers}
        say(f"NetworkPolicy {policy['metadata']['name']} selects {chosen}, ports {allowed};"
              f" webservers listen on {listen}")
        if sorted(chosen) != sorted(webservers) or listen - allowed:
            wrong.append(f"{policy['metadata']['name']} does not select exactly the webservers"
                         " on their ports")
    return wrong


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", nargs="?", help="the unpacked dagster chart (a directory)")
    parser.add_argument("--helm", default="helm", help="Helm 3 binary (default: helm on PATH)")
    parser.add_argument("-k", "--kubernetes-version", default="1.30.0")
    args = parser.parse_args()
    if not args.chart:
        say("no chart path given: nothing checked (deploy/README.md says how to get the chart)")
        return 0
    import kubernetes_validate  # the test dependency (constraints.txt)

    say(helm(args.helm, "version", "--short").strip())
    say(helm(args.helm, "lint", args.chart, "-f", str(VALUES)).strip())
    rendered = helm(args.helm, "template", RELEASE, args.chart, "-n", NAMESPACE, "-f", str(VALUES))
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    ui = [d for d in yaml.safe_load_all(UI_ACCESS.read_text()) if d]
    for doc in docs + ui:
        kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
    kinds = sorted({d["kind"] for d in docs})
    say(f"{len(docs)} rendered objects ({', '.join(kinds)}) and {len(ui)} of ui-access.yaml "
          f"valid against Kubernetes {args.kubernetes_version} (strict)")
    wrong = check(docs, ui)
    for finding in wrong:
        say(f"WRONG: {finding}")
    say("all checks passed" if not wrong else f"{len(wrong)} check(s) failed")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
