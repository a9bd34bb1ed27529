"""What our Kubernetes manifests promise, checked on a rendered overlay (scripts/check-kubernetes).

Schema validity is kubernetes-validate's job; this checks what a schema cannot: probes on the
right paths, grace periods longer than the shutdown timeouts they wait for, unique worker names,
non-root read-only containers, and that every part an operator relies on is there.
"""

import re
import sys

import yaml

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration.strip())
    if not match:
        raise SystemExit(f"cannot read duration {duration!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    problems = []

    def need(condition: bool, what: str) -> None:
        if not condition:
            problems.append(what)

    config = by_kind.get("ConfigMap", {}).get("reseller-config", {}).get("data", {})
    for kind, name in [
        ("Deployment", "reseller-api"),
        ("Deployment", "reseller-worker"),
        ("Job", "reseller-migrate"),
        ("Service", "reseller-api"),
        ("PodDisruptionBudget", "reseller-api"),
        ("HorizontalPodAutoscaler", "reseller-api"),
        ("NetworkPolicy", "reseller-default-deny"),
        ("NetworkPolicy", "reseller-api-ingress"),
        ("NetworkPolicy", "reseller-egress"),
    ]:
        need(name in by_kind.get(kind, {}), f"{kind} {name} is missing")
    if problems:
        raise SystemExit(f"{path}:\n  " + "\n  ".join(problems))

    for name, deployment in by_kind["Deployment"].items():
        if not name.startswith("reseller-") or name == "reseller-sim":
            continue
        pod = deployment["spec"]["template"]["spec"]
        need(pod.get("securityContext", {}).get("runAsNonRoot") is True, f"{name}: runAsNonRoot")
        for container in pod.get("initContainers", []) + pod["containers"]:
            sc = container.get("securityContext", {})
            need(sc.get("readOnlyRootFilesystem") is True, f"{name}/{container['name']}: read-only root")
            need(sc.get("allowPrivilegeEscalation") is False, f"{name}/{container['name']}: no privilege escalation")
            need("requests" in container.get("resources", {}), f"{name}/{container['name']}: resource requests")
            need("limits" in container.get("resources", {}), f"{name}/{container['name']}: resource limits")
        init = [c.get("args", []) for c in pod.get("initContainers", [])]
        need(["migrate", "--check", "--wait", "10m"] in init, f"{name}: waits for the migrate Job")

    api = by_kind["Deployment"]["reseller-api"]
    api_pod = api["spec"]["template"]["spec"]
    container = api_pod["containers"][0]
    need(api["spec"].get("replicas", 1) >= 2, "reseller-api: at least 2 replicas")
    need(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "reseller-api: readiness on /readyz")
    need(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "reseller-api: liveness on /healthz")
    need(
        api_pod.get("terminationGracePeriodSeconds", 30) > seconds(config.get("RESELLER_API__SHUTDOWN_TIMEOUT", "20s")) + 5,
        "reseller-api: terminationGracePeriodSeconds exceeds api.shutdown_timeout plus the preStop sleep",
    )
    hpa = by_kind["HorizontalPodAutoscaler"]["reseller-api"]["spec"]
    need(hpa.get("minReplicas", 1) >= 2, "reseller-api HPA: minReplicas at least 2")

    worker_pod = by_kind["Deployment"]["reseller-worker"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in worker_pod["containers"][0].get("env", [])}
    need(
        env.get("HOSTNAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name"
        and "RESELLER_WORKER__NAME" not in env
        and "RESELLER_WORKER__NAME" not in config,
        "reseller-worker: each process names itself after its pod (HOSTNAME) plus pid and a random suffix",
    )
    need(
        worker_pod.get("terminationGracePeriodSeconds", 30) > seconds(config.get("RESELLER_WORKER__SHUTDOWN_TIMEOUT", "30s")),
        "reseller-worker: terminationGracePeriodSeconds exceeds worker.shutdown_timeout",
    )

    for name, service in by_kind.get("Service", {}).items():
        for port in service["spec"].get("ports", []):
            if port["name"] == "metrics":
                need(port["port"] in (9090, 9091), f"Service {name}: metrics port is the metrics listener")

    if problems:
        raise SystemExit(f"{path}:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    main(sys.argv[1])
