"""The logit lens (mlx_magic.engine.lens) against a reference written out layer by
layer here, on the tiny llama, a tiny Gemma 2, the tiny Qwen2-VL and the embedded
SmolLM2; its refusals; and its drawing (mlx_magic.display.lens_view)."""

import time

import mlx.core as mx
import mlx.nn as nn
import pytest

from mlx_magic.display.lens_view import LensView, lens_html, lens_text
from mlx_magic.engine.lens import logit_lens
from mlx_magic.errors import UserError
from mlx_magic.vocabulary.lens import LensCell, LensGrid

TEXT = "Hello there, how are you doing today?"
FIRST = 4  # the "answer" is every token after the first four


@pytest.fixture(scope="module")
def llama(tiny_llama):
    import mlx_lm

    return mlx_lm.load(str(tiny_llama))


def reference_probs(model, ids, first, *, scale=1.0, softcap=None):
    """Per layer, the next-token probabilities at positions ``first - 1 …``, written
    out: embed, run each layer with a plain causal mask, then norm and head."""
    inner = model.model
    length = len(ids)
    h = inner.embed_tokens(mx.array([ids])) * scale
    causal = mx.tril(mx.ones((length, length), dtype=mx.bool_))
    rows = []
    for layer in inner.layers:
        h = layer(h, causal, None)
        normed = inner.norm(h[:, first - 1 : length - 1])
        if "lm_head" in model:
            logits = model.lm_head(normed)
        else:
            logits = inner.embed_tokens.as_linear(normed)
        if softcap:
            logits = mx.tanh(logits / softcap) * softcap
        rows.append(mx.softmax(logits[0].astype(mx.float32), axis=-1))
    mx.eval(rows)
    return rows


def assert_lens_reads(grid, probs_per_layer, ids, first, atol=1e-5):
    """Every cell of ``grid`` agrees with per-layer probabilities (positions × vocabulary)."""
    assert grid.layers == len(probs_per_layer)
    assert grid.token_ids == tuple(ids[first:])
    for layer, probs in enumerate(probs_per_layer):
        for token, cell in enumerate(grid.rows[layer]):
            row = probs[token]
            # The k largest probabilities, and each listed id has the probability shown
            # (ids are not compared by rank: near-ties may order either way).
            best = mx.sort(row)[::-1][: len(cell.top_ids)].tolist()
            assert cell.top_probs == pytest.approx(best, abs=atol)
            assert [row[i].item() for i in cell.top_ids] == pytest.approx(
                list(cell.top_probs), abs=atol
            )
            assert cell.chosen_prob == pytest.approx(row[ids[first + token]].item(), abs=atol)


def test_the_last_layer_is_the_models_own_output(llama):
    model, tokenizer = llama
    ids = tokenizer.encode(TEXT)
    grid = logit_lens(model, tokenizer, ids, first=FIRST, top_k=5)
    logits = model(mx.array([ids]))[0, FIRST - 1 : len(ids) - 1]
    own = mx.softmax(logits.astype(mx.float32), axis=-1)
    assert grid.layers == len(model.layers) == 2
    assert len(grid.tokens) == len(ids) - FIRST
    assert grid.tokens == tuple(tokenizer.decode([i]) for i in ids[FIRST:])
    assert all(len(cell.top_ids) == 5 for row in grid.rows for cell in row)
    last = LensGrid(grid.model_type, grid.token_ids, grid.tokens, grid.rows[-1:])
    assert_lens_reads(last, [own], ids, FIRST)


def test_every_layer_matches_the_layer_by_layer_reference(llama):
    model, tokenizer = llama
    ids = tokenizer.encode(TEXT)
    grid = logit_lens(model, tokenizer, ids, first=FIRST, top_k=3)
    assert grid.model_type == "llama"
    assert_lens_reads(grid, reference_probs(model, ids, FIRST), ids, FIRST)
    # The layers do differ: the lens is not the last layer copied.
    assert grid.chosen_probs()[0] != grid.chosen_probs()[1]


