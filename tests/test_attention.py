"""Attention weights (mlx_magic.engine.attention) against a reference written out here:
the layer's input captured, q and k made by hand from its weights, and a plain
softmax(q·Kᵀ/√d) in numpy; the weights also give back the layer's own attention
output. On the tiny llama, the embedded SmolLM2, a sliding-window Gemma 3, a
GPT-OSS with attention sinks and the tiny Qwen2-VL (a scripted peak on one image
patch: patch → grid → pixels); refusals; the drawing (display/attention_view)."""

import time

import mlx.core as mx
import numpy as np
import pytest

from mlx_magic.display.attention_view import heatmap
from mlx_magic.engine.attention import attention_map
from mlx_magic.errors import UserError

TEXT = "Hello there, how are you doing today?"
FIRST = 4


@pytest.fixture(scope="module")
def llama(tiny_llama):
    import mlx_lm

    return mlx_lm.load(str(tiny_llama))


def layer_input(model, ids, index):
    """What decoder layer ``index`` was handed in the model's own call (its first argument)."""
    inner = model.model
    layers = inner.layers
    index %= len(layers)
    seen = []

    class Recorder:
        def __init__(self, layer):
            self.layer = layer

        def __call__(self, x, *args, **kwargs):
            seen.append(x)
            return self.layer(x, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.layer, name)

    inner["layers"] = [Recorder(one) if i == index else one for i, one in enumerate(layers)]
    try:
        model(mx.array([ids]))
    finally:
        inner["layers"] = layers
    (x,) = seen
    return x


def by_hand(layer, x, *, window=None, sinks=None):
    """The last position's attention weights (heads × positions), and the layer's
    attention output there made from them, written out from the layer's weights."""
    attn = layer.self_attn
    xn = layer.input_layernorm(x)
    length = x.shape[1]
    d = attn.head_dim

    def split(proj, norm=None):
        t = proj(xn).reshape(1, length, -1, d).transpose(0, 2, 1, 3)
        return norm(t) if norm is not None else t

    q = np.array(attn.rope(split(attn.q_proj, getattr(attn, "q_norm", None))).astype(mx.float32))
    k = np.array(attn.rope(split(attn.k_proj, getattr(attn, "k_norm", None))).astype(mx.float32))
    v = np.array(split(attn.v_proj).astype(mx.float32))
    heads, kv_heads = q.shape[1], k.shape[1]
    visible = np.arange(length) > length - 1 - (window or length)
    rows, outputs = [], []
    for h in range(heads):
        g = h // (heads // kv_heads)
        scores = k[0, g] @ q[0, h, -1] / np.sqrt(d)
        scores = np.where(visible, scores, -np.inf)
        if sinks is not None:
            scores = np.concatenate([[float(sinks[h])], scores])
        e = np.exp(scores - scores.max())
        weights = (e / e.sum())[1:] if sinks is not None else e / e.sum()
        rows.append(weights)
        outputs.append(weights @ v[0, g])
    made = attn.o_proj(mx.array(np.concatenate(outputs))[None, None])[0, 0]
    from mlx_lm.models.base import create_causal_mask

    mask = create_causal_mask(length, window_size=window) if window else "causal"
    own = attn(xn, mask, None)[0, -1]
    return np.array(rows), made, own


def assert_reads(model, tokenizer, ids, index, *, window=None, sinks=None, atol=1e-5):
    """attention_map at layer ``index`` agrees with the reference, and the reference
    gives back the layer's own attention output."""
    found = attention_map(model, tokenizer, ids, first=FIRST, written_id=7, layer=index)
    rows, made, own = by_hand(
        model.model.layers[index], layer_input(model, ids, index), window=window, sinks=sinks
    )
    assert found.layer == index % len(model.model.layers) and found.heads == rows.shape[0]
    assert np.abs(np.array(found.weights) - rows).max() < atol
    assert mx.allclose(made, own, atol=1e-4), "the reference is not what the layer computed"
    return found


