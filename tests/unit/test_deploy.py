"""Static checks of the deployment files under deploy/.

Nothing here builds an image, starts a cluster or talks to Kubernetes: the Dockerfile, the Ray
cluster launcher config and the KubeRay manifests are parsed and cross-checked against each other,
against pyproject.toml and against the CLI's subcommands.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
LAUNCHER = DEPLOY / "ray-cluster.yaml"
RAYCLUSTER = DEPLOY / "kuberay" / "raycluster.yaml"
RAYJOB = DEPLOY / "kuberay" / "rayjob.yaml"
DEPLOY_README = DEPLOY / "README.md"

# Every subcommand of the `shardvec` console script (cluster.cli:main).
SHARDVEC_SUBCOMMANDS = frozenset(
    {
        "up",
        "status",
        "create",
        "load",
        "query",
        "drop",
        "demo",
        "bench",
        "crasher",
        "snapshot",
        "recall",
        "fronts",
    }
)

GRPC_PORT = 50051
DATA_MOUNT = "/data"
TOKEN_SECRET = "shardvec-ray-token"
UP_ARGS = ("--address auto", "--data-dir /data/shardvec", "--host 0.0.0.0", "--port 50051")

# `shardvec` as a command word followed by its subcommand (not shardvec:latest, shardvec-grpc, ...).
SUBCOMMAND_RE = re.compile(r"(?<![\w./:-])shardvec[ \t]+([a-z][a-z0-9_-]*)(?![\w:./-])")
PORT_NAME_RE = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")  # IANA_SVC_NAME


# ---------------------------------------------------------------------------- helpers


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d is not None]
    assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"
    return docs


def docs_of_kind(path: Path, kind: str) -> list[dict[str, Any]]:
    return [d for d in load_docs(path) if d.get("kind") == kind]


def one_of_kind(path: Path, kind: str) -> dict[str, Any]:
    docs = docs_of_kind(path, kind)
    assert len(docs) == 1, f"{path.name}: expected one {kind}, found {len(docs)}"
    return docs[0]


def pinned_ray_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    for dep in deps:
        m = re.fullmatch(r"\s*ray\[default\]\s*==\s*([0-9][0-9A-Za-z.]*)\s*", dep)
        if m:
            return m.group(1)
    raise AssertionError("pyproject.toml pins no ray[default]==X")


def ray_cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    """(label, RayCluster spec) for the RayCluster and for the RayJob's rayClusterSpec."""
    cluster = one_of_kind(RAYCLUSTER, "RayCluster")
    job = one_of_kind(RAYJOB, "RayJob")
    return [
        ("RayCluster", cluster["spec"]),
        ("RayJob.rayClusterSpec", job["spec"]["rayClusterSpec"]),
    ]


def pod_templates(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", spec["headGroupSpec"]["template"]
    for group in spec["workerGroupSpecs"]:
        yield f"worker group {group['groupName']}", group["template"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def shell_code_lines(path: Path) -> list[str]:
    return [
        ln
        for ln in path.read_text(encoding="utf-8").splitlines()
        if not ln.lstrip().startswith("#")
    ]


def markdown_code(text: str) -> list[str]:
    """Fenced code blocks and inline code spans of a Markdown document."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return blocks + re.findall(r"`([^`\n]+)`", rest)


def yaml_comment_commands(path: Path) -> list[str]:
    """Shell commands written in YAML comments as `# $ command`."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\s*#\s*\$\s+(.*)", line)
        if m:
            out.append(m.group(1))
    return out


def command_texts() -> dict[str, list[str]]:
    """Every place under deploy/ where a shell command is written, by file."""
    texts: dict[str, list[str]] = {}
    for path in yaml_files():
        texts[str(path.relative_to(REPO))] = [
            *(s for doc in load_docs(path) for s in strings_in(doc)),
            *yaml_comment_commands(path),
        ]
    texts[str(DOCKERFILE.relative_to(REPO))] = [args for _, args in dockerfile_instructions()]
    texts[str(ENTRYPOINT.relative_to(REPO))] = shell_code_lines(ENTRYPOINT)
    texts[str(DEPLOY_README.relative_to(REPO))] = markdown_code(DEPLOY_README.read_text("utf-8"))
    return texts


# ---------------------------------------------------------------------------- every file


def test_deploy_files_exist() -> None:
    for path in (DOCKERFILE, DOCKERIGNORE, ENTRYPOINT, LAUNCHER, RAYCLUSTER, RAYJOB, DEPLOY_README):
        assert path.is_file(), f"missing {path.relative_to(REPO)}"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = load_docs(path)
    assert docs, f"{path.name} holds no YAML document"


def test_pinned_ray_version_parses() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned_ray_version())


