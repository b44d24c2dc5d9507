"""Every Dagster definition loads, as `dg check defs` would."""

import dagster as dg

from dagster_project.definitions import defs


def test_definitions_load() -> None:
    loaded = defs()
    assert isinstance(loaded, dg.Definitions)
    loaded.validate_loadable(loaded)
