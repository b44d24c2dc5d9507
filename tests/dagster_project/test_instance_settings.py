"""The instance settings the project installs into DAGSTER_HOME."""

from pathlib import Path

import dagster as dg
import pytest

from dagster_project.instance import ensure_dagster_home
from dagster_project.resources import DATA_ROOT_ENV


def test_fresh_instance_has_one_gpu_step_no_telemetry_and_no_sign_up_dialog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = ensure_dagster_home()
    assert home == (tmp_path / "data" / ".dagster").resolve()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.nux_enabled is False
        assert instance.telemetry_enabled is False
        assert instance.get_settings("concurrency")["pools"]["default_limit"] == 1
