"""The project's Dagster instance settings (dagster.yaml), installed into DAGSTER_HOME.

Defaults: DAGSTER_HOME = <data root>/.dagster (./.dagster when the data root is an object-storage
URL) with SQLite storage; the declarative-automation
sensor is on, and the `gpu` pool allows one step at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster_project.resources import default_data_root
from storage.atomic import atomic_write_text
from storage.fs import as_path, is_remote

INSTANCE_TEMPLATE = Path(__file__).with_name("dagster.yaml")


def ensure_dagster_home() -> Path:
    """Point DAGSTER_HOME at the data root's `.dagster` unless the user set it; install settings."""
    root = default_data_root()
    base = Path() if is_remote(root) else as_path(root)
    home = Path(os.environ.get("DAGSTER_HOME") or base / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    wanted = INSTANCE_TEMPLATE.read_text()
    if not target.exists():
        atomic_write_text(target, wanted)
    return home
