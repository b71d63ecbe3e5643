"""``python -m benchmarks.gpu.disk_probe MODEL``: where a restart's time goes when
a long prompt's KV state is read back from the disk cache.

``benchmarks/disk_cache.py`` times the cells as a user sees them; this splits
them, with mlx-lm alone and no kernel, each phase in a fresh process (what a
restart leaves). Phase ``cold``: the document (``--tokens`` random ids, all but
the last) read in prefill chunks of 2,048, then the first answer token; then
the same again in the same process, where every kernel is compiled already;
the state is written as the disk cache writes it. Phase ``restart``: the
state read back (``load_prompt_cache``, evaluated: the disk and the host to
device copy), then the first answer token from it; then both again in the same
process. The difference between the first and second time of a phase is what
compiling the kernels costs in a fresh process.

::

    python -m benchmarks.gpu.disk_probe MODEL [--tokens 16384] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

CHUNK = 2048


def _state_arrays(cache: list[Any]) -> list[Any]:
    return [array for layer in cache for array in layer.state if array is not None]


def _first_token(model: Any, cache: list[Any], last: int) -> float:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    started = time.perf_counter()
    token, _ = next(generate_step(mx.array([last]), model, prompt_cache=cache, max_tokens=1))
    int(token)
    return time.perf_counter() - started


def cold(model_path: str, tokens: int, folder: Path) -> dict:
    import mlx.core as mx
    import numpy as np
    from mlx_lm import load
    from mlx_lm.models.cache import make_prompt_cache, save_prompt_cache

    from mlx_magic.engine.disk_cache import _compact

    model, tokenizer = load(model_path)
    ids = np.random.default_rng(0).integers(100, tokenizer.vocab_size - 100, tokens).tolist()
    row: dict = {"phase": "cold", "tokens": tokens}
    for attempt in ("first", "again"):
        cache = make_prompt_cache(model)
        started = time.perf_counter()
        for start in range(0, tokens - 1, CHUNK):
            model(mx.array(ids[start : min(start + CHUNK, tokens - 1)])[None], cache=cache)
            mx.eval(_state_arrays(cache))
        row[f"prefill_s_{attempt}"] = round(time.perf_counter() - started, 3)
        row[f"first_token_s_{attempt}"] = round(_first_token(model, cache, ids[-1]), 3)
    cache = make_prompt_cache(model)
    for start in range(0, tokens - 1, CHUNK):
        model(mx.array(ids[start : min(start + CHUNK, tokens - 1)])[None], cache=cache)
        mx.eval(_state_arrays(cache))
    path = folder / "state.safetensors"
    save_prompt_cache(str(path), _compact(cache), {"last": str(ids[-1])})
    row["state_mib"] = round(path.stat().st_size / 2**20, 1)
    return row


def restart(model_path: str, folder: Path) -> dict:
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.models.cache import load_prompt_cache

    model, _ = load(model_path)
    path = folder / "state.safetensors"
    row: dict = {"phase": "restart"}
    for attempt in ("first", "again"):
        started = time.perf_counter()
        cache, about = load_prompt_cache(str(path), return_metadata=True)
        mx.eval(_state_arrays(cache))
        row[f"read_s_{attempt}"] = round(time.perf_counter() - started, 3)
        row[f"first_token_s_{attempt}"] = round(_first_token(model, cache, int(about["last"])), 3)
    return row


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.disk_probe")
    parser.add_argument("model")
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--folder", default="/tmp/mlx-magic-disk-probe")
    parser.add_argument("--phase", choices=["cold", "restart"], help="(one phase, in this process)")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    if args.phase == "cold":
        print(json.dumps(cold(args.model, args.tokens, folder)), flush=True)
        return 0
    if args.phase == "restart":
        print(json.dumps(restart(args.model, folder)), flush=True)
        return 0
    for phase in ("cold", "restart"):  # each in a fresh process, as a restart leaves it
        command = [sys.executable, "-m", "benchmarks.gpu.disk_probe", args.model]
        command += ["--tokens", str(args.tokens), "--folder", str(folder), "--phase", phase]
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