def test_the_model_is_put_back_as_it_was(llama):
    model, tokenizer = llama
    layers, norm = model.model.layers, model.model.norm
    members = list(layers)
    ids = tokenizer.encode(TEXT)
    before = model(mx.array([ids]))
    logit_lens(model, tokenizer, ids, first=FIRST)
    assert model.model.layers is layers and list(layers) == members
    assert model.model.norm is norm
    assert mx.array_equal(model(mx.array([ids])), before)


def test_gemma2_embedding_scale_and_logit_cap_are_the_models_own(llama):
    from mlx_lm.models import gemma2

    model, tokenizer = llama
    vocab = model.args.vocab_size
    mx.random.seed(3)
    args = gemma2.ModelArgs(
        model_type="gemma2",
        hidden_size=32,
        num_hidden_layers=3,
        intermediate_size=64,
        num_attention_heads=2,
        head_dim=16,
        rms_norm_eps=1e-6,
        vocab_size=vocab,
        num_key_value_heads=1,
        final_logit_softcapping=5.0,  # low, so that the cap changes the numbers
    )
    model = gemma2.Model(args)
    mx.eval(model.parameters())
    ids = tokenizer.encode(TEXT)
    grid = logit_lens(model, tokenizer, ids, first=FIRST)
    reference = reference_probs(model, ids, FIRST, scale=32**0.5, softcap=5.0)
    assert_lens_reads(grid, reference, ids, FIRST)
    own = mx.softmax(model(mx.array([ids]))[0, FIRST - 1 : -1].astype(mx.float32), axis=-1)
    assert mx.allclose(own, reference[-1], atol=1e-5)
    # Without the scale the first layer would read otherwise: the reference is not trivially met.
    unscaled = reference_probs(model, ids, FIRST, softcap=5.0)
    assert not mx.allclose(unscaled[0], reference[0], atol=1e-3)


