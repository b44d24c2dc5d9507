"""SCIMAP phenotype workflows compiled to a rule `.sql` file of the project's rule-file contract.

A lab that already gates with SCIMAP keeps its workflow CSV and gates table; the compiled file
gives the same labels as SCIMAP's `rescale` + `phenotype_cells`, in DuckDB. Semantics, as
documented by SCIMAP: per slide (image) and marker, x = ln(1 + intensity); the gate snaps to the
slide's value nearest to it, c; values up to c map linearly onto [0, 0.5] and values above onto
[0.5, 1] (min-max within each side). A phenotype's score is the mean over its scored categories
(pos: mean x; neg: mean 1-x; anypos: max x; anyneg: max 1-x; allpos: max x, 0 when any x < 0.5,
plus 0.01; allneg likewise on 1-x). A cell takes its group's best phenotype (first on ties), or
'<group>-rest' when every score is below 0.5; 'likely-' marks a pos/neg winner with more than
one marker of which one disagrees. Groups run in CSV order on the cells their parent labelled;
the final label is the deepest non-rest label, or 'Unknown'.

Contract of the compiled file: it reads `nucleus_features(nucleus_id, slide_id, mean_<key>...)`
and creates `nucleus_cell_type(nucleus_id, cell_type, excluded_at_step)` (excluded_at_step is
always NULL) and `cell_type_hierarchy(cell_type, class_index, compartment, lineage)`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import StainError
from pipelines.stains import canonical_stain, stain_key
from pipelines.thresholds import MEAN_PREFIX
from storage.sql_quote import quote_identifier, quote_literal

CATEGORIES = ("pos", "neg", "anypos", "anyneg", "allpos", "allneg")


@dataclass(frozen=True)
class Phenotype:
    """One workflow row: its group (parent), name, and markers per category in column order."""

    row: int
    group: str
    name: str
    markers: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class CompiledWorkflow:
    """The rule SQL, the canonical stains it reads, and every label it can give."""

    sql: str
    stains: tuple[str, ...]
    labels: tuple[str, ...]


def read_workflow(path: Path) -> list[Phenotype]:
    """The workflow CSV's rows, checked: known categories, named phenotypes, known parents."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or len(rows[0]) < 3:
        raise StainError(f"{path}: not a SCIMAP workflow (group, phenotype, marker columns).")
    markers = [m.strip() for m in rows[0][2:]]
    out: list[Phenotype] = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        group, name = row[0].strip(), row[1].strip()
        if not group or not name:
            raise StainError(f"{path} row {number}: group and phenotype name must both be given.")
        by_category: dict[str, list[str]] = {c: [] for c in CATEGORIES}
        for marker, cell in zip(markers, row[2:], strict=False):
            value = cell.strip()
            if not value:
                continue
            if value not in by_category:
                raise StainError(
                    f"{path} row {number} ({name}): unknown category {value!r} for marker "
                    f"{marker}; use one of {', '.join(CATEGORIES)}."
                )
            by_category[value].append(marker)
        if not any(by_category.values()):
            raise StainError(f"{path} row {number} ({name}): the phenotype names no marker.")
        out.append(Phenotype(number, group, name, {c: tuple(v) for c, v in by_category.items()}))
    if not out:
        raise StainError(f"{path}: the workflow has no phenotype rows.")
    names = [p.name for p in out]
    first_group = out[0].group
    defined: set[str] = set()
    seen_groups: list[str] = []
    for p in out:
        if names.count(p.name) > 1:
            raise StainError(f"{path} row {p.row}: phenotype {p.name!r} is defined twice.")
        if p.group not in seen_groups:
            seen_groups.append(p.group)
            if p.group != first_group and p.group not in defined:
                raise StainError(
                    f"{path} row {p.row}: parent phenotype {p.group!r} is never defined in an "
                    "earlier row; define it first or fix the name."
                )
        defined.add(p.name)
    return out


