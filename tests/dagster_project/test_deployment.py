"""The definitions load with the Kubernetes configuration of deploy/ (no cluster needed)."""

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def test_definitions_use_the_k8s_job_executor_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("dagster_k8s")
    from dagster_project.definitions import defs

    monkeypatch.setenv("NUCLEUS_SUBTYPING_EXECUTOR", "k8s")
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    assert loaded.executor is not None
    assert loaded.executor.name == "k8s"


def test_unknown_executor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_project.definitions import defs

    monkeypatch.setenv("NUCLEUS_SUBTYPING_EXECUTOR", "spark")
    with pytest.raises(Exception) as raised:
        defs()
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("NUCLEUS_SUBTYPING_EXECUTOR='spark'" in message for message in chain)


def test_helm_values_point_at_our_code_location() -> None:
    values = yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "dagster_project.definitions"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["NUCLEUS_SUBTYPING_EXECUTOR"] == "k8s"
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "dagster_project.definitions" in dockerfile


def test_training_steps_ask_kubernetes_for_a_gpu() -> None:
    from dagster_project.definitions import defs

    graph = defs().resolve_asset_graph()
    node = graph.get(dg.AssetKey("classifier"))
    k8s_config = node.assets_def.op.tags["dagster-k8s/config"]
    if isinstance(k8s_config, str):  # Dagster stores structured tags as JSON text
        k8s_config = json.loads(k8s_config)
    limits = k8s_config["container_config"]["resources"]["limits"]
    assert limits == {"nvidia.com/gpu": "1"}
    assert node.pools == {"gpu"} or node.assets_def.op.pool == "gpu"
