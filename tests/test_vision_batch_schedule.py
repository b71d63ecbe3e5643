"""A vision --map's batch against mlx-vlm's own ``batch_generate``: the same calls.

The engine's vision batch run (:mod:`mlx_magic.engine.vision_batch_generation`)
streams every row as its own job; it must not cost more model calls than
mlx-vlm's ``batch_generate`` on the same items: the items inserted together
go through the vision tower in one call (as the library sends its batch), and
the language model takes the same forward passes.
"""

import importlib

import numpy as np
import pytest
from PIL import Image
from test_batch_schedule import run_batch as run_jobs

from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import (
    GenerationRequest,
    ModelSpec,
    SamplingParams,
)

pytestmark = pytest.mark.vision

ar = importlib.import_module("mlx_vlm.generate.ar")
PROMPT = "Describe this picture in one sentence."


@pytest.fixture(scope="module")
def warm(tiny_vlm):
    from mlx_magic.engine.loading import load_warm_model

    spec = ModelSpec(name="tiny-vlm", key=str(tiny_vlm), path=str(tiny_vlm), kind="vision")
    return spec, load_warm_model(spec)


@pytest.fixture
def calls(monkeypatch, warm):
    """The vision tower's calls (items in each) and the language model's
    forward passes (rows in each, prompt and decoding), observed, not changed."""
    seen: dict[str, list] = {"vision": [], "prefill": [], "decode": []}
    model_class = type(warm[1].model)
    embed = model_class.get_input_embeddings

    def counted_embed(self, input_ids=None, *args, **kwargs):
        seen["vision"].append(int(input_ids.shape[0]))
        return embed(self, input_ids, *args, **kwargs)

    def counting(key, original):
        def counted(self, *args, **kwargs):
            seen[key].append(len(self.uids))
            return original(self, *args, **kwargs)

        return counted

    monkeypatch.setattr(model_class, "get_input_embeddings", counted_embed)
    monkeypatch.setattr(
        ar.PromptProcessingBatch,
        "prompt_step",
        counting("prefill", ar.PromptProcessingBatch.prompt_step),
    )
    monkeypatch.setattr(ar.GenerationBatch, "_step", counting("decode", ar.GenerationBatch._step))
    return seen


def pictures(sizes):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def vision_jobs(spec, images, batch_size, lengths):
    return [
        Job(
            GenerationRequest(
                model=spec,
                prompt=PROMPT,
                sampling=SamplingParams(max_tokens=n),
                images=(image,),
                batch_size=batch_size,
            )
        )
        for image, n in zip(images, lengths)
    ]


def run_batch(warm, images, batch_size, max_tokens=6):
    spec, model = warm
    return run_jobs(model, vision_jobs(spec, images, batch_size, [max_tokens] * len(images)))


def test_a_vision_map_makes_the_calls_of_batch_generate(warm, calls):
    import mlx_vlm

    images = pictures([(48, 48)] * 8)
    ids, ends = run_batch(warm, images, batch_size=4)
    ours = {key: list(value) for key, value in calls.items()}
    for value in calls.values():
        value.clear()
    model = warm[1]
    for start in (0, 4):  # batch_generate decodes what it is given as one batch
        mlx_vlm.batch_generate(
            model.model,
            model.tokenizer,
            images=images[start : start + 4],
            prompts=[PROMPT] * 4,
            max_tokens=6,
        )
    # One vision-tower call per batch of 4 items, not one per item.
    assert ours["vision"] == calls["vision"] == [4, 4]
    assert ours["prefill"] == calls["prefill"]
    assert ours["decode"] == calls["decode"]
    assert all(end.finish_reason == "length" for end in ends)
    # Greedy: token for token the answers of one item at a time.
    alone, _ = run_batch(warm, images, batch_size=1)
    assert ids == alone


def test_items_of_other_sizes_are_embedded_in_their_own_calls(warm, calls):
    images = pictures([(48, 48), (64, 40), (48, 48), (64, 40), (48, 48)])
    ids, ends = run_batch(warm, images, batch_size=5)
    assert sorted(calls["vision"]) == [2, 3]
    alone, _ = run_batch(warm, images, batch_size=1)
    assert ids == alone and all(len(row) == 6 for row in ids)


def test_a_freed_slot_takes_the_next_item_in_the_step_that_freed_it(warm, calls):
    # Answers of different lengths: slots free at different steps.
    lengths = [3, 8, 5, 8, 4, 6, 2, 7]
    spec, model = warm
    images = pictures([(48, 48)] * len(lengths))
    _, ends = run_jobs(model, vision_jobs(spec, images, 3, lengths))
    assert [end.stats.generation_tokens for end in ends] == lengths
    assert all(end.stats.ttft_s > 0 for end in ends)
    # Each freed slot costs one pass with a row missing (the next item's prompt
    # is read in the step that freed it, its first token in the next): 20
    # passes for these 43 tokens; refilled a step late, it took 22.
    assert sum(calls["decode"]) == sum(lengths)
    assert len(calls["decode"]) == 20
