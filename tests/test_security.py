"""Security guarantees that a grep can check: no unpickling, safe YAML, no eval, localhost by default."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("llm_emf", "workflows", "bench") for p in (ROOT / d).rglob("*.py")]

FORBIDDEN = {
    r"\bpickle\.loads?\(": "unpickling runs arbitrary code",
    r"\bcloudpickle\.loads?\(": "unpickling runs arbitrary code",
    r"\bjoblib\.load\(": "joblib.load unpickles",
    r"\bnp\.load\([^)]*allow_pickle\s*=\s*True": "numpy with allow_pickle unpickles",
    r"\byaml\.load\(": "yaml.load can build arbitrary objects: use yaml.safe_load",
    r"(?<![\w.])eval\(": "eval of strings",
    r"(?<![\w.])exec\(": "exec of strings",
}


def _code_lines(path):
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.split("#", 1)[0]
        if stripped.strip():
            yield n, stripped


def test_sources_were_found():
    assert len(SOURCES) > 10


@pytest.mark.parametrize("pattern, why", FORBIDDEN.items())
def test_no_unsafe_deserialisation_or_eval(pattern, why):
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES for n, line in _code_lines(p) if re.search(pattern, line)]
    assert not hits, f"{why}: {hits}"


def test_every_torch_load_is_weights_only():
    hits = []
    for p in SOURCES:
        text = p.read_text(encoding="utf-8")
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 200]
            if "weights_only=True" not in call.split("\n\n")[0]:
                hits.append(f"{p.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}")
    assert not hits, f"torch.load without weights_only=True: {hits}"


def test_no_server_binds_all_interfaces_by_default():
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in SOURCES for n, line in _code_lines(p)
            if re.search(r"""["']0\.0\.0\.0["']""", line)]
    assert not hits, f"a default bind to 0.0.0.0: {hits}"


# -- the cluster's MLflow server ---------------------------------------------------------------------
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _cluster_commands():
    import yaml

    cluster = yaml.safe_load((ROOT / "cluster.yaml").read_text(encoding="utf-8"))
    keys = ("setup_commands", "head_setup_commands", "worker_setup_commands", "head_start_ray_commands",
            "worker_start_ray_commands")
    return cluster, [c for k in keys for c in cluster.get(k) or []]


def _bind_host(cmd: str) -> str:
    """The interface an ``mlflow server`` command binds (MLflow's default is 127.0.0.1)."""
    found = re.search(r"(?:--host[ =]|-h )\s*(\"[^\"]*\"|'[^']*'|\S+)", cmd) or re.search(r"MLFLOW_HOST=(\S+)", cmd)
    return found.group(1).strip("\"'") if found else "127.0.0.1"


def test_cluster_mlflow_server_binds_beyond_localhost_only_with_auth():
    _, commands = _cluster_commands()
    servers = [c for c in commands if re.search(r"\bmlflow (server|ui)\b", c)]
    assert servers, "cluster.yaml: expected an `mlflow server` command on the head, found none"
    for cmd in servers:
        host = _bind_host(cmd)
        assert host not in ("0.0.0.0", "::", "[::]") or "--app-name basic-auth" in cmd, \
            f"cluster.yaml: MLflow binds all interfaces ({host}) without authentication: {cmd}"
        assert host in LOOPBACK or "--app-name basic-auth" in cmd, \
            f"cluster.yaml: expected MLflow on 127.0.0.1 or with --app-name basic-auth, found --host {host} " \
            f"without authentication (anyone on that network can read and overwrite runs): {cmd}"
        if "--app-name basic-auth" in cmd:   # the admin password comes from the secret file, never inline
            assert 'MLFLOW_AUTH_ADMIN_PASSWORD="$(cat ~/.llm-emf/mlflow_password)"' in cmd, cmd


def test_cluster_workers_can_log_to_an_authenticated_mlflow():
    """Tune trials on the GPU workers log to the server themselves: every node's Ray needs the login."""
    cluster, commands = _cluster_commands()
    if not any("--app-name basic-auth" in c for c in commands):
        pytest.skip("MLflow without authentication (localhost only)")
    assert "~/.llm-emf/mlflow_password" in cluster["file_mounts"]
    starts = [c for c in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2
    for cmd in starts:
        for needed in ("MLFLOW_TRACKING_URI=", "MLFLOW_TRACKING_USERNAME=llm-emf",
                       'MLFLOW_TRACKING_PASSWORD="$(cat ~/.llm-emf/mlflow_password)"'):
            assert needed in cmd.split("ray start")[0], f"cluster.yaml: expected {needed} before `ray start`: {cmd}"
    assert any("mlflow[auth]" in c for c in cluster["head_setup_commands"]), "basic auth needs mlflow[auth]"
