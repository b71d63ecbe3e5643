"""What the second turn of a ``--tools`` loop costs, with and without the prefix cache.

The embedded SmolLM2 (a ChatML model) is given the Hermes-style tool template
of the tiny models (``tool_templates.HERMES``: SmolLM2 writes ChatML, so only
the tools are new), a system prompt with a pasted document (``--context``
words) and three functions. Turn 1 answers with a call (a scripted answer,
through mlx-lm's real generation path); turn 2 reads the call and its result
and answers. Turn 2's prompt begins with turn 1's prompt and answer, so with
the prefix cache it reads only its new tokens. Each repetition empties the
caches first, so turn 1 is always read whole; on and off alternate.
On a GPU the prefix cache is looked up only for prompts of 2,048 tokens or
more (``worth_a_prefix_lookup``): give ``--context`` a few thousand words there.

    python benchmarks/tool_step_cost.py [--repetitions 1] [--context 100]

Measured on the shared 2-core CPU of the development machine (MLX's CPU backend
reads SmolLM2 at ~3.5 tokens/s there): turn 2's prompt of 596 tokens, 573 from
the cache, gave its first token in 6.3 s, against 145 s read whole (turn 1: 539
tokens).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as `python benchmarks/NAME.py`: import from the repository's root
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks.batch_throughput import collect
from mlx_magic.magics.tools import tool_of
from mlx_magic.models.resolve import embedded_spec
from mlx_magic.runtime.thread import ThreadRuntime
from mlx_magic.testing.scripted import forced_answers
from mlx_magic.testing.tiny_models.tool_templates import HERMES
from mlx_magic.vocabulary.tools import ToolUse
from mlx_magic.vocabulary.values import (
    GenerationRequest,
    ModelSpec,
    PrefixCacheSettings,
    SamplingParams,
)

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>'


def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def weather(city: str, unit: str = "celsius") -> str:
    """The weather in a city now.

    Args:
        city: the city's name
        unit: celsius or fahrenheit
    """
    return "sunny"


def search(query: str, limit: int = 5) -> list:
    """Search the notes.

    Args:
        query: what to look for
        limit: most results
    """
    return []


def tool_model(runtime: ThreadRuntime) -> ModelSpec:
    """A copy of the converted SmolLM2 folder whose chat template declares tools."""
    spec = embedded_spec()
    runtime.load(spec)  # converts the GGUF file once
    folder = Path(tempfile.mkdtemp(prefix="tool-step-")) / "smollm2-tools"
    shutil.copytree(spec.path, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = HERMES
    config_path.write_text(json.dumps(config))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return ModelSpec(name="smollm2+tools", key=str(folder), path=str(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--context", type=int, default=100, help="words of pasted document")
    args = parser.parse_args()
    runtime = ThreadRuntime(8 << 30)
    spec = tool_model(runtime)
    schemas = tuple(tool_of(f).schema for f in (add, weather, search))
    document = " ".join(
        f"Line {i}: the numbers in this report are small." for i in range(args.context // 8)
    )
    system = f"You answer questions about this report.\n\n{document}"

    def turns(cache: bool) -> dict:
        runtime.clear_caches()
        settings = PrefixCacheSettings(enabled=cache)
        first = GenerationRequest(
            model=spec,
            prompt="What is 2 + 3?",
            system=system,
            sampling=SamplingParams(max_tokens=64),
            prefix_cache=settings,
            tools=ToolUse(schemas),
        )
        with forced_answers(CALL):
            _, one = collect(runtime.generate(first))
        call = {"id": "call_1_0", "type": "function",
                "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}  # fmt: skip
        tool_turns = (
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1_0", "name": "add", "content": "5"},
        )
        second = GenerationRequest(
            model=spec,
            prompt="What is 2 + 3?",
            system=system,
            sampling=SamplingParams(max_tokens=16),
            prefix_cache=settings,
            tools=ToolUse(schemas, tool_turns),
        )
        with forced_answers("It is 5."):
            _, two = collect(runtime.generate(second))
        return {"first": one.stats, "second": two.stats}

    runs: dict[bool, list[dict]] = {True: [], False: []}
    for repetition in range(args.repetitions):
        for cache in (True, False) if repetition % 2 == 0 else (False, True):
            runs[cache].append(turns(cache))
    runtime.stop()
    print(f"{spec.name}: {args.repetitions} repetitions, on and off alternated")
    for cache in (True, False):
        seconds = [r["second"].ttft_s for r in runs[cache]]
        second = runs[cache][0]["second"]
        first = runs[cache][0]["first"]
        print(
            f"prefix cache {'on ' if cache else 'off'}: turn 1 prompt {first.prompt_tokens} tokens; "
            f"turn 2 prompt {second.prompt_tokens} tokens, {second.cached_prompt_tokens} from the "
            f"cache, {second.prompt_tokens - second.cached_prompt_tokens} read; turn 2 first token "
            f"median {statistics.median(seconds) * 1000:.0f} ms "
            f"({', '.join(f'{s * 1000:.0f}' for s in seconds)})"
        )


if __name__ == "__main__":
    main()
