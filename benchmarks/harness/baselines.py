"""The baselines, in this process: raw ``mlx_lm.stream_generate``
(:class:`InProcessText`) and ``mlx_vlm.stream_generate`` (:class:`InProcessVision`),
greedy, with the prompt token ids the magic would send."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, cast

from benchmarks.harness.errors import BenchError


def _sampler():
    from mlx_lm.sample_utils import make_sampler

    return make_sampler(temp=0.0)


class InProcessText:
    """Raw ``mlx_lm.stream_generate`` on a model loaded in this process."""

    def __init__(self, path: Path):
        from mlx_lm import load

        from mlx_magic.locking import gpu_lock

        self.path = path
        with gpu_lock:
            # Without return_config, load returns (model, tokenizer).
            self.model, self.tokenizer = load(str(path))[:2]

    def prompt_ids(
        self, prompt: str, *, raw: bool = False, system: Optional[str] = None, history=()
    ) -> list[int]:
        from mlx_magic.engine.text_generation import prompt_token_ids
        from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

        request = GenerationRequest(
            model=ModelSpec("baseline", "baseline", str(self.path)),
            prompt=prompt,
            raw=raw,
            system=system,
            history=tuple(history),
        )
        return prompt_token_ids(self.tokenizer, request)

    def generate(
        self, prompt: str, max_tokens: int, *, raw: bool = False, system: Optional[str] = None
    ) -> dict:
        """Greedy; times the prompt's tokenisation, the prefill and every token."""
        import mlx.core as mx
        from mlx_lm import stream_generate

        from mlx_magic.locking import gpu_lock

        with gpu_lock:
            started = time.perf_counter()
            ids = self.prompt_ids(prompt, raw=raw, system=system)
            first = None
            tokens = []
            last = None
            for response in stream_generate(
                self.model, self.tokenizer, mx.array(ids), max_tokens=max_tokens, sampler=_sampler()
            ):
                if first is None:
                    first = time.perf_counter()
                last = response
                if response.finish_reason != "stop":
                    tokens.append(int(response.token))
            ended = time.perf_counter()
        if first is None or last is None:
            raise BenchError(f"mlx_lm.stream_generate gave no token ({self.path})")
        return {
            "ttft_s": first - started,
            "generation_tps": last.generation_tps,
            "prompt_tokens": len(ids),
            "prompt_tps": last.prompt_tps,
            "token_ids": tokens,
            "finish_reason": last.finish_reason,
            "wall_s": ended - started,
        }


class InProcessVision:
    """Raw ``mlx_vlm.stream_generate`` on a model loaded in this process."""

    def __init__(self, path: Path):
        from mlx_vlm import load
        from mlx_vlm.utils import load_config

        from mlx_magic.locking import gpu_lock

        with gpu_lock:
            self.model, self.processor = load(str(path))
            self.config = load_config(str(path))

    def generate(self, prompt: str, image: Path, max_tokens: int) -> dict:
        from mlx_vlm import stream_generate
        from mlx_vlm.prompt_utils import apply_chat_template

        from mlx_magic.locking import gpu_lock

        with gpu_lock:
            started = time.perf_counter()
            # Given one prompt string (no return_messages), the template's text.
            text = cast(str, apply_chat_template(self.processor, self.config, prompt, num_images=1))
            first = None
            last = None
            for response in stream_generate(
                self.model,
                self.processor,
                text,
                image=[str(image)],
                max_tokens=max_tokens,
                temperature=0.0,
            ):
                if first is None:
                    first = time.perf_counter()
                last = response
        if first is None or last is None:
            raise BenchError("mlx_vlm.stream_generate gave no token")
        return {"ttft_s": first - started, "prompt_tokens": last.prompt_tokens}