# Families whose own code does more than llama's: sliding windows (Gemma 3), no-RoPE
# layers (SmolLM3), logit scales (Cohere, Granite), an untied head (Qwen3).
FAMILIES = {
    "qwen3": dict(rope_theta=1e4, max_position_embeddings=512, tie_word_embeddings=False),
    "gemma3_text": dict(sliding_window=4, sliding_window_pattern=2, query_pre_attn_scalar=16),
    "phi3": dict(rope_theta=1e4, max_position_embeddings=512),
    "cohere": dict(rope_theta=1e4, logit_scale=0.5, layer_norm_eps=1e-5),
    "granite": dict(
        rope_theta=1e4,
        max_position_embeddings=512,
        logits_scaling=4.0,
        embedding_multiplier=2.0,
        attention_multiplier=0.25,
        residual_multiplier=0.5,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
    ),
    "smollm3": dict(rope_theta=1e4, max_position_embeddings=512, no_rope_layer_interval=2),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_last_layer_is_the_models_own_output_in_other_families(llama, family):
    import importlib

    module = importlib.import_module(f"mlx_lm.models.{family}")
    llama_model, tokenizer = llama
    mx.random.seed(5)
    args = module.ModelArgs.from_dict(
        {
            "model_type": family,
            "hidden_size": 32,
            "num_hidden_layers": 3,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "rms_norm_eps": 1e-6,
            "vocab_size": llama_model.args.vocab_size,
            **FAMILIES[family],
        }
    )
    model = module.Model(args)
    mx.eval(model.parameters())
    ids = tokenizer.encode(TEXT)
    grid = logit_lens(model, tokenizer, ids, first=FIRST)
    own = mx.softmax(model(mx.array([ids]))[0, FIRST - 1 : -1].astype(mx.float32), axis=-1)
    assert grid.layers == 3 and grid.model_type == family
    last = LensGrid(grid.model_type, grid.token_ids, grid.tokens, grid.rows[-1:])
    assert_lens_reads(last, [own], ids, FIRST)


@pytest.mark.vision
def test_qwen2_vl_is_read_through_its_language_model(tiny_vlm):
    import mlx_vlm

    model, processor = mlx_vlm.load(str(tiny_vlm))
    language = model.language_model
    ids = processor.tokenizer.encode(TEXT)
    grid = logit_lens(model, processor, ids, first=FIRST)
    assert grid.model_type == "qwen2_vl" and grid.layers == len(language.model.layers)
    assert_lens_reads(grid, reference_probs(language, ids, FIRST), ids, FIRST)
    # Its position state (kept between calls of a generation) is left alone.
    assert language._position_ids is None and language._rope_deltas is None
    inputs = mx.array([ids])
    positions, _ = language.get_rope_index(inputs)
    logits = language(inputs, position_ids=positions).logits[0, FIRST - 1 : -1]
    own = mx.softmax(logits.astype(mx.float32), axis=-1)
    last = LensGrid(grid.model_type, grid.token_ids, grid.tokens, grid.rows[-1:])
    assert_lens_reads(last, [own], ids, FIRST)


@pytest.fixture(scope="module")
def smollm2():
    from mlx_magic.engine.loading import load_warm_model
    from mlx_magic.models.resolve import resolve_model

    warm = load_warm_model(resolve_model(None))
    return warm.model, warm.tokenizer


@pytest.mark.model
def test_smollm2_the_lens_matches_the_model_and_the_reference(smollm2, capsys):
    model, tokenizer = smollm2
    prompt = tokenizer.encode("The capital of France is")
    ids = prompt + tokenizer.encode(" Paris.")
    first = len(prompt)
    started = time.perf_counter()
    grid = logit_lens(model, tokenizer, ids, first=first)
    seconds = time.perf_counter() - started
    assert grid.layers == 30 and grid.tokens[0] == " Paris"
    logits = model(mx.array([ids]))[0, first - 1 : -1]
    own = mx.softmax(logits.astype(mx.float32), axis=-1)
    last = LensGrid(grid.model_type, grid.token_ids, grid.tokens, grid.rows[-1:])
    assert_lens_reads(last, [own], ids, first, atol=1e-4)
    assert_lens_reads(grid, reference_probs(model, ids, first), ids, first, atol=1e-4)
    # The model knows; its first layers do not yet.
    assert grid.cell(-1, 0).top_texts[0] == " Paris"
    assert grid.cell(0, 0).chosen_prob < grid.cell(-1, 0).chosen_prob
    with capsys.disabled():
        print(f"\n[SmolLM2 lens: 30 layers × {len(grid.tokens)} tokens in {seconds:.2f} s]")


def toy_model(model_type, vocab, then=None):
    """A small model laid out like mlx-lm's, whose inner model may do ``then`` to the
    last layer's output before the final norm."""

    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(vocab, 8)
            self.layers = [nn.Linear(8, 8), nn.Linear(8, 8)]
            self.norm = nn.RMSNorm(8)

        def __call__(self, inputs):
            h = self.embed_tokens(inputs)
            for layer in self.layers:
                h = layer(h)
            return self.norm(then(h) if then else h)

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.model_type = model_type
            self.model = Inner()
            self.lm_head = nn.Linear(8, vocab)

        def __call__(self, inputs):
            return self.lm_head(self.model(inputs))

    return Toy()


def test_a_plain_layer_stack_reads_like_the_reference(llama):
    llama_model, tokenizer = llama
    mx.random.seed(4)
    model = toy_model("toy", llama_model.args.vocab_size)
    ids = tokenizer.encode(TEXT)
    grid = logit_lens(model, tokenizer, ids, first=FIRST)
    inner = model.model
    h = inner.embed_tokens(mx.array([ids]))
    reference = []
    for layer in inner.layers:
        h = layer(h)
        logits = model.lm_head(inner.norm(h))[0, FIRST - 1 : -1]
        reference.append(mx.softmax(logits, axis=-1))
    assert_lens_reads(grid, reference, ids, FIRST)


def test_a_model_that_changes_the_last_hidden_state_is_refused_and_put_back(llama):
    llama_model, tokenizer = llama
    model = toy_model("altup_like", llama_model.args.vocab_size, then=lambda h: h * 2)
    layers, norm = model.model.layers, model.model.norm
    with pytest.raises(UserError) as refused:
        logit_lens(model, tokenizer, tokenizer.encode(TEXT), first=FIRST)
    message = str(refused.value)
    assert "\n" not in message and "altup_like is not one" in message
    assert message.startswith("The logit lens reads llama-like models")
    assert model.model.layers is layers and model.model.norm is norm


def test_a_family_it_cannot_read_is_one_line(llama):
    from mlx_lm.models import gpt2

    llama_model, tokenizer = llama
    args = gpt2.ModelArgs(
        model_type="gpt2",
        n_ctx=64,
        n_embd=16,
        n_head=2,
        n_layer=1,
        n_positions=64,
        layer_norm_epsilon=1e-5,
        vocab_size=llama_model.args.vocab_size,
    )
    with pytest.raises(UserError) as refused:
        logit_lens(gpt2.Model(args), tokenizer, tokenizer.encode(TEXT), first=FIRST)
    message = str(refused.value)
    assert "\n" not in message and message.endswith("gpt2 is not one")


def test_first_and_top_k_are_checked(llama):
    model, tokenizer = llama
    ids = tokenizer.encode(TEXT)
    for first in (0, len(ids)):
        with pytest.raises(ValueError, match="first must leave"):
            logit_lens(model, tokenizer, ids, first=first)
    with pytest.raises(ValueError, match="top_k"):
        logit_lens(model, tokenizer, ids, first=FIRST, top_k=0)


# ---------------------------------------------------------------- the values and the view


def made_grid():
    """Two layers × two tokens, with texts that need escaping."""

    def cell(top, probs, chosen, first_id=10):
        return LensCell(
            top_ids=tuple(range(first_id, first_id + len(top))),
            top_texts=tuple(top),
            top_probs=tuple(probs),
            chosen_prob=chosen,
        )

    top5 = ["<b>", ' "q" ', "&amp", "\n", "five"]
    return LensGrid(
        model_type="llama",
        token_ids=(10, 99),
        tokens=("<b>", "x'y"),
        rows=(
            (cell(["a", "b"], [0.3, 0.2], 0.01, 20), cell(["c", "d"], [0.4, 0.1], 0.02, 30)),
            (cell(top5, [0.9, 0.04, 0.03, 0.02, 0.01], 0.9), cell(["zz"], [0.7], 0.05)),
        ),
    )


def test_the_html_is_escaped_has_every_layer_last_on_top_and_the_hover():
    grid = made_grid()
    page = lens_html(grid)
    assert "<b>" not in page and "&lt;b&gt;" in page
    assert "&amp;amp" in page and "x&#x27;y" in page
    assert page.index('data-layer="1"') < page.index('data-layer="0"')
    assert page.count("<tr data-layer=") == grid.layers
    # The hover of the top-left cell: the layer's five tokens with probabilities, and
    # the generated token's probability.
    hover = page.split('data-layer="1"')[1].split('title="')[1].split('"')[0]
    for text in ("&#x27;&lt;b&gt;&#x27;  90.0%", "&#x27; &quot;q&quot; &#x27;  4.0%", "five"):
        assert text in hover
    assert "generated &#x27;&lt;b&gt;&#x27;: 90.0%" in hover
    # The top token is the generated one there: bold; elsewhere not.
    assert page.count("font-weight: bold") == 1
    assert LensView(grid)._repr_html_() == page


def test_the_text_fallback_has_a_row_per_layer_last_first():
    grid = made_grid()
    text = lens_text(grid)
    lines = text.splitlines()
    assert len(lines) == 2 + grid.layers
    assert lines[2].split("│")[0].strip() == "1" and lines[3].split("│")[0].strip() == "0"
    assert "<b>" in lines[2] and "90%*" in lines[2] and "70% " in lines[2]
    assert "30% " in lines[3] and "*" not in lines[3]
    assert repr(LensView(grid)) == text
    from IPython.lib.pretty import pretty

    assert pretty(LensView(grid)) == text


def test_the_values_check_their_shape_and_make_a_table():
    grid = made_grid()
    assert grid.layers == 2 and grid.cell(-1, 0).top_probs[0] == 0.9
    assert grid.chosen_probs() == [[0.01, 0.02], [0.9, 0.05]]
    frame = grid.to_frame()
    assert len(frame) == 4 and list(frame["layer"]) == [0, 0, 1, 1]
    assert frame.iloc[2]["top"] == "<b>" and frame.iloc[2]["chosen_prob"] == 0.9
    with pytest.raises(ValueError):
        LensGrid("llama", (1, 2), ("a", "b"), grid.rows[:1] + ((grid.rows[1][0],),))
