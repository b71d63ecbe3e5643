"""--map's batch against mlx-lm's own ``batch_generate``: the same forward passes.

The engine's batch run (:mod:`mlx_magic.engine.batch_generation`) streams
every row as its own job; what it adds to mlx-lm's ``BatchGenerator`` must
not cost forward passes: a freed slot is taken in the step that freed it (as
``batch_generate`` does), rows of one sampling setting sample in one call, and
a step's bookkeeping covers the rows in flight, not every row of the run.
"""

import importlib

import pytest

from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.values import (
    Finished,
    GenerationRequest,
    ModelSpec,
    SamplingParams,
    TokenChunk,
)

pytestmark = pytest.mark.model

# mlx_lm's package exports a function named ``generate`` that hides the module.
mlx_lm_generate = importlib.import_module("mlx_lm.generate")


@pytest.fixture(scope="module")
def warm(tiny_llama):
    from mlx_magic.engine.loading import load_warm_model

    spec = ModelSpec(name="tiny", key=str(tiny_llama), path=str(tiny_llama), kind="text")
    return spec, load_warm_model(spec)


def requests(spec, lengths, batch_size, temperature=0.0):
    return [
        GenerationRequest(
            model=spec,
            prompt=f"Write one sentence about topic number {i}.",
            sampling=SamplingParams(max_tokens=n, temperature=temperature, seed=7),
            batch_size=batch_size,
        )
        for i, n in enumerate(lengths)
    ]


@pytest.fixture
def forward_passes(monkeypatch):
    """Every decoding forward pass of mlx-lm's batches: its rows, and whether
    they shared one sampler (observed, not changed)."""
    seen = []
    original = mlx_lm_generate.GenerationBatch._step

    def counted(self):
        samplers = self.samplers or []
        seen.append((len(self.uids), all(s is samplers[0] for s in samplers)))
        return original(self)

    monkeypatch.setattr(mlx_lm_generate.GenerationBatch, "_step", counted)
    return seen


def run_batch(warm, jobs, watch=None):
    """Step a batch of ``jobs`` to its end: each row's token ids and its ``Finished``."""
    from mlx_magic.engine.batching import start_batch

    batch = start_batch(warm, jobs, budget_bytes=8 << 30)
    ids = [[] for _ in jobs]
    ends = [None] * len(jobs)
    for events in batch.steps():
        if watch is not None:
            watch(batch)
        for position, event in events:
            if isinstance(event, TokenChunk):
                ids[position].extend(event.token_ids)
            elif isinstance(event, Finished):
                ends[position] = event
    return ids, ends


def test_a_map_batch_takes_the_forward_passes_of_batch_generate(warm, forward_passes):
    spec, model = warm
    # Answers of different lengths: slots free at different steps.
    lengths = [12 - (i * 5) % 9 for i in range(14)]
    jobs = [Job(request) for request in requests(spec, lengths, batch_size=4)]
    in_flight = []
    ids, ends = run_batch(model, jobs, watch=lambda batch: in_flight.append(len(batch.sequences)))
    ours = list(forward_passes)
    forward_passes.clear()

    tokenizer = model.tokenizer
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": job.request.prompt}],
            add_generation_prompt=True,
            tokenize=True,
        )
        for job in jobs
    ]
    raw = mlx_lm_generate.batch_generate(
        model.model,
        tokenizer,
        prompts,
        max_tokens=lengths,
        return_token_ids=True,
        completion_batch_size=4,
        prefill_batch_size=4,
    )
    assert ids == raw.token_ids  # greedy: the same tokens
    assert [len(row) for row in ids] == lengths
    assert all(end.finish_reason == "length" and end.stats.ttft_s >= 0 for end in ends)
    # The same forward passes, of the same rows: no slot left empty for a step.
    assert ours == forward_passes
    # Only the rows handed to mlx-lm are looked at each step (4 + 4 queued).
    assert max(in_flight) <= 8 and in_flight[-1] == 0


def test_sampled_rows_of_one_setting_sample_in_one_call(warm, forward_passes):
    spec, model = warm
    jobs = [Job(request) for request in requests(spec, [6] * 5, 5, temperature=0.8)]
    first, _ = run_batch(model, jobs)
    assert forward_passes and all(shared for _, shared in forward_passes)
    # One seed for the run: it repeats as a whole.
    again, _ = run_batch(model, [Job(request) for request in requests(spec, [6] * 5, 5, 0.8)])
    assert again == first


def test_a_row_cancelled_while_queued_in_the_generator_ends_alone(warm):
    spec, model = warm
    jobs = [Job(request) for request in requests(spec, [5] * 8, batch_size=2)]
    # Rows 0-1 are decoded first; rows 2-3 wait queued inside mlx-lm's generator.
    jobs[3].cancel()
    ids, ends = run_batch(model, jobs)
    assert ends[3].finish_reason == "cancelled" and ids[3] == []
    assert all(end.finish_reason == "length" for i, end in enumerate(ends) if i != 3)
    assert all(len(row) == 5 for i, row in enumerate(ids) if i != 3)
