"""Every sample as JSON: save, load, and merge a fresh run into kept results
(``--update``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from benchmarks.machine import machine, versions
from benchmarks.metrics import Metric, ScenarioResult
from benchmarks.scenarios import SCENARIOS


def save_json(results: Sequence[ScenarioResult], path) -> Path:
    """Every sample, as JSON (for a later look; the report is made from the same data)."""
    path = Path(path)
    data = {
        "machine": machine(),
        "versions": versions(),
        "results": [asdict(result) for result in results],
    }
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def load_json(path) -> list[ScenarioResult]:
    """The results :func:`save_json` wrote."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    results = []
    for item in data["results"]:
        metrics = [Metric(**metric) for metric in item.pop("metrics", [])]
        item["load"] = tuple(item.get("load", ()))
        results.append(ScenarioResult(**item, metrics=metrics))
    return results


def merge(fresh: Sequence[ScenarioResult], kept: Sequence[ScenarioResult]) -> list[ScenarioResult]:
    """The fresh results, and the kept ones of the scenarios not run again, in
    :data:`SCENARIOS` order."""
    by_name = {result.name: result for result in kept}
    by_name.update({result.name: result for result in fresh})
    return [by_name[name] for name in SCENARIOS if name in by_name]
