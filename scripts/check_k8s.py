#!/usr/bin/env python3
"""Render deploy/kubernetes offline and check every object.

    check_k8s.py DIR [--ra PATH] [--render]

DIR holds a kustomization.yaml. The rendering implements exactly the kustomize fields
the project uses (resources, namespace, images) and refuses any other field, so what is
checked here is what `kubectl apply -k DIR` applies. Then each object is validated
against the Kubernetes JSON schemas of the two latest minor versions the pinned
`kubernetes-validate` ships (strict: an unknown field is an error), and the objects are
checked against each other: every Service and PodDisruptionBudget selects a workload's
pods, a StatefulSet's serviceName is a headless Service, probes name declared ports,
mounts name declared volumes, a configMap volume names a rendered ConfigMap,
and a `dns+http://NAME.NS.svc.cluster.local:PORT` endpoint names a headless Service
with that port. With --ra, every `--flag` given to an `ra` container must be one that
`ra SUBCOMMAND --help` lists.

Exit status 0 when everything passes, 1 with one line per problem otherwise.
--render prints the rendered YAML stream instead (what `kubectl kustomize DIR` gives).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition", "PriorityClass"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Problem(Exception):
    pass


def render(directory: Path) -> list[dict]:
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise Problem(f"{kfile}: no kustomization.yaml")
    k = yaml.safe_load(kfile.read_text()) or {}
    unknown = sorted(set(k) - KUSTOMIZE_FIELDS)
    if unknown:
        raise Problem(f"{kfile}: kustomize fields this check does not implement: {unknown} "
                      f"(supported: {sorted(KUSTOMIZE_FIELDS)})")
    if k.get("kind") != "Kustomization":
        raise Problem(f"{kfile}: kind is {k.get('kind')!r}, not Kustomization")
    images = {i["name"]: i for i in k.get("images", [])}
    objects = []
    for res in k.get("resources", []):
        path = directory / res
        if not path.is_file():
            raise Problem(f"{kfile}: resource {res} is not a file")
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                raise Problem(f"{path}: a document without kind/apiVersion")
            if "namespace" in k and doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = k["namespace"]
            for c in containers(doc):
                name, _, tag = c.get("image", "").partition(":")
                if name in images:
                    i = images[name]
                    c["image"] = f"{i.get('newName', name)}:{i.get('newTag', tag or 'latest')}"
            objects.append((path.name, doc))
    return objects


def pod_spec(doc: dict) -> dict | None:
    if doc["kind"] in WORKLOADS:
        return doc.get("spec", {}).get("template", {}).get("spec")
    if doc["kind"] == "Pod":
        return doc.get("spec")
    return None


def containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc) or {}
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def pod_labels(doc: dict) -> dict:
    return doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def schema_versions() -> list[str]:
    from kubernetes_validate import utils
    from packaging.version import Version
    minors = sorted({utils.major_minor(v) for v in utils.all_versions()}, key=Version)
    return minors[-2:]


def validate_schemas(objects, problems: list[str]) -> list[str]:
    from kubernetes_validate import utils
    versions = schema_versions()
    for fname, doc in objects:
        name = f"{fname}: {doc['kind']}/{doc.get('metadata', {}).get('name')}"
        for v in versions:
            try:
                utils.validate(doc, v, strict=True)
            except utils.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                problems.append(f"{name}: Kubernetes {v} schema: {where}: {e.message}")
            except utils.SchemaNotFoundError as e:
                problems.append(f"{name}: {e.message}")
    return versions


def cross_check(objects, problems: list[str]) -> None:
    docs = [d for _, d in objects]
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    services = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d
                for d in docs if d["kind"] == "Service"}
    for d in docs:
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] == "Service":
            sel = d.get("spec", {}).get("selector", {})
            if not any(selects(sel, pod_labels(w)) for w in workloads):
                problems.append(f"{name}: selector {sel} matches no workload's pods")
        if d["kind"] == "PodDisruptionBudget":
            sel = d.get("spec", {}).get("selector", {}).get("matchLabels", {})
            if not any(selects(sel, pod_labels(w)) for w in workloads):
                problems.append(f"{name}: selector {sel} matches no workload's pods")
        if d["kind"] in WORKLOADS:
            sel = d.get("spec", {}).get("selector", {}).get("matchLabels", {})
            if not selects(sel, pod_labels(d)):
                problems.append(f"{name}: selector {sel} does not match its own pod labels")
        if d["kind"] == "StatefulSet":
            svc = services.get((d["metadata"].get("namespace"), d["spec"].get("serviceName")))
            if svc is None or svc["spec"].get("clusterIP") != "None":
                problems.append(f"{name}: serviceName {d['spec'].get('serviceName')!r} "
                                "is not a headless Service here")
        spec = pod_spec(d) or {}
        volumes = {v["name"] for v in spec.get("volumes", [])} | \
            {t["metadata"]["name"] for t in d.get("spec", {}).get("volumeClaimTemplates", [])}
        configmaps = {x["metadata"]["name"] for x in docs if x["kind"] == "ConfigMap"}
        for v in spec.get("volumes", []):
            cm = (v.get("configMap") or {}).get("name")
            if cm is not None and cm not in configmaps:
                problems.append(f"{name}: volume {v['name']} names no ConfigMap here ({cm})")
        for c in containers(d):
            for m in c.get("volumeMounts", []):
                if m["name"] not in volumes:
                    problems.append(f"{name}: {c['name']} mounts undeclared volume {m['name']}")
            ports = {p.get("name") for p in c.get("ports", [])} | \
                    {p.get("containerPort") for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                p = c.get(probe) or {}
                port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
                if port is not None and port not in ports:
                    problems.append(f"{name}: {c['name']}.{probe} port {port!r} is not declared")
            for arg in c.get("args", []) + c.get("command", []):
                for host, port in re.findall(r"dns\+https?://([^/:\s]+):(\d+)", str(arg)):
                    m = re.fullmatch(r"([^.]+)\.([^.]+)\.svc\.cluster\.local", host)
                    svc = services.get((m.group(2), m.group(1))) if m else None
                    if svc is None or svc["spec"].get("clusterIP") != "None":
                        problems.append(f"{name}: {arg}: no headless Service {host} here")
                    elif int(port) not in [p.get("port") for p in svc["spec"].get("ports", [])]:
                        problems.append(f"{name}: {arg}: Service {host} has no port {port}")


def check_ra_flags(objects, ra: str, problems: list[str]) -> None:
    helps: dict[str, str] = {}
    for _, d in objects:
        for c in containers(d):
            image = c.get("image", "").split(":")[0]
            if not (image == "ra" or image.endswith("/ra")):
                continue
            args = c.get("args", [])
            if not args:
                continue
            sub = args[0]
            if sub not in helps:
                out = subprocess.run([ra, sub, "--help"], capture_output=True, text=True)
                if out.returncode != 0:
                    problems.append(f"{d['metadata']['name']}: `ra {sub} --help` failed: "
                                    f"{out.stderr.strip()}")
                    continue
                helps[sub] = out.stdout
            for arg in args[1:]:
                flag = arg.split("=", 1)[0]
                if flag.startswith("--") and not re.search(
                        rf"(^|[\s,]){re.escape(flag)}([\s=<]|$)", helps[sub], re.M):
                    problems.append(f"{d['metadata']['name']}: `ra {sub}` has no flag {flag}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--ra", help="an ra binary whose --help the container flags must match")
    ap.add_argument("--render", action="store_true", help="print the rendered objects")
    a = ap.parse_args()
    try:
        objects = render(a.dir)
    except (Problem, yaml.YAMLError) as e:
        print(f"FAIL {e}")
        return 1
    if a.render:
        yaml.safe_dump_all([d for _, d in objects], sys.stdout, sort_keys=False)
        return 0
    problems: list[str] = []
    versions = validate_schemas(objects, problems)
    cross_check(objects, problems)
    if a.ra:
        check_ra_flags(objects, a.ra, problems)
    for p in problems:
        print(f"FAIL {p}")
    if not problems:
        kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for _, d in objects)
        print(f"ok {a.dir}: {len(objects)} objects valid for Kubernetes "
              f"{' and '.join(versions)} (strict): {kinds}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