def read_gates(path: Path) -> dict[str | None, dict[str, float]]:
    """Gates per slide (image column) or for every slide (key None, column 'gates')."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or len(rows[0]) < 2:
        raise StainError(f"{path}: a gates table needs a markers column and gate column(s).")
    header = [h.strip() for h in rows[0]]
    images: list[str | None] = [None if h == "gates" else h for h in header[1:]]
    gates: dict[str | None, dict[str, float]] = {i: {} for i in images}
    for number, row in enumerate(rows[1:], start=2):
        marker = row[0].strip()
        for image, cell in zip(images, row[1:], strict=False):
            if cell.strip():
                try:
                    gates[image][marker] = float(cell)
                except ValueError:
                    raise StainError(
                        f"{path} row {number}: gate {cell!r} is not a number."
                    ) from None
    return gates


def _score_sql(p: Phenotype, value: dict[str, str]) -> str:
    terms = []
    m = p.markers
    if m["pos"]:
        terms.append("((" + " + ".join(value[k] for k in m["pos"]) + f") / {len(m['pos'])})")
    if m["neg"]:
        terms.append(
            "((" + " + ".join(f"(1 - {value[k]})" for k in m["neg"]) + f") / {len(m['neg'])})"
        )
    if m["anypos"]:
        terms.append("greatest(" + ", ".join(value[k] for k in m["anypos"]) + ")")
    if m["anyneg"]:
        terms.append("greatest(" + ", ".join(f"(1 - {value[k]})" for k in m["anyneg"]) + ")")
    if m["allpos"]:
        ks = m["allpos"]
        low = " OR ".join(f"{value[k]} < 0.5" for k in ks)
        terms.append(
            f"(CASE WHEN {low} THEN 0 ELSE greatest({', '.join(value[k] for k in ks)}) END + 0.01)"
        )
    if m["allneg"]:
        ks = m["allneg"]
        low = " OR ".join(f"(1 - {value[k]}) < 0.5" for k in ks)
        terms.append(
            f"(CASE WHEN {low} THEN 0 ELSE greatest("
            f"{', '.join(f'(1 - {value[k]})' for k in ks)}) END + 0.01)"
        )
    return "((" + " + ".join(terms) + f") / {len(terms)})"


def _group_label_sql(group: str, members: list[Phenotype], value: dict[str, str]) -> str:
    scores = [_score_sql(p, value) for p in members]
    best = "greatest(" + ", ".join(scores) + ")" if len(scores) > 1 else scores[0]
    picks = []
    for p, s in zip(members, scores, strict=True):
        fails = []
        if len(p.markers["pos"]) > 1:
            fails += [f"{value[k]} < 0.5" for k in p.markers["pos"]]
        if len(p.markers["neg"]) > 1:
            fails += [f"{value[k]} > 0.5" for k in p.markers["neg"]]
        name = quote_literal(p.name)
        likely = quote_literal("likely-" + p.name)
        label = f"CASE WHEN {' OR '.join(fails)} THEN {likely} ELSE {name} END" if fails else name
        picks.append(f"WHEN {s} = {best} THEN {label}")
    return (
        f"CASE WHEN {best} < 0.5 THEN {quote_literal(group + '-rest')} " + " ".join(picks) + " END"
    )


def compile_workflow(
    workflow_csv: Path, gates_csv: Path, data_stains: list[str] | None = None
) -> CompiledWorkflow:
    """The rule SQL for this workflow and gates; `data_stains` (if given) must hold every marker."""
    phenotypes = read_workflow(workflow_csv)
    gates = read_gates(gates_csv)
    used: list[str] = []
    for p in phenotypes:
        for ks in p.markers.values():
            for k in ks:
                if k not in used:
                    used.append(k)
    keys = {m: stain_key(canonical_stain(m)) for m in used}
    data_keys = (
        None if data_stains is None else {stain_key(canonical_stain(s)) for s in data_stains}
    )
    for p in phenotypes:
        for ks in p.markers.values():
            for k in ks:
                if data_keys is not None and keys[k] not in data_keys:
                    raise StainError(
                        f"{workflow_csv} row {p.row} ({p.name}): marker {k} is not in the data "
                        f"(stains: {sorted(data_keys)}); rename the column or add the stain."
                    )
                if not any(k in g for g in gates.values()):
                    raise StainError(
                        f"{workflow_csv} row {p.row} ({p.name}): marker {k} has no gate in "
                        f"{gates_csv}; add a row for it."
                    )
    value = {m: f"s.{quote_identifier('x_' + keys[m])}" for m in used}
    gate_rows = [
        f"({'NULL' if image is None else quote_literal(image)}, {quote_literal(keys[m])}, "
        f"{g!r}::DOUBLE)"
        for image, table in gates.items()
        for m, g in table.items()
        if m in keys
    ]
    # log values per marker
    log_cols = ",\n        ".join(
        f"ln(1 + f.{quote_identifier(MEAN_PREFIX + keys[m])}::DOUBLE) AS "
        f"{quote_identifier('l_' + keys[m])}"
        for m in used
    )
    # snapped gate and ranges per slide and marker
    stats = []
    for m in used:
        k, lk = keys[m], quote_identifier("l_" + keys[m])
        gate = f"gate_{k}"
        stats.append(
            f"min({lk}) AS {quote_identifier('lo_' + k)}, "
            f"max({lk}) AS {quote_identifier('hi_' + k)}, "
            f"arg_min({lk}, abs({lk} - {quote_identifier(gate)})) AS {quote_identifier('c_' + k)}, "
            f"any_value({quote_identifier(gate)}) AS {quote_identifier('g_' + k)}"
        )
    scaled = []
    for m in used:
        k = keys[m]
        lv, lo, hi, c, g = (quote_identifier(p + k) for p in ("l_", "lo_", "hi_", "c_", "g_"))
        low_scale = f"(0.5 / CASE WHEN r.{c} - r.{lo} = 0 THEN 1 ELSE r.{c} - r.{lo} END)"
        high_scale = f"(0.5 / CASE WHEN r.{hi} - r.{c} = 0 THEN 1 ELSE r.{hi} - r.{c} END)"
        scaled.append(
            f"CASE WHEN r.{g} IS NULL THEN error('slide ' || l.slide_id || "
            f"' has no gate for marker {k}; add it to the gates table') "
            f"WHEN l.{lv} <= r.{c} THEN l.{lv} * {low_scale} + (0 - r.{lo} * {low_scale}) "
            f"ELSE l.{lv} * {high_scale} + (0.5 - r.{c} * {high_scale}) END "
            f"AS {quote_identifier('x_' + k)}"
        )
    gate_wide = ", ".join(
        f"coalesce((SELECT gate FROM scimap_gates AS g WHERE g.slide_id = s.slide_id "
        f"AND g.stain_key = {quote_literal(keys[m])}), (SELECT gate FROM scimap_gates AS g "
        f"WHERE g.slide_id IS NULL AND g.stain_key = {quote_literal(keys[m])})) AS "
        f"{quote_identifier('gate_' + keys[m])}"
        for m in used
    )
    groups: list[str] = []
    for p in phenotypes:
        if p.group not in groups:
            groups.append(p.group)
    label_cols = []
    for i, group in enumerate(groups):
        members = [p for p in phenotypes if p.group == group]
        expr = _group_label_sql(group, members, value)
        if i == 0:
            label_cols.append(expr)
        else:
            parents = [f"g{j}" for j in range(i)]
            cond = " OR ".join(f"{pj} = {quote_literal(group)}" for pj in parents)
            label_cols.append(f"CASE WHEN {cond} THEN {expr} END")
    chain = []
    for i, expr in enumerate(label_cols):
        chain.append(
            f"level{i} AS (SELECT s.*, {expr} AS g{i} "
            f"FROM {'scaled AS s' if i == 0 else f'level{i - 1} AS s'})"
        )
    final = (
        "coalesce("
        + ", ".join(
            f"CASE WHEN g{i} NOT LIKE '%-rest' THEN g{i} END" for i in reversed(range(len(groups)))
        )
        + ", 'Unknown')"
    )
    labels: list[str] = []
    for p in phenotypes:
        labels.append(p.name)
        if len(p.markers["pos"]) > 1 or len(p.markers["neg"]) > 1:
            labels.append("likely-" + p.name)
    labels.append("Unknown")
    hierarchy = ",\n    ".join(f"({quote_literal(n)}, {i})" for i, n in enumerate(labels))
    sql = f"""-- Compiled from the SCIMAP phenotype workflow {workflow_csv.name}
