"""The deploy files agree with the code they run: settings that exist, ``kith`` commands the
CLI accepts, probes on routes the app serves, non-root containers, stop timeouts longer
than the drains they must cover, and a proxy that reaches every API container.

Docker cannot build here, so these checks are how a typo in deploy/ fails before a release.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.exceptions import LitestarDeprecationWarning

from service.app import create_app
from service.cli import main as kith
from service.config import Settings, TokenSettings
from service.worker.runner import WorkerConfig

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CADDYFILE = DEPLOY / "proxy" / "Caddyfile"
DOCKERFILE = DEPLOY / "Dockerfile"

DOCUMENTED = frozenset(
    re.findall(r"^([A-Z][A-Z0-9_]*)=", (DEPLOY / "env.example").read_text(), flags=re.M)
)
_SETTING = re.compile(r"\b(?:KITH_[A-Z0-9_]+|DATABASE_URL|REDIS_URL)\b")

Doc = dict[str, Any]


def _compose() -> Doc:
    data: Doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def _manifests() -> list[Doc]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") != "Kustomization"
    ]


def _manifest(kind: str, name: str) -> Doc:
    found = [m for m in _manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def _pod_specs() -> Iterator[tuple[str, Doc]]:
    for m in _manifests():
        if m["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]


def _kith_services() -> dict[str, Doc]:
    """The compose services that run the Kith image."""
    return {
        name: svc
        for name, svc in _compose()["services"].items()
        if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    final = max(i for i, ln in enumerate(lines) if ln.upper().startswith("FROM "))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines[final:]]


def _docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in _dockerfile():
        if instruction == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def _docker(instruction: str) -> str:
    values = [args for i, args in _dockerfile() if i == instruction]
    assert values, instruction
    return values[-1]


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    assert match, duration
    return int(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2]]


def _interpolated(value: str) -> str:
    """A compose value with ``${VAR:-default}`` / ``${VAR:?error}`` as compose would fill
    them in a correct deployment (the required ones with a stand-in)."""
    return re.sub(
        r"\$\{\w+(?::-([^}]*)|:\?[^}]*)?\}", lambda m: m[1] if m[1] is not None else "x", value
    )


def _compose_settings(service: Doc) -> Settings:
    """The settings a compose service's Kith process would read (image ENV + its own)."""
    env = {k: _interpolated(str(v)) for k, v in service["environment"].items()}
    if env.get("KITH_MASTER_KEYS") == "x":  # its stand-in must parse: kid:base64-32-bytes
        env["KITH_MASTER_KEYS"] = _master_keys()
    return Settings.from_env(_docker_env() | env)


def _master_keys() -> str:
    return "k1:" + base64.b64encode(os.urandom(32)).decode()


def _ed25519_pem() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private.decode(), public.decode()


@pytest.fixture(scope="module")
def app_paths() -> frozenset[str]:
    """The paths the API serves, from the app itself (no servers are started)."""
    private, public = _ed25519_pem()
    with warnings.catch_warnings():  # route-declaration style is test_api_documents' business
        warnings.simplefilter("ignore", LitestarDeprecationWarning)
        app = create_app(
            Settings(tokens=TokenSettings(jwt_private_key=private, jwt_public_key=public)).using(
                database_url="postgresql://unused"
            )
        )
    return frozenset(route.path for route in app.routes)


def _configmap() -> dict[str, str]:
    data: dict[str, str] = _manifest("ConfigMap", "kith-config")["data"]
    return data


def _secret() -> dict[str, str]:
    data: dict[str, str] = _manifest("Secret", "kith-secrets")["stringData"]
    return data


# -- settings ----------------------------------------------------------------------------


def test_every_setting_the_deploy_files_name_is_documented() -> None:
    files = [DOCKERFILE, DEPLOY / "compose.yaml", CADDYFILE, *sorted(K8S.glob("*.yaml"))]
    named = {(f.name, n) for f in files for n in _SETTING.findall(f.read_text())}
    assert {n for _, n in named} >= {"DATABASE_URL", "KITH_JWT_PRIVATE_KEY"}
    assert sorted((f, n) for f, n in named if n not in DOCUMENTED) == []


def test_every_variable_set_for_a_kith_container_is_a_setting() -> None:
    compose_names = {n for svc in _kith_services().values() for n in svc["environment"]}
    k8s_names = set(_configmap()) | set(_secret())
    for _, spec in _pod_specs():
        for c in spec["containers"]:
            k8s_names |= {e["name"] for e in c.get("env", [])}
    docker_names = {n for n in _docker_env() if _SETTING.fullmatch(n)}
    assert docker_names >= {"KITH_ENV", "KITH_HOST", "KITH_PORT"}
    assert sorted((compose_names | k8s_names | docker_names) - DOCUMENTED) == []