def test_every_layer_and_head_matches_the_reference_on_the_tiny_llama(llama):
    model, tokenizer = llama
    ids = tokenizer.encode(TEXT)
    for index in (0, 1, -1):
        found = assert_reads(model, tokenizer, ids, index)
        assert found.heads == 4 and found.layers == 2  # 4 query heads over 2 key heads
        assert all(sum(row) == pytest.approx(1.0, abs=1e-5) for row in found.weights)
    # The heads do differ, and the mean is their mean.
    assert found.weights[0] != found.weights[1]
    assert found.row() == pytest.approx(list(np.mean(found.weights, axis=0)))
    assert found.row(2) == list(found.weights[2])


def test_the_map_says_which_token_and_positions_it_read(llama):
    model, tokenizer = llama
    ids = tokenizer.encode(TEXT)
    found = attention_map(model, tokenizer, ids, first=FIRST, written_id=ids[3], head=-1)
    assert found.step == len(ids) - FIRST + 1 and found.prompt_tokens == FIRST
    assert found.token_ids == tuple(ids) and found.tokens[0] == tokenizer.decode([ids[0]])
    assert found.written == tokenizer.decode([ids[3]]) and found.head == 3
    assert found.model_type == "llama" and found.images == ()
    assert found.top(1)[0][2] == max(found.weights[3])


def test_the_model_is_put_back_as_it_was(llama):
    model, tokenizer = llama
    layers, fused = model.model.layers, mx.fast.scaled_dot_product_attention
    members = list(layers)
    ids = tokenizer.encode(TEXT)
    before = model(mx.array([ids]))
    attention_map(model, tokenizer, ids, first=FIRST, written_id=1, layer=0)
    assert model.model.layers is layers and list(layers) == members
    assert mx.fast.scaled_dot_product_attention is fused
    assert mx.array_equal(model(mx.array([ids])), before)
    with pytest.raises(UserError):
        attention_map(model, tokenizer, ids, first=FIRST, written_id=1, layer=5)
    assert mx.fast.scaled_dot_product_attention is fused and model.model.layers is layers


def test_a_sliding_window_is_the_models_own(llama):
    from mlx_lm.models import gemma3_text

    llama_model, tokenizer = llama
    mx.random.seed(7)
    args = gemma3_text.ModelArgs.from_dict(
        {
            "model_type": "gemma3_text",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "intermediate_size": 64,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "rms_norm_eps": 1e-6,
            "vocab_size": llama_model.args.vocab_size,
            "sliding_window": 4,
            "sliding_window_pattern": 2,
        }
    )
    model = gemma3_text.Model(args)
    mx.eval(model.parameters())
    ids = tokenizer.encode(TEXT)
    windowed = assert_reads(model, tokenizer, ids, 0, window=4)  # a sliding layer
    assert all(w == 0 for row in windowed.weights for w in row[:-4])
    full = assert_reads(model, tokenizer, ids, 1)  # a global one
    assert all(w > 0 for row in full.weights for w in row)


def test_attention_sinks_take_their_share(llama):
    from mlx_lm.models import gpt_oss

    llama_model, tokenizer = llama
    mx.random.seed(8)
    args = gpt_oss.ModelArgs(
        num_hidden_layers=2,
        num_local_experts=2,
        num_experts_per_tok=1,
        vocab_size=llama_model.args.vocab_size,
        hidden_size=32,
        intermediate_size=32,
        head_dim=16,
        num_attention_heads=2,
        num_key_value_heads=1,
        sliding_window=4,
        layer_types=["sliding_attention", "full_attention"],
    )
    model = gpt_oss.Model(args)
    mx.eval(model.parameters())
    for layer in model.model.layers:
        layer.self_attn.sinks = mx.array([2.0, -1.0])
    ids = tokenizer.encode(TEXT)
    windowed = assert_reads(model, tokenizer, ids, 0, window=4, sinks=[2.0, -1.0])
    assert all(w == 0 for row in windowed.weights for w in row[:-4])
    found = assert_reads(model, tokenizer, ids, 1, sinks=[2.0, -1.0])
    assert sum(found.weights[0]) < sum(found.weights[1]) < 1.0


