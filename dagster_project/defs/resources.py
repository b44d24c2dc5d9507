import dagster as dg

from dagster_project.resources import DataRoot


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"data_root": DataRoot()})
