"""Several models (or sampling settings) answering one prompt in columns.

``%%mlx -m A -m B`` compares models; several ``--temp`` or ``--seed`` values
on one model make a sampling sweep. The runtime advances the generations
together, token by token, so all columns stream at once.
"""

from __future__ import annotations

import argparse
import itertools

from IPython.core.error import UsageError

from mlx_magic.display.views import view_for, widgets_usable
from mlx_magic.errors import GenerationInterrupted
from mlx_magic.runtime.values import GenerationRequest

MAX_COLUMNS = 6


def variants_of(args) -> list:
    """One argument set per column: every model × temperature × seed given."""
    models = args.model or [None]
    temps = args.temp or [None]
    seeds = args.seed or [None]
    variants = []
    for model, temp, seed in itertools.product(models, temps, seeds):
        variant = argparse.Namespace(**vars(args))
        variant.model, variant.temp, variant.seed = model, temp, seed
        variants.append(variant)
    return variants


def column_title(request: GenerationRequest, variants) -> str:
    """The model, plus the settings that differ between columns."""
    parts = [request.model.name]
    if len({v.temp for v in variants}) > 1:
        parts.append(f"temp {request.sampling.temperature:g}")
    if len({v.seed for v in variants}) > 1:
        parts.append(f"seed {request.sampling.seed}")
    return " · ".join(parts)


def run_side_by_side(magics, variants, cell, resolve, images=()):
    """Several models (or sampling settings) on one prompt, in columns."""
    from mlx_magic.display.result import MLXResults
    from mlx_magic.display.streaming import stream_jobs

    first = variants[0]
    if first.chat is not None or first.background:
        raise UsageError(
            "Side by side (several -m, --temp or --seed) works without --chat and --background"
        )
    if len(variants) > MAX_COLUMNS:
        raise UsageError(
            f"{len(variants)} columns is more than {MAX_COLUMNS}: compare fewer "
            "models or settings at once"
        )
    requests = []
    for args in variants:
        request, out_name, _ = magics.build_request(
            args, cell, lambda args=args: resolve(args.model), images=images
        )
        requests.append(request)
    titles = [column_title(request, variants) for request in requests]
    in_kernel = widgets_usable(magics.shell)
    if images:
        view_for(magics.shell).show_images(images)
    if in_kernel:
        from mlx_magic.display.widget_view import ColumnsView

        columns = ColumnsView(titles)
        columns.display()
        views = columns.columns
    else:
        from mlx_magic.display.views import CollectingView

        views = [CollectingView() for _ in titles]
    jobs = magics.backend.generate_together(requests)
    outcomes = stream_jobs(jobs, views, interval_s=magics.stream_interval_ms / 1000)
    results = MLXResults()
    shown = []
    for title, outcome in zip(titles, outcomes):
        if hasattr(outcome, "result"):
            outcome.result.model = title
            results.append(outcome.result)
            magics.record_stats(outcome.result)
            shown.append((title, outcome.result.text, outcome.result.footer))
        else:
            shown.append((title, "", f"✖ {outcome.failure.message}"))
    if in_kernel:
        columns.finish(shown)
    else:
        for title, text, footer in shown:
            print(f"── {title} ──\n{text}\n[{footer}]")
    magics.shell.user_ns["_mlx"] = results
    if out_name:
        magics.shell.user_ns[out_name] = results
    if any(getattr(outcome, "interrupted", False) for outcome in outcomes):
        raise GenerationInterrupted("generation stopped; the partial answers are in _mlx")
    if not results:
        raise UsageError(f"Every column failed: {outcomes[0].failure.message}")
