"""The estimator against peaks measured on an H200 (BENCHMARKS.md): every point within 15%."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuitune.bench.shapes import SHAPES
from tuitune.fit import estimate

DATA = json.loads((Path(__file__).parent / "h200_peaks.json").read_text())
# Points of kernels that have since changed stay in the file, marked `superseded`, and are not held.
POINTS = [p for p in DATA["points"] if not p.get("superseded")]


def _id(p: dict) -> str:
    return f"{p['shape']}-{p['method']}-{p['path']}-{p['checkpointing']}-b{p['batch']}x{p['seq']}"


def _estimate(p: dict) -> float:
    # written out here (not via tuitune.bench.calibrate.estimate_for) so the test pins the rule too
    fused = p["path"] == "tuitune" and str(p.get("kernels")).startswith("applied")
    return estimate(SHAPES[p["shape"]].model_spec(), p["method"], batch=p["batch"], seq=p["seq"], rank=p["rank"],
                    checkpointing=p["checkpointing"], fused_loss=fused).total_gb


def test_markdown_table_lists_every_point():
    from tuitune.bench.calibrate import markdown_table

    table = markdown_table(POINTS).splitlines()
    assert len(table) == len(POINTS) + 2 and table[0].startswith("| shape |")


def test_enough_calibration_points():
    assert len({(p["shape"], p["method"], p["batch"] * p["seq"]) for p in POINTS}) >= 4


@pytest.mark.parametrize("point", POINTS, ids=_id)
def test_estimate_within_15_percent_of_measured_peak(point):
    measured = point["measured_peak_gb"]
    assert _estimate(point) == pytest.approx(measured, rel=0.15)
