"""Restart & Run All with the disk cache: a long pasted document's question,
read cold, then in a fresh kernel (what a kernel restart leaves: no warm
model, no prefix cache in memory) from the disk.

Each kernel loads the model in its setup (``%mlx load``), so the cells time
the document, not the load. In the first kernel the document's question is
read from scratch (the disk folder is new and empty); its state is written
after the answer. Then, in fresh kernels: the same cell again (Restart & Run
All) and another question about the same document. Cells are timed from
sending the request to the answer's first text (as the frontend sees it);
``_mlx.stats.ttft_s`` is the runtime side. Greedy, so the same cell gives
the same tokens, which is checked.

    python benchmarks/disk_cache.py [--tokens 4096] [--model smollm2] [--min-tokens 1024]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.harness import DOCUMENT_QUESTIONS, Kernel, cell, long_document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096, help="the document's tokens")
    parser.add_argument("--model", default="smollm2", help="a model %%mlx -m takes")
    parser.add_argument("--min-tokens", type=int, default=1024, help="disk_cache_min_tokens")
    parser.add_argument("--max-tokens", type=int, default=8, help="-n of each answer")
    args = parser.parse_args()

    from mlx_lm import load

    from mlx_magic.models.resolve import embedded_spec

    path = embedded_spec().path if args.model == "smollm2" else args.model
    _, tokenizer = load(path)
    document = long_document(lambda text: len(tokenizer.encode(text)), args.tokens)
    folder = Path(tempfile.mkdtemp(prefix="disk-cache-bench-")) / "prompts"
    setup = (
        "%config MLXMagics.default_format = 'text'",
        f"%config MLXMagics.disk_cache_dir = {str(folder)!r}",
        f"%config MLXMagics.disk_cache_min_tokens = {args.min_tokens}",
        f"%mlx load {args.model}",
    )
    first = cell(
        "mlx", f"-m {args.model} -n {args.max_tokens}", f"{document}\n\n{DOCUMENT_QUESTIONS[0]}"
    )
    other = cell(
        "mlx", f"-m {args.model} -n {args.max_tokens}", f"{document}\n\n{DOCUMENT_QUESTIONS[1]}"
    )
    rows = []
    with Kernel(*setup) as kernel:
        cold = kernel.generate(first, timeout=3600)
        rows.append(("cold: the document read from scratch", cold))
        started = time.perf_counter()
        kernel.execute(f"%mlx load {args.model}")  # runs after the state is written
        written_s = time.perf_counter() - started
    files = sorted(folder.glob("*/*.safetensors"))
    with Kernel(*setup) as kernel:
        rows.append(("after a restart: the same cell", kernel.generate(first, timeout=3600)))
    with Kernel(*setup) as kernel:
        rows.append(("after a restart: another question", kernel.generate(other, timeout=3600)))
    print(f"model {args.model}, document {cold.stats['prompt_tokens']} prompt tokens")
    print(
        f"on disk: {len(files)} file(s), {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB; "
        f"the write after the answer ended within {written_s:.2f} s of it"
    )
    print("| cell | first text (frontend) | ttft_s (runtime) | ÷ cold | prompt tokens from disk |")
    print("| --- | --- | --- | --- | --- |")
    for label, result in rows:
        stats = result.stats
        print(
            f"| {label} | {result.first_text_s:.2f} s | {stats['ttft_s']:.2f} s | "
            f"{result.first_text_s / cold.first_text_s:.3f} | "
            f"{stats['disk_prompt_tokens']} of {stats['prompt_tokens']} |"
        )
    same = rows[1][1].stats["token_ids"] == cold.stats["token_ids"]
    print(f"same cell, same tokens after the restart: {same}")


if __name__ == "__main__":
    main()
