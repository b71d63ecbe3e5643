"""The small byte-level BPE tokenizer both tiny models share.

Trained here on a fixed text (so that every build is byte-for-byte the
same), with Qwen2's pre-tokenizer and Qwen2's special tokens added after the
learned vocabulary; written with Qwen2's tokenizer files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from mlx_magic.testing.tiny_models.folders import write_json

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Qwen2's special tokens, in Qwen2's order (they get the ids after the BPE
# vocabulary, as in the real tokenizer). The processor and the model config
# look the vision ones up by name.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2's pre-tokenizer split. transformers 5 rebuilds Qwen2Tokenizer's
# pipeline from vocab and merges with exactly this regex, so the tokenizer.json
# uses it too: the `tokenizers` and `transformers` views then agree.
_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Merges learned on top of the 256-symbol byte alphabet.
_BPE_MERGES = 512

# The fixed text the tokenizer is trained on. Plain English about pictures,
# so prompts used in tests ("Describe this image.") get multi-byte tokens.
_CORPUS = """\
Describe this image. What is in the picture? The image shows a small red
house on a green hill under a clear blue sky. There is a white cloud above
the house and a tall tree to the left of the door. A brown dog is sitting on
the grass in front of the house, and a black cat is sleeping in the window.
The sun is shining and the light is warm, as in the late afternoon.

This is a photo of a city street at night. The street is wet from the rain,
and the lights of the shops are reflected in the water. People are walking
with umbrellas. A yellow taxi is waiting at the corner next to a red bus.
In the background there are tall buildings with many bright windows.

The picture shows a plate of food on a wooden table: bread, cheese, green
apples and a cup of coffee. Next to the plate there is a book and a pair of
glasses. The colors are soft and the image looks calm and quiet.

A group of children are playing football in a park. One child is kicking the
ball and the others are running after it. There are trees around the field,
and a woman is sitting on a bench reading a newspaper. The sky is grey and
it looks like it might rain soon.

The diagram has three boxes connected by arrows. The first box says input,
the second says model, and the third says output. Under the boxes there is a
short caption that explains how the text and the images are processed.

You are a helpful assistant. Please answer the question about the image in
one or two sentences. The answer should be short, clear and correct. If you
are not sure, say that you do not know. Thank you for your help!

Numbers and words: one, two, three, four, five, six, seven, eight, nine, ten.
0 1 2 3 4 5 6 7 8 9 10 100 1000. Red, orange, yellow, green, blue, purple,
black, white, grey, brown, pink. Left, right, top, bottom, center, middle.
Cat, dog, bird, fish, horse, cow, sheep. Car, bus, train, plane, boat, bike.
"""


def _train_tokenizer() -> Tokenizer:
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on ``_CORPUS``.

    Training on a fixed text is deterministic (checked across processes), so
    every build writes the same tokenizer.json.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tokenizer = Tokenizer(
        models.BPE(
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + _BPE_MERGES,
        min_frequency=1,
        show_progress=False,
        initial_alphabet=alphabet,
        special_tokens=[],
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    # Specials after the learned vocabulary, as in Qwen2 (ids N, N+1, ...).
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    return tokenizer


def write_tokenizer(folder: Path, chat_template: str) -> tuple[dict[str, int], list[int]]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json.

    Returns the vocabulary size and the ids of the special tokens, for the
    model config, and the ids :func:`unreadable_ids` picks. The files
    follow Qwen2's: ``Qwen2Tokenizer`` (tokenizers-backed in transformers 5,
    no torch), ``<|im_end|>`` as eos and ``<|endoftext|>`` as pad.
    """
    tokenizer = _train_tokenizer()
    tokenizer.save(str(folder / "tokenizer.json"))
    # Each special token was added to the vocabulary: an id, never None.
    ids = {t: cast(int, tokenizer.token_to_id(t)) for t in SPECIAL_TOKENS}

    extra = [t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>",)]
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "added_tokens_decoder": {
            str(ids[t]): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for t in SPECIAL_TOKENS
        },
        "additional_special_tokens": extra,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "model_max_length": 32768,
        "split_special_tokens": False,
        "chat_template": chat_template,
    }
    write_json(folder / "tokenizer_config.json", config)
    write_json(
        folder / "special_tokens_map.json",
        {
            "additional_special_tokens": extra,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
        },
    )
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
    return {"vocab_size": vocab_size, **ids}, unreadable_ids(tokenizer, vocab_size)


def unreadable_ids(tokenizer: Tokenizer, vocab_size: int) -> list[int]:
    """Ids of tokens that are not printable ASCII text: specials and stray bytes.

    Their embedding rows are scaled down (see
    :func:`~mlx_magic.testing.tiny_models.weights.save_random_weights`).
    With tied embeddings the logit of a token grows with its row's norm, so
    greedy noise then rarely picks them: it streams as readable text instead
    of lone UTF-8 bytes the detokenizer must hold back, and does not end the
    turn or emit image tokens by chance.
    """

    def readable(i: int) -> bool:
        if tokenizer.id_to_token(i) in SPECIAL_TOKENS:
            return False
        # A lone byte of a multi-byte character decodes to U+FFFD.
        text = tokenizer.decode([i], skip_special_tokens=False)
        return bool(text) and all(c.isascii() and (c.isprintable() or c == "\n") for c in text)

    return [i for i in range(vocab_size) if not readable(i)]