def test_shardvec_subcommands_are_real() -> None:
    used: dict[str, set[str]] = {}
    for name, texts in command_texts().items():
        for text in texts:
            for sub in SUBCOMMAND_RE.findall(text):
                used.setdefault(sub, set()).add(name)
    assert "up" in used, (
        "no `shardvec up` found under deploy/: the scan is looking in the wrong place"
    )
    unknown = {sub: sorted(files) for sub, files in used.items() if sub not in SHARDVEC_SUBCOMMANDS}
    assert not unknown, f"unknown shardvec subcommands: {unknown}"


def test_no_file_disables_ray_token_auth() -> None:
    pattern = re.compile(r"RAY_AUTH_MODE\W{0,20}(?:value\W{0,5})?disabled", re.I)
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        assert not pattern.search(text), f"{path.relative_to(REPO)} disables Ray token auth"
    for path in yaml_files():
        for doc in load_docs(path):
            for node in _walk_dicts(doc):
                if node.get("name") == "RAY_AUTH_MODE" and "value" in node:
                    assert str(node["value"]).lower() == "token", f"{path.name}: {node}"
                auth = node.get("authOptions")
                if isinstance(auth, dict):
                    assert str(auth.get("mode", "token")).lower() == "token", f"{path.name}: {auth}"


def _walk_dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk_dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_dicts(value)


# ---------------------------------------------------------------------------- Dockerfile


def test_dockerfile_base_and_user() -> None:
    instructions = dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert froms, "no FROM"
    assert all(args.split()[0] == "python:3.11-slim" for args in froms), froms
    users = [args for word, args in instructions if word == "USER"]
    assert users, "the image must switch to a non-root user"
    last_user = users[-1].split(":")[0]
    assert last_user not in {"root", "0"}, f"final USER is {users[-1]}"


def _pip_install_targets(run_args: str) -> list[list[str]]:
    """The positional arguments of each `pip install` in a RUN line."""
    targets = []
    for command in re.split(r"&&|;|\|\|", run_args):
        words = shlex.split(command)
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":
                targets.append([w for w in words[i + 2 :] if not w.startswith("-")])
    return targets


def test_dockerfile_installs_the_package_with_pip_install_dot() -> None:
    runs = [args for word, args in dockerfile_instructions() if word == "RUN"]
    targets = [t for args in runs for t in _pip_install_targets(args)]
    assert ["."] in targets, f"no `pip install .` in the Dockerfile (pip installs: {targets})"
    editable = [args for args in runs if re.search(r"pip install\b.*\s(-e|--editable)\b", args)]
    assert not editable, f"the image must not use an editable install: {editable}"
    copies = [args for word, args in dockerfile_instructions() if word == "COPY"]
    assert any(args.split()[-2:-1] == ["."] for args in copies), (
        "the Dockerfile must copy the repository (the build context) before installing it"
    )


def test_dockerfile_install_matches_top_level_readme() -> None:
    readme = REPO / "README.md"
    lines = [
        ln.strip().removeprefix("$ ").strip()
        for block in markdown_code(readme.read_text(encoding="utf-8"))
        for ln in block.splitlines()
    ]
    prod = [ln for ln in lines if re.fullmatch(r"(?:python\S* -m )?pip3? install \.", ln)]
    if not prod:
        pytest.skip("the top-level README has no non-dev `pip install .` line yet")
    runs = [args for word, args in dockerfile_instructions() if word == "RUN"]
    assert any(["."] in _pip_install_targets(args) for args in runs)