def test_a_family_that_computes_attention_by_hand_is_one_line(llama):
    from mlx_lm.models import gemma2, gpt2

    llama_model, tokenizer = llama
    vocab = llama_model.args.vocab_size
    gemma = gemma2.Model(
        gemma2.ModelArgs(
            model_type="gemma2",
            hidden_size=32,
            num_hidden_layers=1,
            intermediate_size=64,
            num_attention_heads=2,
            head_dim=16,
            rms_norm_eps=1e-6,
            vocab_size=vocab,
            num_key_value_heads=1,
        )
    )
    gpt = gpt2.Model(
        gpt2.ModelArgs(
            model_type="gpt2",
            n_ctx=64,
            n_embd=16,
            n_head=2,
            n_layer=1,
            n_positions=64,
            layer_norm_epsilon=1e-5,
            vocab_size=vocab,
        )
    )
    ids = tokenizer.encode(TEXT)
    fused = mx.fast.scaled_dot_product_attention
    for model, family in ((gemma, "gemma2"), (gpt, "gpt2")):
        with pytest.raises(UserError) as refused:
            attention_map(model, tokenizer, ids, first=FIRST, written_id=1)
        message = str(refused.value)
        assert "\n" not in message and message.endswith(f"{family} is not one")
        assert message.startswith("Attention weights are read from models")
    assert mx.fast.scaled_dot_product_attention is fused


def test_layers_heads_and_first_are_checked(llama):
    model, tokenizer = llama
    ids = tokenizer.encode(TEXT)
    with pytest.raises(UserError, match=r"has 2 decoder layers \(0 to 1.*no layer 2$"):
        attention_map(model, tokenizer, ids, first=FIRST, written_id=1, layer=2)
    with pytest.raises(UserError, match=r"no layer -3$"):
        attention_map(model, tokenizer, ids, first=FIRST, written_id=1, layer=-3)
    with pytest.raises(UserError, match=r"has 4 heads \(0 to 3\): there is no head 4$"):
        attention_map(model, tokenizer, ids, first=FIRST, written_id=1, head=4)
    for first in (0, len(ids) + 1):
        with pytest.raises(ValueError, match="first must be"):
            attention_map(model, tokenizer, ids, first=first, written_id=1)


@pytest.mark.model
def test_smollm2_matches_the_reference_and_is_timed(capsys):
    from mlx_magic.engine.loading import load_warm_model
    from mlx_magic.models.resolve import resolve_model

    warm = load_warm_model(resolve_model(None))
    model, tokenizer = warm.model, warm.tokenizer
    prompt = tokenizer.encode("The capital of France is")
    ids = prompt + tokenizer.encode(" Paris, and the capital of")
    times = {}
    for index in (0, 15, -1):
        started = time.perf_counter()
        found = attention_map(model, tokenizer, ids, first=len(prompt), written_id=1, layer=index)
        times[found.layer] = time.perf_counter() - started
        rows, made, own = by_hand(model.model.layers[index], layer_input(model, ids, index))
        assert np.abs(np.array(found.weights) - rows).max() < 1e-4
        assert mx.allclose(made, own, atol=1e-3)
    assert found.layers == 30 and found.heads == 9
    with capsys.disabled():
        shown = ", ".join(f"layer {k}: {v:.3f} s" for k, v in times.items())
        print(f"\n[SmolLM2 attention, {len(ids)} positions: {shown}]")


@pytest.fixture(scope="module")
def scripted_vlm(tiny_vlm):
    """The tiny Qwen2-VL (warm, as the runtime holds it), a 300×200 image, and
    the prompt's ids and image grid as the processor makes them."""
    from PIL import Image

    from mlx_magic.engine.loading import load_warm_model
    from mlx_magic.engine.vision_generation import vision_prompt
    from mlx_magic.engine.vision_inputs import prepare_vision_inputs
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.vocabulary.values import GenerationRequest, SamplingParams

    warm = load_warm_model(resolve_model(str(tiny_vlm)))
    image = Image.new("RGB", (300, 200), (40, 120, 200))
    request = GenerationRequest(
        model=resolve_model(str(tiny_vlm)),
        prompt="What is this?",
        sampling=SamplingParams(),
        images=(image,),
    )
    inputs = prepare_vision_inputs(warm, vision_prompt(warm, request), [image], "tiny")
    prompt = inputs.input_ids.reshape(-1).tolist()
    return warm, request, prompt, inputs.extra["image_grid_thw"]


