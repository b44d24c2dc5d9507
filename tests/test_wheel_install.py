"""A non-editable install works: the wheel carries the SQL, the definitions load, a chain runs."""

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

PROJECT = Path(__file__).resolve().parents[1]
TINY = {
    "synthetic_cohort": {"config": {"n_patients": 2, "n_slides": 2, "slide_px": 256}},
}
UP_TO_CATALOG = ["synthetic_cohort", "slide_manifest", "slide_image", "nucleus_mask",
                 "nucleus_features", "stain_thresholds", "nucleus_labels", "nucleus_catalog"]


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_wheel_install_loads_definitions_and_builds_the_catalog(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGSTER_HOME", "PYTHONPATH") and not k.startswith("NUCLEUS_SUBTYPING")}
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(wheels), str(PROJECT)], tmp_path, env)
    wheel = next(wheels.glob("nucleus_subtyping-*.whl"))

    # A new venv holding only the wheel; its dependencies come from this environment's
    # site-packages, placed after the venv's own so the wheel's modules win.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    own = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    tmp_path, env).strip())
    (own / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
         tmp_path, env)

    user = tmp_path / "user"
    user.mkdir()
    located = _run([str(python), "-c", "import storage.sql_files as s; print(s.SQL_DIR)"],
                   user, env)
    assert Path(located.strip()).parent == own, located  # the installed copy, not the checkout
    assert (Path(located.strip()) / "catalog_views.sql").is_file()
    assert (Path(located.strip()) / "cell_types.csv").is_file()  # the class table
    assert (Path(located.strip()) / "queries" / "thresholds_suggested.sql").is_file()

    # What `dg check defs` checks, pointed at the installed module rather than a checkout.
    _run([str(python), "-m", "dagster", "definitions", "validate",
          "-m", "dagster_project.definitions"], user, env)

    config = user / "tiny.yaml"
    config.write_text(json.dumps({"ops": TINY}))
    out = _run([str(venv / "bin" / "nucleus-subtyping"), "demo", "--run-config", config.name,
                "--only", *UP_TO_CATALOG], user, env)
    assert "Done." in out
    with duckdb.connect(str(user / "data" / "catalog.duckdb"), read_only=True) as con:
        slides = con.sql("SELECT count(DISTINCT slide_id) FROM nucleus_labels").fetchall()[0][0]
    assert slides == 2