def test_dockerfile_exposes_ports() -> None:
    exposed = {
        int(port.split("/")[0])
        for word, args in dockerfile_instructions()
        if word == "EXPOSE"
        for port in args.split()
    }
    assert {GRPC_PORT, 8265, 6379, 9464} <= exposed, exposed


def test_dockerfile_keeps_ray_token_auth_on() -> None:
    envs = " ".join(args for word, args in dockerfile_instructions() if word == "ENV")
    assert re.search(r"\bRAY_AUTH_MODE=token\b", envs), (
        "the image should default RAY_AUTH_MODE=token"
    )


def test_dockerfile_default_command_runs_shardvec_up() -> None:
    instructions = dockerfile_instructions()
    cmds = [args for word, args in instructions if word in {"CMD", "ENTRYPOINT"}]
    assert cmds, "no CMD / ENTRYPOINT"
    cmd = cmds[-1]
    if "shardvec up" in cmd:
        script = cmd
    else:
        # The command is the entry script: find which file of the repo is copied to that name.
        program = re.findall(r"[\w./-]+", cmd)[0]
        sources = [
            args.split()[-2]
            for word, args in instructions
            if word == "COPY" and Path(args.split()[-1]).name == Path(program).name
        ]
        assert sources, f"CMD runs {program!r}, which no COPY puts into the image"
        assert REPO / sources[0] == ENTRYPOINT, sources
        script = "\n".join(shell_code_lines(ENTRYPOINT))
    up_lines = [ln for ln in script.splitlines() if re.search(r"(?<![\w-])shardvec up\b", ln)]
    assert up_lines, "the default command never runs `shardvec up`"
    assert "--address auto" in up_lines[0]
    assert "--host 0.0.0.0" in up_lines[0]
    assert "--port 50051" in up_lines[0]
    assert re.search(r"ray start --head\b", script), "the default command must start a Ray head"