def script_a_peak(warm, position):
    """Layer 0 of the model, scripted: every query the same, every key zero but the
    one at ``position``, and no rotation: its attention peaks there, and only there."""
    attn = warm.model.language_model.model.layers[0].self_attn

    class NoRotation:
        fused_apply = True

        def apply_rotary(self, q, k, position_ids, unsqueeze_dim=1):
            return q, k

    width_q, width_k = attn.n_heads * attn.head_dim, attn.n_kv_heads * attn.head_dim
    kept = attn.q_proj, attn.k_proj, attn.rotary_emb
    attn.rotary_emb = NoRotation()
    attn.q_proj = lambda x: mx.ones((1, x.shape[1], width_q))
    at = lambda x: (mx.arange(x.shape[1]) == position)[None, :, None]  # noqa: E731
    attn.k_proj = lambda x: mx.where(at(x), 3.0, 0.0) * mx.ones((1, x.shape[1], width_k))
    return kept


def hottest_pixels(drawn, plain):
    """The bounding box (x0, y0, x1, y1, exclusive) of the pixels ``drawn`` changed the most."""
    change = np.abs(
        np.asarray(drawn, dtype=np.int32) - np.asarray(plain.convert("RGB"), dtype=np.int32)
    ).sum(axis=-1)
    ys, xs = np.nonzero(change >= change.max() - 3)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.vision
def test_qwen2_vl_a_scripted_peak_on_one_image_patch_is_found_there(scripted_vlm):
    from mlx_magic.engine.answer_attention import read_attention
    from mlx_magic.vocabulary.attention import AttentionRequest, ImagePatches

    warm, request, prompt, grid = scripted_vlm
    image_token = warm.config["image_token_id"]
    start = prompt.index(image_token)
    (t, h, w) = grid.tolist()[0]
    rows, cols = h // 2, w // 2
    assert (rows, cols) == (6, 9) and prompt.count(image_token) == rows * cols
    target = start + 2 * cols + 7  # row 2, column 7, row by row
    # Which patch that token is, by the model's own M-RoPE positions (rows, columns).
    positions, _ = warm.model.language_model.get_rope_index(mx.array([prompt]), grid)
    assert positions[1, 0, target].item() - positions[1, 0, start].item() == 2
    assert positions[2, 0, target].item() - positions[2, 0, start].item() == 7
    kept = script_a_peak(warm, target)
    attn = warm.model.language_model.model.layers[0].self_attn
    try:
        started = time.perf_counter()
        asked = AttentionRequest(request, (5, 6, 7), step=2, layer=0)
        found = read_attention(warm, asked)
        took = time.perf_counter() - started
    finally:
        attn.q_proj, attn.k_proj, attn.rotary_emb = kept
    assert found.images == (ImagePatches(0, start, 6, 9, (252, 168)),)
    assert found.token_ids == tuple(prompt) + (5,) and found.written_id == 6
    assert found.model_type == "qwen2_vl" and found.prompt_tokens == len(prompt)
    row = found.row()
    assert max(range(len(row)), key=row.__getitem__) == target and row[target] > 0.9
    cells = found.image_grid(0)
    assert max((v, r, c) for r, line in enumerate(cells) for c, v in enumerate(line))[1:] == (2, 7)
    # On the picture sent (300 × 200, which the processor made 252 × 168 in 9 × 6
    # tokens of 28 px): the hottest pixels are row 2, column 7's, scaled back.
    image = request.images[0]
    hottest = hottest_pixels(heatmap(image, found, max_side=None), image)
    x0, x1, y0, y1 = 7 * 300 / 9, 8 * 300 / 9, 2 * 200 / 6, 3 * 200 / 6
    assert hottest == (round(x0), round(y0), round(x1), round(y1))
    small = heatmap(image, found, max_side=150)  # a preview: the same place, scaled
    assert small.size == (150, 100)
    assert hottest_pixels(small, image.resize(small.size)) == (
        round(x0 / 2),
        round(y0 / 2),
        round(x1 / 2),
        round(y1 / 2),
    )
    print(f"[tiny Qwen2-VL attention, {len(found.token_ids)} positions: {took:.3f} s]")


# ---------------------------------------------------------------- the values and the view


