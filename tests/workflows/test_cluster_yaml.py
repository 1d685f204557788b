"""cluster.yaml passes Ray's own cluster-config validation and stays pinned to the project's Ray."""

import copy
import re
from pathlib import Path

import pytest
import yaml
from jsonschema.exceptions import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_validates_with_rays_schema(cluster):
    validate_config(prepare_config(copy.deepcopy(cluster)))


def test_a_typo_is_rejected_by_the_same_validation(cluster):
    bad = copy.deepcopy(cluster)
    bad["available_node_types"]["ray.worker.gpu"]["max_workerz"] = 3
    with pytest.raises(ValidationError, match="max_workerz"):
        validate_config(prepare_config(bad))


def test_image_pinned_to_project_ray_version(cluster):
    pinned = re.search(r'"ray\[[^\]]*\]==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert cluster["docker"]["image"].startswith(f"rayproject/ray:{pinned}-py311")


def test_gpu_workers_autoscale_and_head_is_cpu_only(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu = cluster["available_node_types"]["ray.worker.gpu"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] == 0 and gpu["max_workers"] > 0


def test_setup_installs_gpu_extra_and_dashboard_stays_local(cluster):
    assert any("[gpu]" in c for c in cluster["setup_commands"])
    start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start


def test_token_authentication_is_on_everywhere(cluster):
    assert "~/.ray/auth_token" in cluster["file_mounts"]
    for cmd in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert "RAY_AUTH_MODE=token" in cmd
