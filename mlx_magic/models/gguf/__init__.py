"""Read a llama-family GGUF file's header and tokenizer, for converting it into a
folder that ``mlx_lm.load`` accepts (the conversion, which needs MLX, is
:mod:`mlx_magic.engine.gguf_conversion`).

The folder holds ``config.json``, ``model.safetensors`` (or shards),
``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json`` and
``gguf_source.json`` (which file it came from; its presence marks a finished
conversion).

Weights: ``mx.load`` reads Q4_0, Q4_1 and Q8_0 tensors directly as MLX affine
quantized arrays (group size 32); those are kept as they are, bit for bit.
F32, F16, BF16 and the K-quants Q2_K and Q6_K come out of ``mx.load`` as
floats; their matrices are re-quantized to 8-bit affine (group 32), which on
CPU is as fast as float32, a third of its size, and far finer than the
source quantization. Every other type (Q5_0, Q5_1, Q3_K, Q5_K, the IQ types,
...) raises :class:`UnsupportedGGUF`. So does Q4_K when MLX only offers its
float fallback for it: that fallback decodes the second half of every
64-weight chunk with the wrong scale, which silently corrupts the model.

Scales, biases and norms are stored as float32: on CPU, quantized matmuls with
float16 scales are tens of times slower.

Tokenizer: only byte-level BPE vocabularies (``tokenizer.ggml.model`` "gpt2")
with a known pre-tokenizer are converted; SentencePiece ("llama") vocabularies
raise :class:`UnsupportedGGUF`.
"""

from mlx_magic.models.gguf.header import UnsupportedGGUF, conversion_dir_for

__all__ = ["UnsupportedGGUF", "conversion_dir_for"]