def made_map(head=None, images=()):
    """Two heads over five positions (three of the prompt), texts that need escaping."""
    from mlx_magic.vocabulary.attention import AttentionMap

    return AttentionMap(
        model_type="llama",
        layer=1,
        layers=2,
        head=head,
        step=3,
        written_id=9,
        written="<cat>",
        token_ids=(1, 2, 3, 4, 5),
        tokens=("<b>", " & ", "x'y", "\n", "ok"),
        prompt_tokens=3,
        weights=((0.1, 0.6, 0.1, 0.1, 0.1), (0.3, 0.0, 0.3, 0.2, 0.2)),
        images=images,
    )


def test_the_strip_is_escaped_shaded_and_hovers_every_head():
    from mlx_magic.display.attention_view import AttentionView, attention_html

    found = made_map()
    page = attention_html(found)
    assert "<b>" not in page and "&lt;b&gt;" in page and "x&#x27;y" in page
    assert "&lt;cat&gt;" in page and page.count("data-position=") == 5
    assert (
        page.index('data-position="2"') < page.index("answer: ") < page.index('data-position="3"')
    )
    # The mean of the two heads: position 1 has 30%, the most, so the darkest shade.
    hover = page.split('data-position="1"')[1].split('title="')[1].split('"')[0]
    assert "30.00%" in hover and "heads: 60.0%, 0.0%" in hover
    assert "rgba(230, 40, 20, 0.85)" in page.split('data-position="1"')[1].split(">")[0]
    assert "layer 1 of 2 · mean of 2 heads · token 3 &#x27;&lt;cat&gt;&#x27;" in page
    assert AttentionView(found)._repr_html_() == page
    one = attention_html(made_map(head=0))
    assert "head 0 · token 3" in one and "10.00%" in one.split('data-position="0"')[1]


def test_the_text_fallback_marks_the_heavy_tokens_and_lists_the_top():
    from IPython.lib.pretty import pretty

    from mlx_magic.display.attention_view import AttentionView, attention_text

    found = made_map()
    text = attention_text(found)
    lines = text.splitlines()
    assert lines[0] == "attention · llama · layer 1 of 2 · mean of 2 heads · token 3 '<cat>'"
    assert "«<b> 20%»« &  30%»«x'y 20%» │ answer: «" in text
    assert "most weight: 1 ' & ' 30.0%" in text
    assert repr(AttentionView(found)) == text == pretty(AttentionView(found))


def test_an_image_is_one_chip_in_the_strip_and_a_heatmap_under_it():
    from PIL import Image

    from mlx_magic.display.attention_view import attention_html, attention_text, token_box
    from mlx_magic.vocabulary.attention import AttentionMap, ImagePatches

    patches = ImagePatches(image=0, start=1, rows=1, cols=2, size=(56, 28))
    found = AttentionMap(
        "qwen2_vl", 0, 2, None, 1, 7, ".", (1, 5, 5, 2), ("a", "<i>", "<i>", "b"), 4,
        ((0.1, 0.2, 0.6, 0.1),), (patches,),
    )  # fmt: skip
    assert found.image_grid(0) == [[0.2, 0.6]]
    assert token_box(patches, 1, (112, 40)) == (56.0, 0.0, 112.0, 40.0)
    page = attention_html(found, [Image.new("RGB", (112, 40), "white")])
    assert "[image 1 · 2 tokens · 80.0%]" in page and page.count("data-position=") == 3
    assert 'class="mlx-magic-attention-heatmap"' in page
    assert "the most on row 1, column 2 (60.0%)" in page
    assert "[image 1: 80%]" in attention_text(found)
    # Without the pictures (a saved map): the strip alone.
    assert "mlx-magic-attention-heatmap" not in attention_html(found)


def test_the_values_check_their_shape_and_make_a_table():
    from mlx_magic.vocabulary.attention import AttentionMap

    found = made_map()
    assert found.heads == 2 and found.row() == pytest.approx([0.2, 0.3, 0.2, 0.15, 0.15])
    assert found.top(2) == [(1, " & ", pytest.approx(0.3)), (0, "<b>", pytest.approx(0.2))]
    frame = found.to_frame()
    assert list(frame["in"]) == ["prompt"] * 3 + ["answer"] * 2
    assert list(frame["head_1"]) == [0.3, 0.0, 0.3, 0.2, 0.2]
    with pytest.raises(ValueError):
        AttentionMap("llama", 0, 1, None, 1, 1, "a", (1, 2), ("a",), 1, ((1.0, 0.0),))