-- and gates {gates_csv.name}
-- by pipelines/scimap_workflow.py; do not edit, recompile.
-- Reads nucleus_features(nucleus_id, slide_id, {", ".join(MEAN_PREFIX + keys[m] for m in used)}).
-- Creates nucleus_cell_type(nucleus_id, cell_type, excluded_at_step) and cell_type_hierarchy.

CREATE OR REPLACE TABLE scimap_gates AS
SELECT * FROM (VALUES {", ".join(gate_rows)}) AS g(slide_id, stain_key, gate);

CREATE OR REPLACE VIEW nucleus_cell_type AS
WITH logged AS (
    SELECT f.nucleus_id, f.slide_id,
        {log_cols}
    FROM nucleus_features AS f
),
slide_gates AS (
    SELECT s.slide_id, {gate_wide}
    FROM (SELECT DISTINCT slide_id FROM nucleus_features) AS s
    GROUP BY s.slide_id
),
ranges AS (
    SELECT l.slide_id, {", ".join(stats)}
    FROM logged AS l LEFT JOIN slide_gates AS sg ON sg.slide_id = l.slide_id
    GROUP BY l.slide_id
),
scaled AS (
    SELECT l.nucleus_id, l.slide_id, {", ".join(scaled)}
    FROM logged AS l JOIN ranges AS r ON r.slide_id = l.slide_id
),
{", ".join(chain)}
SELECT nucleus_id, {final} AS cell_type, CAST(NULL AS SMALLINT) AS excluded_at_step
FROM level{len(groups) - 1};

CREATE OR REPLACE TABLE cell_type_hierarchy AS
SELECT CAST(cell_type AS VARCHAR) AS cell_type, CAST(class_index AS SMALLINT) AS class_index,
    CAST(NULL AS VARCHAR) AS compartment, CAST(NULL AS VARCHAR) AS lineage
FROM (VALUES
    {hierarchy}
) AS h(cell_type, class_index);
"""
    return CompiledWorkflow(
        sql=sql, stains=tuple(canonical_stain(m) for m in used), labels=tuple(labels)
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m pipelines.scimap_workflow WORKFLOW.csv GATES.csv OUT.sql`: compile and write
    the rule file atomically, ready for the catalog's `rules_sql` setting."""
    import argparse

    from storage.atomic import atomic_write_text

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("workflow", type=Path)
    parser.add_argument("gates", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    compiled = compile_workflow(args.workflow, args.gates)
    atomic_write_text(args.out, compiled.sql)
    print(f"{args.out}: {len(compiled.labels)} labels from stains {', '.join(compiled.stains)}")


if __name__ == "__main__":
    main()
