"""The lab-server instance settings work against a real PostgreSQL server.

`.ci/postgres.sh` starts one on 127.0.0.1 and exports NUCLEUS_SUBTYPING_PG_*; without it the
test is skipped (SQLite stays the zero-set-up default everywhere else).
"""

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.partitions import slide_partitions

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not os.environ.get("NUCLEUS_SUBTYPING_PG_URL"),
    reason='no PostgreSQL server: run `eval "$(bash .ci/postgres.sh start)"` first',
)


@dg.asset(partitions_def=slide_partitions)
def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"slide_id": context.partition_key})


def test_runs_and_partitions_are_stored_in_postgres(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "instance" / "dagster-postgres.yaml", home / "dagster.yaml")
    slide_id = f"pg-probe-{os.getpid()}"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        instance.add_dynamic_partitions("slides", [slide_id])
        result = dg.materialize([probe], instance=instance, partition_key=slide_id)
        assert result.success
    # A second instance object sees what the first wrote: the state lives in PostgreSQL.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert slide_id in instance.get_dynamic_partitions("slides")
        event = instance.get_latest_materialization_event(dg.AssetKey("probe"))
        assert event is not None
        assert event.asset_materialization.partition == slide_id
        assert instance.get_run_by_id(result.run_id) is not None
