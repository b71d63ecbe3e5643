"""The words every layer speaks, at the bottom of the house: it imports nothing
of mlx_magic above it (nor MLX, IPython or widgets).

* :mod:`.values`: requests, events, results, stats, model specs (typed dataclasses).
* :mod:`.job`: the handle of a running generation (its event queue and flags).
* :mod:`.thinking`: the ``<think>`` markers and the splitter of thinking from answer.
* :mod:`.provenance`: the provenance record of an answer.
* :mod:`.token_buffer`: the buffer that batches streamed tokens, shared by the
  display and the worker process's pipe.
"""