def test_compose_environment_is_accepted_by_settings() -> None:
    for name, svc in _kith_services().items():
        settings = _compose_settings(svc)
        assert settings.is_production, name
        assert settings.database.url, name
        assert settings.server.host == "0.0.0.0", name  # reachable from the proxy


def test_k8s_config_and_secret_are_accepted_by_settings() -> None:
    private, public = _ed25519_pem()
    filled = {"DATABASE_URL": "postgresql://kith@db/kith"}
    filled |= {"KITH_JWT_PRIVATE_KEY": private, "KITH_JWT_PUBLIC_KEY": public}
    filled |= {"KITH_MASTER_KEYS": _master_keys()}
    settings = Settings.from_env(_docker_env() | _configmap() | _secret() | filled)
    assert settings.is_production
    assert settings.server.host == "0.0.0.0"  # probes and the Service reach the pod's address
    api = _manifest("Deployment", "kith-api")["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in api["ports"]}["http"] == settings.server.port


def test_the_secret_template_holds_no_secret() -> None:
    secret = _secret()
    assert {
        "DATABASE_URL",
        "KITH_JWT_PRIVATE_KEY",
        "KITH_JWT_PUBLIC_KEY",
        "KITH_MASTER_KEYS",
    } <= set(secret)
    assert {k for k in secret if "PRIVATE_KEY" in k} >= {
        "KITH_APNS_PRIVATE_KEY",
        "KITH_FCM_PRIVATE_KEY",
        "KITH_VAPID_PRIVATE_KEY",
    }
    assert {k: v for k, v in secret.items() if v} == {}
    assert not set(_configmap()) & set(secret)  # one place per setting


def test_every_pod_reads_the_config_and_secret_that_exist() -> None:
    refs = {"configMapRef": "kith-config", "secretRef": "kith-secrets"}
    for name, spec in _pod_specs():
        for c in spec["containers"]:
            assert [next(iter(e.items())) for e in c["envFrom"]] == [
                (kind, {"name": ref}) for kind, ref in refs.items()
            ], name


# -- commands ----------------------------------------------------------------------------


def _accepted(argv: list[str], capsys: pytest.CaptureFixture[str]) -> bool:
    """Whether ``kith`` parses ``argv`` (asked for --help, so nothing runs)."""
    with pytest.raises(SystemExit) as exit_info:
        kith([*argv, "--help"])
    capsys.readouterr()
    return exit_info.value.code == 0


def test_the_check_itself_refuses_an_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert _accepted(["worker"], capsys)
    assert not _accepted(["wroker"], capsys)


def test_the_image_runs_kith_and_serves_the_api_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert json.loads(_docker("ENTRYPOINT")) == ["kith"]
    default = json.loads(_docker("CMD"))
    assert default == ["api"]
    assert _accepted(default, capsys)


def test_compose_commands_are_kith_commands(capsys: pytest.CaptureFixture[str]) -> None:
    roles = {name: svc["command"] for name, svc in _kith_services().items()}
    for command in roles.values():
        assert _accepted(command, capsys), command
    assert sorted(c[0] for c in roles.values()) == ["api", "api", "migrate", "worker"]


def test_k8s_commands_are_kith_commands(capsys: pytest.CaptureFixture[str]) -> None:
    roles = {}
    for name, spec in _pod_specs():
        (container,) = spec["containers"]
        assert container["image"] == "kith", name
        assert "command" not in container, name  # the image's ENTRYPOINT is `kith`
        assert _accepted(container["args"], capsys), name
        roles[name] = container["args"][0]
    assert roles == {"kith-api": "api", "kith-worker": "worker", "kith-migrate": "migrate"}


# -- health checks and stopping ----------------------------------------------------------


def _handler_deadline_s() -> float:
    """The longest ``asyncio.wait_for`` deadline in the readiness handler's module."""
    tree = ast.parse((ROOT / "service" / "http" / "routes" / "health.py").read_text())
    constants = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    deadlines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "asyncio.wait_for":
            timeouts = node.args[1:] + [k.value for k in node.keywords if k.arg == "timeout"]
            arg = timeouts[0]
            value = arg.value if isinstance(arg, ast.Constant) else constants[ast.unparse(arg)]
            assert isinstance(value, int | float), ast.unparse(node)
            deadlines.append(float(value))
    assert deadlines
    return max(deadlines)


def test_api_probes_ask_routes_the_app_serves(app_paths: frozenset[str]) -> None:
    (api,) = _manifest("Deployment", "kith-api")["spec"]["template"]["spec"]["containers"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    paths = {api[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert paths <= app_paths
    assert all(api[p]["httpGet"]["port"] == "http" for p in ("readinessProbe", "livenessProbe"))
    assert api["readinessProbe"]["timeoutSeconds"] > _handler_deadline_s()


def test_the_image_healthcheck_asks_a_route_the_app_serves(app_paths: frozenset[str]) -> None:
    check = _docker("HEALTHCHECK")
    assert re.findall(r"/health/\w+", check) == ["/health/live"]
    assert "/health/live" in app_paths
    argv = json.loads(check.partition(" CMD ")[2])  # exec form: no shell in between
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "HEALTHCHECK", "exec")  # a syntax error would mark every API unhealthy


def test_processes_without_http_are_not_checked_over_http() -> None:
    services = _kith_services()
    for name, svc in services.items():
        if svc["command"][0] != "api":  # the image's HEALTHCHECK is the API's
            assert svc.get("healthcheck") == {"disable": True}, name
    spec = _manifest("Deployment", "kith-worker")["spec"]["template"]["spec"]
    (worker,) = spec["containers"]
    assert not {"ports", "readinessProbe", "livenessProbe", "startupProbe"} & set(worker)


def test_stop_timeouts_cover_the_drains() -> None:
    worker_grace = WorkerConfig().grace_s  # in-flight jobs get this long after SIGTERM
    # Granian gives in-flight requests (SSE streams among them) this long after SIGTERM
    api_grace = int(_configmap().get("KITH_SHUTDOWN_GRACE_S", Settings().server.shutdown_grace_s))
    worker = _manifest("Deployment", "kith-worker")["spec"]["template"]["spec"]
    assert worker["terminationGracePeriodSeconds"] >= worker_grace + 10
    api = _manifest("Deployment", "kith-api")["spec"]["template"]["spec"]
    pre_stop = api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert api["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + api_grace + 5
    for name, svc in _kith_services().items():
        role = svc["command"][0]
        if role in {"api", "worker"}:
            drain = (
                _compose_settings(svc).server.shutdown_grace_s if role == "api" else worker_grace
            )
            assert _seconds(svc["stop_grace_period"]) >= drain + 5, name


# -- who runs ----------------------------------------------------------------------------


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    user, _, group = _docker("USER").partition(":")
    assert user.isdigit()
    assert int(user) != 0
    assert group.isdigit()
    assert int(group) != 0
    assert not any("user" in svc for svc in _kith_services().values())  # nobody overrides it


def test_pods_run_as_non_root_with_a_read_only_root() -> None:
    uid = int(_docker("USER").partition(":")[0])
    names = []
    for name, spec in _pod_specs():
        names.append(name)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == uid, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert "limits" in c["resources"], name
            assert "requests" in c["resources"], name
    assert sorted(names) == ["kith-api", "kith-migrate", "kith-worker"]


# -- how it fits together ----------------------------------------------------------------


def test_kustomization_applies_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = sorted(kustomization["resources"])
    assert listed == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert [i["name"] for i in kustomization["images"]] == ["kith"]


def test_the_service_reaches_the_api_pods() -> None:
    service = _manifest("Service", "kith-api")["spec"]
    pods = _manifest("Deployment", "kith-api")["spec"]
    assert service["selector"] == pods["selector"]["matchLabels"]
    assert service["selector"].items() <= pods["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["ports"]] == ["http"]


def test_the_proxy_sends_every_request_to_both_api_containers() -> None:
    compose = _compose()
    apis = sorted(n for n, svc in _kith_services().items() if svc["command"] == ["api"])
    assert len(apis) >= 2
    port = _compose_settings(_kith_services()[apis[0]]).server.port
    caddyfile = CADDYFILE.read_text()
    upstreams = re.findall(r"reverse_proxy ([^{\n]+)\{", caddyfile)
    assert len(upstreams) >= 2
    for upstream in upstreams:
        assert sorted(upstream.split()) == [f"{a}:{port}" for a in apis]
    proxy = compose["services"]["proxy"]
    assert "./proxy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert set(proxy["depends_on"]) == set(apis)
    assert not any("ports" in compose["services"][a] for a in apis)  # only through the proxy


def _caddy_block(text: str, header: str) -> str:
    """The ``header { … }`` block of a Caddyfile, braces matched."""
    start = text.index(header)
    depth = 0
    for end in range(text.index("{", start), len(text)):
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        if depth == 0:
            return text[start : end + 1]
    raise AssertionError(f"unclosed block {header!r}")


def test_the_proxy_streams_server_sent_events(app_paths: frozenset[str]) -> None:
    events = _caddy_block(CADDYFILE.read_text(), "handle /v1/sync/events")
    assert re.search(r"^\s*flush_interval -1$", events, flags=re.M)  # no response buffering
    assert not re.search(r"\b(stream_timeout|response_header_timeout)\b", events)
    health = set(re.findall(r"health_uri (\S+)", CADDYFILE.read_text()))
    assert health == {"/health/ready"}
    assert health <= app_paths


def test_the_proxy_does_not_publish_metrics(app_paths: frozenset[str]) -> None:
    if "/metrics" not in app_paths:
        pytest.skip("the app serves no /metrics")
    block = _caddy_block(CADDYFILE.read_text(), "handle /metrics")
    assert "respond 404" in block
    assert "reverse_proxy" not in block