def test_entrypoint_is_valid_bash() -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash here")
    result = subprocess.run(
        [bash, "-n", str(ENTRYPOINT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        ln.strip()
        for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    assert {".venv", ".git"} <= patterns, patterns


# ---------------------------------------------------------------------------- ray up


def test_launcher_config_shape() -> None:
    (cfg,) = load_docs(LAUNCHER)
    assert cfg["cluster_name"]
    assert cfg["provider"]["type"]
    head = " ; ".join(cfg["head_start_ray_commands"])
    assert "ray start --head" in head
    assert "--dashboard-host=0.0.0.0" in head
    assert "RAY_AUTH_MODE=token" in head
    worker = " ; ".join(cfg["worker_start_ray_commands"])
    assert "ray start --address=" in worker
    assert "RAY_AUTH_MODE=token" in worker
    assert cfg["docker"]["image"] == "shardvec:latest"
    assert any("pip install" in c for c in cfg["setup_commands"])
    assert "." in cfg["file_mounts"].values(), "the repository is not file-mounted"
    assert "~/.ray/auth_token" in cfg["file_mounts"], "the Ray token is not synced to the nodes"
    comments = " ".join(yaml_comment_commands(LAUNCHER))
    assert "ray job submit" in comments and "shardvec up" in comments


def test_launcher_config_passes_rays_own_validation() -> None:
    util = pytest.importorskip("ray.autoscaler._private.util")
    (cfg,) = load_docs(LAUNCHER)
    prepared = util.prepare_config(copy.deepcopy(cfg))
    util.validate_config(prepared)


# ---------------------------------------------------------------------------- KubeRay


def test_raycluster_kind_and_version() -> None:
    cluster = one_of_kind(RAYCLUSTER, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["kind"] == "RayCluster"
    assert str(cluster["spec"]["rayVersion"]) == pinned_ray_version()


def test_rayjob_kind_entrypoint_and_lifecycle() -> None:
    job = one_of_kind(RAYJOB, "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    entrypoint = spec["entrypoint"]
    assert entrypoint.startswith("shardvec up ")
    for arg in UP_ARGS:
        assert arg in entrypoint, f"RayJob entrypoint lacks {arg!r}"
    assert spec["shutdownAfterJobFinishes"] is False
    assert str(spec["rayClusterSpec"]["rayVersion"]) == pinned_ray_version()


@pytest.mark.parametrize("which", [0, 1], ids=["RayCluster", "RayJob"])
def test_ray_cluster_spec_required_fields(which: int) -> None:
    label, spec = ray_cluster_specs()[which]
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict), label
    assert head["rayStartParams"].get("dashboard-host") == "0.0.0.0", label
    container = head["template"]["spec"]["containers"][0]
    assert container["image"], label
    ports = {p["containerPort"]: p.get("name") for p in container["ports"]}
    assert {6379, 8265, 10001, GRPC_PORT, 9464} <= set(ports), (label, ports)
    assert ports[GRPC_PORT] == "grpc", label
    assert ports[6379] == "gcs-server", "KubeRay's name for the GCS port is gcs-server"
    assert ports[9464] != "metrics", (
        "KubeRay reserves the port name `metrics` for Ray's own metrics"
    )
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key]), (label, key)
    groups = spec["workerGroupSpecs"]
    assert groups, label
    for group in groups:
        for key in (
            "groupName",
            "replicas",
            "minReplicas",
            "maxReplicas",
            "rayStartParams",
            "template",
        ):
            assert key in group, f"{label}: worker group lacks {key}"
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], (label, group)
        assert isinstance(group["rayStartParams"], dict)
        assert group["template"]["spec"]["containers"][0]["image"], label


@pytest.mark.parametrize("which", [0, 1], ids=["RayCluster", "RayJob"])
def test_port_names_are_valid_and_unique(which: int) -> None:
    label, spec = ray_cluster_specs()[which]
    for where, template in pod_templates(spec):
        for container in template["spec"]["containers"]:
            ports = container.get("ports", [])
            names = [p["name"] for p in ports if "name" in p]
            assert len(names) == len(set(names)), (label, where, names)
            numbers = [p["containerPort"] for p in ports]
            assert len(numbers) == len(set(numbers)), (label, where, numbers)
            for name in names:
                assert PORT_NAME_RE.match(name), f"{label} {where}: invalid port name {name!r}"


@pytest.mark.parametrize("which", [0, 1], ids=["RayCluster", "RayJob"])
def test_ray_containers_use_token_from_secret(which: int) -> None:
    label, spec = ray_cluster_specs()[which]
    for where, template in pod_templates(spec):
        env = env_of(template["spec"]["containers"][0])
        assert env["RAY_AUTH_MODE"]["value"] == "token", (label, where)
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == TOKEN_SECRET, (label, where)
        assert ref.get("optional") is not True, "the Ray token must not be optional"


def test_rayjob_submitter_carries_the_token() -> None:
    spec = one_of_kind(RAYJOB, "RayJob")["spec"]
    pod = spec["submitterPodTemplate"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert "command" not in container, "leave the command to KubeRay (ray job submit ...)"
    env = env_of(container)
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == TOKEN_SECRET


def _normalised(spec: dict[str, Any]) -> dict[str, Any]:
    """A RayCluster spec without the parts that legitimately differ between the two manifests."""
    spec = copy.deepcopy(spec)
    for _, template in pod_templates(spec):
        labels = template.get("metadata", {}).get("labels", {})
        labels.pop("shardvec.io/deployment", None)
        for volume in template["spec"].get("volumes", []):
            if "persistentVolumeClaim" in volume:
                volume["persistentVolumeClaim"]["claimName"] = "<claim>"
    return spec


def test_rayjob_cluster_spec_matches_raycluster() -> None:
    (_, cluster), (_, job) = ray_cluster_specs()
    assert _normalised(job) == _normalised(cluster)


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=["raycluster", "rayjob"])
def test_data_volume_is_claimed_and_mounted_everywhere(path: Path) -> None:
    claims = {c["metadata"]["name"]: c for c in docs_of_kind(path, "PersistentVolumeClaim")}
    assert claims, f"{path.name}: no PersistentVolumeClaim"
    owner = docs_of_kind(path, "RayCluster") + docs_of_kind(path, "RayJob")
    spec = owner[0]["spec"].get("rayClusterSpec", owner[0]["spec"])
    users: dict[str, int] = {}
    for where, template in pod_templates(spec):
        pod = template["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = [
            m for m in pod["containers"][0].get("volumeMounts", []) if m["mountPath"] == DATA_MOUNT
        ]
        assert mounts, f"{path.name} {where}: nothing mounted at {DATA_MOUNT}"
        volume = volumes[mounts[0]["name"]]
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        assert claim in claims, f"{path.name} {where}: /data is not backed by a claim in this file"
        users[claim] = users.get(claim, 0) + 1
    for claim, count in users.items():
        if count > 1:
            modes = claims[claim]["spec"]["accessModes"]
            assert "ReadWriteMany" in modes, f"{claim} is shared by {count} pod templates: {modes}"


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB], ids=["raycluster", "rayjob"])
def test_grpc_service_selects_the_head(path: Path) -> None:
    services = [
        s
        for s in docs_of_kind(path, "Service")
        if any(p.get("port") == GRPC_PORT for p in s["spec"]["ports"])
    ]
    assert services, f"{path.name}: no Service exposes {GRPC_PORT}"
    cluster_docs = docs_of_kind(path, "RayCluster")
    cluster_name = cluster_docs[0]["metadata"]["name"] if cluster_docs else None
    owner = cluster_docs or docs_of_kind(path, "RayJob")
    spec = owner[0]["spec"].get("rayClusterSpec", owner[0]["spec"])
    head_labels = dict(spec["headGroupSpec"]["template"].get("metadata", {}).get("labels", {}))
    head_labels["ray.io/node-type"] = "head"
    if cluster_name is not None:  # a RayJob's cluster gets a generated name
        head_labels["ray.io/cluster"] = cluster_name
    worker_labels = [
        {**g["template"].get("metadata", {}).get("labels", {}), "ray.io/node-type": "worker"}
        for g in spec["workerGroupSpecs"]
    ]
    for service in services:
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
        port = next(p for p in service["spec"]["ports"] if p["port"] == GRPC_PORT)
        assert port["name"] == "grpc"
        assert port.get("targetPort", GRPC_PORT) in (GRPC_PORT, "grpc")
        selector = service["spec"]["selector"]
        assert selector.get("ray.io/node-type") == "head"
        for key, value in selector.items():
            assert head_labels.get(key) == value, f"{path.name}: head pod lacks label {key}={value}"
        for labels in worker_labels:
            assert any(labels.get(k) != v for k, v in selector.items()), "selector matches workers"


def test_shardvec_up_flags_exist_in_the_cli() -> None:
    cli_module = pytest.importorskip("shardvec.cluster.cli")
    up = cli_module.cli.commands["up"]
    known = {opt for param in up.params for opt in (*param.opts, *param.secondary_opts)}
    used: dict[str, set[str]] = {}
    for name, texts in command_texts().items():
        for text in texts:
            for m in re.finditer(r"(?<![\w./:-])shardvec[ \t]+up\b([^\n;&|`]*)", text):
                for flag in re.findall(r"(?<!\S)(--?[a-z][a-z0-9-]*)", m.group(1)):
                    used.setdefault(flag, set()).add(name)
    assert "--address" in used, "no `shardvec up --address ...` found under deploy/"
    unknown = {flag: sorted(files) for flag, files in used.items() if flag not in known}
    assert not unknown, f"`shardvec up` has no such options: {unknown}"
