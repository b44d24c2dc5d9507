"""Entry point for `dg dev`, `dg launch` and `dg check defs`: every module under defs/ is loaded."""

import warnings
from pathlib import Path

import dagster as dg

import dagster_project.pool_wait  # noqa: F401  (a pooled step waits without spinning)

# Dagster's own sensor copy passes its beta `owners` parameter; every run worker would print it.
warnings.filterwarnings("ignore", message="Parameter `owners`", category=dg.BetaWarning)

PROJECT_ROOT = Path(__file__).parent.parent


@dg.definitions
def defs() -> dg.Definitions:
    if (PROJECT_ROOT / "pyproject.toml").is_file():  # a checkout: the dg project
        return dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)
    # An installed wheel has no pyproject.toml beside the package: load the same defs module.
    import dagster_project.defs

    return dg.load_defs(dagster_project.defs, project_root=PROJECT_ROOT,
                        terminate_autoloading_on_keyword_files=False)
