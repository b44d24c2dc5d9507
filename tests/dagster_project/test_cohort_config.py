"""`nucleus-subtyping run --config`: a validated cohort file, and the MIBI example end to end."""

import json
from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.cohort_config import CohortConfigError, load_cohort_config, run_config
from dagster_project.resources import DATA_ROOT_ENV

PROJECT = Path(__file__).resolve().parents[2]
MIBI_EXAMPLE = PROJECT / "docs" / "examples" / "mibi_dcis" / "cohort.yaml"
MIBI_DATA = PROJECT.parent / "shared" / "data" / "real_mibi_dcis"


def _write(folder: Path, text: str) -> Path:
    (folder / "slides.csv").write_text("slide_id,path\n")
    path = folder / "cohort.yaml"
    path.write_text(text)
    return path


def test_relative_paths_are_read_from_the_config_folder(tmp_path: Path) -> None:
    config = load_cohort_config(_write(tmp_path, "manifest: slides.csv\ndata_root: out\n"
                                                 "segmentation: {nuclear_stains: [HH3, Nuc]}\n"))
    assert config.manifest == str(tmp_path / "slides.csv")
    assert config.data_root == str(tmp_path / "out")
    dagster = run_config(config)
    assert dagster["ops"]["nucleus_mask"]["config"]["nuclear_stains"] == ["HH3", "Nuc"]
    assert dagster["resources"]["slide_inputs"]["config"]["manifest_path"] == config.manifest
    assert dagster["resources"]["label_settings"]["config"]["catalog_rules_sql"] == \
        "cell_type_rules.sql"


@pytest.mark.parametrize(("text", "expected"), [
    ("manifest: slides.csv\nsegmentaton: {}\n",
     ["segmentaton: unknown key", "allowed keys here: manifest, data_root"]),
    ("manifest: slides.csv\nsegmentation: {backend: cellpose}\n",
     ["segmentation.backend", "'watershed'", "'mesmer-onnx'"]),
    ("manifest: slides.csv\nlabels: {auto_method: otsu}\n",
     ["labels.auto_method", "'gmm2_log1p'", "'otsu_log1p'"]),
    ("manifest: slides.csv\ntraining: {overrides: {stepz: 5}}\n",
     ["training.overrides", "stepz", "batch_size"]),
    ("manifest: slides.csv\nvirtual_he: {tile: 5}\n",
     ["virtual_he.tile: unknown key", "backend, missing_stains"]),
    ("data_root: out\n", ["manifest: Field required"]),
    ("manifest: nowhere.csv\n", ["manifest names", "nowhere.csv", "does not exist"]),
    ("manifest: slides.csv\nlabels: {thresholds_csv: t.csv}\n", ["labels.thresholds_csv", "t.csv"]),
    ("manifest: slides.csv\nlabels: {rule_file: rules/none.sql}\n", ["labels.rule_file",
                                                                      "rules/none.sql"]),
    ("- a list\n", ["must be a mapping"]),
])
def test_bad_cohort_files_name_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(CohortConfigError) as caught:
        load_cohort_config(path)
    message = str(caught.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_a_missing_cohort_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "--config", str(tmp_path / "cohort.yaml")]) == 2
    assert f"Cohort config {tmp_path / 'cohort.yaml'} does not exist" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not MIBI_DATA.is_dir(), reason="../shared/data/real_mibi_dcis is absent")
def test_the_mibi_example_runs_to_the_catalog_with_the_mibi_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = load_cohort_config(MIBI_EXAMPLE)
    # The worked example of docs/real-slides.md, with its outputs in a temporary folder.
    config = tmp_path / "cohort.yaml"
    config.write_text(json.dumps({
        "manifest": example.manifest, "data_root": str(tmp_path / "out"),
        "segmentation": example.segmentation.model_dump(),
        "labels": example.labels.model_dump(), "virtual_he": example.virtual_he.model_dump(),
        "run": example.run.model_dump()}))
    # `run` points both at the cohort's data root; monkeypatch puts them back afterwards.
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "out"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["run", "--config", str(config)]) == 0
    with duckdb.connect(str(tmp_path / "out" / "catalog.duckdb"), read_only=True) as con:
        per_slide = dict(con.sql("SELECT slide_id, count(*) FROM nucleus_features "
                                 "GROUP BY slide_id").fetchall())
        classes = {row[0] for row in con.sql(
            "SELECT DISTINCT cell_type FROM cell_type_counts_per_slide WHERE n_nuclei > 0"
        ).fetchall()}
    assert set(per_slide) == {"Point2203_pt1072", "Point2206_pt1116"}
    assert all(n > 50 for n in per_slide.values()), per_slide
    # The MIBI breast panel's classes, not Table 1's colon classes.
    assert {"epithelial", "macrophage", "t_cell"} <= classes
    assert "myoepithelial" in classes and "goblet" not in classes


@pytest.mark.parametrize(("text", "expected"), [
    ("resources: {}\n", "unknown top-level key(s) resources; only `ops` is read"),
    ("ops: [\n", "is not valid YAML"),
])
def test_demo_run_config_file_is_checked(tmp_path: Path, text: str, expected: str) -> None:
    from dagster_project.cli import read_op_config

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as caught:
        read_op_config(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)
