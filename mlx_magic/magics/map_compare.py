"""``--map`` with several models (or temperatures, or seeds): every item runs
through every model, and the answers come back as one table.

Each model decodes all its items, batched, before the next one starts: a
model is loaded once, and the warm-model LRU keeps what fits the memory
budget. One progress bar counts model × item. Every check (the items, the
prompts, each model and flag) is made for every model before anything runs.
An interrupt keeps every finished answer of every model; ``--resume`` runs,
model by model, only what is left.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, Optional

from mlx_magic.display.compare_result import MLXCompareResult, scores_html, scores_text
from mlx_magic.display.map_view import MapProgress
from mlx_magic.errors import GenerationInterrupted, UserError
from mlx_magic.magics.drafts import NO_DRAFT
from mlx_magic.magics.map_run import MapPlan, in_background, plan_map, run_map, run_map_cell
from mlx_magic.magics.options import CellOptions
from mlx_magic.magics.run import MAX_COLUMNS
from mlx_magic.magics.session import Session


@dataclasses.dataclass
class ComparePlan:
    """Every model's checked ``--map`` plan, by the label its columns carry.

    ``plans[label]`` is ``None`` for a model ``--resume`` finds finished:
    its earlier table is kept as it is (``result.runs[label]``).
    """

    options: CellOptions
    plans: dict[str, Optional[MapPlan]]
    result: MLXCompareResult


def run_map_cells(
    session: Session, variants: list[CellOptions], text: str, resolve: Callable, *, vision: bool
) -> None:
    """A ``--map`` cell: of one model (:func:`run_map_cell`), or of several,
    each model's run checked first, then run one after the other (with
    ``-b``: on a helper thread, as one background job)."""
    if len(variants) == 1:
        return run_map_cell(session, variants[0], text, resolve, vision=vision)
    if len(variants) > MAX_COLUMNS:
        raise UserError(
            f"--map over {len(variants)} models or settings is more than {MAX_COLUMNS}: "
            "compare fewer at once"
        )
    variants = [dataclasses.replace(v, draft=NO_DRAFT) for v in variants]
    plan = plan_compare(session, variants, text, resolve, vision=vision)
    if plan is None:
        return
    if not variants[0].background:
        run_compare(session, plan)
        return
    label = f"--map {variants[0].map_items} × {len(plan.plans)} models"
    in_background(
        session,
        label,
        variants[0].out,
        lambda stop: run_compare(session, plan, stop=stop),
        plan.result,
    )
    return None


def plan_compare(
    session: Session,
    variants: list[CellOptions],
    text: str,
    resolve: Callable,
    *,
    vision: bool,
) -> Optional[ComparePlan]:
    """Each model's plan; ``None`` when ``--resume`` finds nothing left.

    Raises:
        UserError: what :func:`plan_map` refuses, for any model; two variants
            with the same label; ``--resume`` of a table with other models.
    """
    options = variants[0]
    labels = _labels(variants, resolve)
    if len(set(labels)) < len(labels):
        raise UserError("--map: two of the models or settings are the same; give each once")
    earlier = _earlier(session, options, labels) if options.resume else None
    plans: dict[str, Optional[MapPlan]] = {}
    result = MLXCompareResult(items_name=options.map_items or "")
    for label, variant in zip(labels, variants):
        kept = earlier.runs[label] if earlier is not None else None
        if kept is not None and not kept.unfinished():
            plans[label], result.runs[label] = None, kept
            continue
        # Each model's own table is not --out's: the joined one is.
        single = dataclasses.replace(variant, out=None, background=False)
        plan = plan_map(session, single, text, resolve, vision=vision, earlier=kept)
        assert plan is not None  # only --resume of a finished table plans nothing
        plans[label], result.runs[label] = plan, plan.result
    if all(plan is None for plan in plans.values()):
        _keep(session, options, result)
        print(
            f"[--resume: every model answered every item of {options.out or '_mlx'}; "
            "nothing left to run]"
        )
        _show_scores(session, result)
        return None
    return ComparePlan(options, plans, result)


def run_compare(
    session: Session, plan: ComparePlan, *, stop: Optional[threading.Event] = None
) -> MLXCompareResult:
    """Run each model's plan in turn under one progress bar.

    Raises:
        GenerationInterrupted: an interrupt (or ``stop``); every finished
            answer is kept, ``--resume`` runs the rest.
    """
    result, options = plan.result, plan.options
    started = time.perf_counter()
    total = sum(len(p.positions) for p in plan.plans.values() if p is not None)
    progress = MapProgress(
        total,
        notebook=getattr(session.shell, "kernel", None) is not None,
        description=f"--map {options.map_items} × {len(plan.plans)} models",
    )
    try:
        for label, model_plan in plan.plans.items():
            if model_plan is not None:
                result.runs[label] = run_map(session, model_plan, stop=stop, shared=progress)
    except (GenerationInterrupted, KeyboardInterrupt):
        left = sum(len(positions) for positions in result.unfinished().values())
        raise GenerationInterrupted(
            f"--map stopped: {left} of {len(result) * len(result.runs)} answers left; the "
            "table is in _mlx (--resume continues it)"
        ) from None
    finally:
        result.seconds = time.perf_counter() - started
        progress.close(result.summary)
        _keep(session, options, result)
    _show_scores(session, result)
    return result


def _labels(variants: list[CellOptions], resolve: Callable) -> list[str]:
    """The model's name, plus the temperature or seed where those differ."""
    labels = []
    for variant in variants:
        parts = [resolve(variant.model).name]
        if len({v.temperature for v in variants}) > 1:
            parts.append(f"temp {variant.temperature:g}")
        if len({v.seed for v in variants}) > 1:
            parts.append(f"seed {variant.seed}")
        labels.append(" · ".join(parts))
    return labels


def _earlier(session: Session, options: CellOptions, labels: list[str]) -> MLXCompareResult:
    name = options.out or "_mlx"
    earlier = session.shell.user_ns.get(name)
    if not isinstance(earlier, MLXCompareResult):
        raise UserError(
            f"--resume: {name} holds no --map table of several models to continue; run the "
            "cell first (with the same --out)"
        )
    if sorted(earlier.labels) != sorted(labels):
        raise UserError(
            f"--resume: {name} compares {', '.join(earlier.labels)}, not "
            f"{', '.join(labels)}: resume with the same models and settings"
        )
    return earlier


def _keep(session: Session, options: CellOptions, result: MLXCompareResult) -> None:
    session.shell.user_ns["_mlx"] = result
    if options.out:
        session.shell.user_ns[options.out] = result


def _show_scores(session: Session, result: MLXCompareResult) -> None:
    """The models' scores side by side, with a bar each (only with ``--score``)."""
    if all(score is None for score in result.scores.values()):
        return
    disagree = len(result.disagreements)
    text = scores_text(result.scores, disagree)
    if getattr(session.shell, "kernel", None) is not None:
        from IPython.display import display

        bundle = {"text/plain": text, "text/html": scores_html(result.scores, disagree)}
        display(bundle, raw=True)
    else:
        print(text, flush=True)
