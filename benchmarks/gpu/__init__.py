"""The benchmark on a GPU: random models of real shapes, then the scenarios.

``python -m benchmarks.gpu`` (see :mod:`.cli`) builds 4-bit random models
in the shapes users run (:mod:`.shapes`: SmolLM2-135M, Qwen2.5-0.5B,
Llama-3.2-1B, Llama-3.1-8B, Qwen2-VL-2B; :mod:`.build`), writes a
:class:`~benchmarks.harness.Profile` naming them, runs
:func:`benchmarks.run` with it, and writes the results (JSON, saved after
every scenario) and a Markdown report of them (:mod:`.report`).
``benchmarks/gpu/run.sh`` is the command for the lent GPU machine; ``docs/gpu.md``
says how to run it anywhere.
"""
