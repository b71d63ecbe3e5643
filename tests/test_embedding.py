"""Embeddings: %mlx embed, %%mlx --embed, %mlx nearest and %mlx plot, on tiny
random embedding models built with mlx-vlm's own classes (a Qwen3-Embedding for
text, a Qwen3-VL-Embedding for images and text), checked against the models'
own forward calls and numpy."""

import inspect
import pathlib
import shutil

import numpy as np
import pytest
from IPython.core.error import UsageError

from conftest import make_shell, one_line, run

TEXTS = [
    "a red car",
    "a blue car on the road",
    "the sea at night",
    "notebooks and models, a much longer sentence than the others by far",
    "cats",
]


@pytest.fixture(scope="module")
def text_embedder(tmp_path_factory):
    from mlx_magic.testing.tiny_models.embedders import build_tiny_text_embedder

    return build_tiny_text_embedder(tmp_path_factory.mktemp("models") / "tiny-embedder")


@pytest.fixture(scope="module")
def image_embedder(tmp_path_factory):
    from mlx_magic.testing.tiny_models.embedders import build_tiny_image_embedder

    return build_tiny_image_embedder(tmp_path_factory.mktemp("models") / "tiny-vl-embedder")


@pytest.fixture(scope="module")
def embed_shell(text_embedder):
    """A shell whose default embedding model is the tiny text embedder, with
    ``texts`` (a list) and ``df`` (a DataFrame: text, kind) in its namespace."""
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.default_embedding_model = {str(text_embedder)!r}")
    shell.user_ns["texts"] = list(TEXTS)
    run(shell, "import pandas as pd")
    run(
        shell, f"df = pd.DataFrame({{'text': texts, 'kind': {['car', 'car', 'sea', 'nb', 'cat']}}})"
    )
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def _own_forward(folder, texts):
    """Each text alone through the model's own __call__ (no padding at all)."""
    import mlx.core as mx

    from mlx_magic.engine.embedding import load_embedder

    model, processor, _ = load_embedder(str(folder), False)
    tokenizer = getattr(processor, "tokenizer", processor)
    rows = []
    for text in texts:
        ids = tokenizer(text)["input_ids"]
        out = model(mx.array([ids]), attention_mask=mx.ones((1, len(ids))))
        rows.append(np.array(out.text_embeds.astype(mx.float32))[0])
    return np.stack(rows)


def test_a_batch_gives_the_vectors_each_text_gets_alone(text_embedder):
    from mlx_magic.engine.embedding import embed
    from mlx_magic.engine.loading import load_warm_model
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.vocabulary.embedding import EmbedRequest

    spec = resolve_model(str(text_embedder))
    assert spec.kind == "embedding"
    warm = load_warm_model(spec)
    batched = embed(warm, EmbedRequest(spec, texts=tuple(TEXTS), batch_size=3))
    alone = embed(warm, EmbedRequest(spec, texts=tuple(TEXTS), batch_size=1))
    own = _own_forward(text_embedder, TEXTS)
    assert batched.vectors.shape == (len(TEXTS), 64) and batched.batches == 2
    assert alone.batches == len(TEXTS)
    np.testing.assert_allclose(batched.vectors, own, atol=1e-5)
    np.testing.assert_allclose(alone.vectors, own, atol=1e-5)
    # Normalised and last-token pooled, as the folder's 1_Pooling says.
    assert batched.normalized and batched.pooling == "lasttoken"
    np.testing.assert_allclose(np.linalg.norm(batched.vectors, axis=1), 1.0, atol=1e-5)
    # Padding is not counted: the tokens are the texts' own.
    tokenizer = getattr(warm.tokenizer, "tokenizer", warm.tokenizer)
    assert batched.tokens == sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)


def test_image_vectors_are_the_model_s_own_and_share_the_text_space(image_embedder):
    import mlx.core as mx
    from mlx_vlm.prompt_utils import get_chat_template
    from mlx_vlm.utils import prepare_inputs
    from PIL import Image

    from mlx_magic.engine.embedding import embed
    from mlx_magic.engine.loading import load_warm_model
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.vocabulary.embedding import EmbedRequest

    spec = resolve_model(str(image_embedder))
    assert spec.kind == "embedding"
    warm = load_warm_model(spec)
    noise = (np.random.default_rng(0).random((200, 150, 3)) * 255).astype("uint8")
    images = (
        Image.new("RGB", (120, 80), "red"),
        Image.new("RGB", (64, 96), "blue"),
        Image.fromarray(noise),
    )
    made = embed(warm, EmbedRequest(spec, images=images))
    alone = embed(warm, EmbedRequest(spec, images=images, batch_size=1))
    assert made.vectors.shape == (3, 64) and made.normalized
    assert (made.batches, alone.batches) == (1, 3)
    # Images of different sizes, padded together: each gets its own vector.
    np.testing.assert_allclose(made.vectors, alone.vectors, atol=1e-5)
    assert made.model_type == "qwen3_vl_embedding"
    prompt = get_chat_template(
        warm.tokenizer, [{"role": "user", "content": [{"type": "image"}]}], True
    )
    inputs = prepare_inputs(
        warm.tokenizer,
        images=[images[1]],
        prompts=prompt,
        image_token_index=warm.model.config.image_token_index,
    )
    own = np.array(warm.model(**inputs).text_embeds.astype(mx.float32))[0]
    np.testing.assert_allclose(made.vectors[1], own, atol=1e-5)
    texts = embed(warm, EmbedRequest(spec, texts=("a red picture",)))
    assert texts.vectors.shape == (1, 64)


def test_embed_a_list_keeps_vectors_and_a_table(embed_shell, capsys):
    run(embed_shell, "%mlx embed texts --batch-size 2 -o v")
    result = embed_shell.user_ns["_mlx"]
    assert embed_shell.user_ns["v"] is result
    assert result.vectors.shape == (len(TEXTS), 64)
    assert result.embeddings.batches == 3
    table = result.table
    assert list(table.columns) == ["item", "vector"]
    np.testing.assert_array_equal(np.stack(table["vector"]), result.vectors)
    assert "5 texts → 5 × 64 vectors" in result.summary
    capsys.readouterr()
    run(embed_shell, "%mlx models")
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert row.split()[:2] == ["tiny-embedder", "embedding"]
    # The kind column is as wide as "embedding": the columns after it line up.
    assert header.index("memory") == row.index("embedding") + len("embedding  ")


def test_embed_a_dataframe_column_and_the_cell_s_lines_agree(embed_shell):
    run(embed_shell, "%mlx embed df -c text -o by_column")
    by_column = embed_shell.user_ns["by_column"]
    assert list(by_column.table.columns) == ["text", "kind", "vector"]
    run(embed_shell, "%%mlx --embed\n" + "\n".join(TEXTS) + "\n")
    by_lines = embed_shell.user_ns["_mlx"]
    np.testing.assert_allclose(by_lines.vectors, by_column.vectors, atol=1e-5)
    # --map fills the cell in for each item.
    run(embed_shell, "%%mlx --embed --map df -o filled\n{row.text}")
    np.testing.assert_allclose(embed_shell.user_ns["filled"].vectors, by_column.vectors, atol=1e-5)


def test_nearest_ranks_by_cosine_as_numpy_does(embed_shell):
    run(embed_shell, "%mlx embed df -c text -o table")
    table = embed_shell.user_ns["table"]
    hits = run(embed_shell, "%mlx nearest 'a red car' table -k 3")
    from mlx_magic.magics.nearest import cosine_scores

    # The query's vector as the model's own forward call makes it.

    query = _own_forward(pathlib.Path(table.model_key), ["a red car"])[0]
    expected = (
        table.vectors @ query / (np.linalg.norm(table.vectors, axis=1) * np.linalg.norm(query))
    )
    assert hits.positions == list(np.argsort(-expected)[:3])
    np.testing.assert_allclose(hits.scores, np.sort(expected)[::-1][:3], atol=1e-5)
    assert hits.positions[0] == 0 and hits.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert list(hits.table.columns)[:3] == ["rank", "score", "text"]
    np.testing.assert_allclose(cosine_scores(table.vectors, query), expected, atol=1e-6)
    # A DataFrame with a vector column (the table itself) answers the same.
    embed_shell.user_ns["frame"] = table.table
    again = run(embed_shell, "%mlx nearest 'a red car' frame -k 3")
    assert again.positions == hits.positions


def test_plot_projects_on_the_two_main_directions(embed_shell):
    run(embed_shell, "%mlx embed df -c text -o table")
    run(embed_shell, "%mlx plot table --by kind")
    table = embed_shell.user_ns["table"]
    centred = table.vectors - table.vectors.mean(axis=0)
    _, values, directions = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ directions[:2].T
    np.testing.assert_allclose(table.points, expected, atol=1e-4)
    assert values[0] >= values[1]
    table.points = None
    run(embed_shell, "%mlx map table")  # another name for it
    np.testing.assert_allclose(table.points, expected, atol=1e-4)


def test_the_map_picture_colours_by_a_column_and_falls_back_to_svg():
    from mlx_magic.display.embedding_view import points_figure, points_svg

    points = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    figure = points_figure(points, title="t", colours=["a", "b", "a"], colour_name="kind")
    legend = figure.axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["a", "b"]
    numbers = points_figure(points, title="t", colours=[1, 2, 3], colour_name="n")
    assert len(numbers.axes) == 2  # the scatter and its colour bar
    from matplotlib.offsetbox import AnnotationBbox
    from PIL import Image

    pictures = [Image.new("RGB", (30, 20), c) for c in ("red", "green", "blue")]
    drawn = points_figure(points, title="t", images=pictures)
    assert sum(isinstance(a, AnnotationBbox) for a in drawn.axes[0].artists) == 3
    svg = points_svg(points, title="t", labels=["x", "y", "z"])
    assert svg.count("<circle") == 3 and "<title>y</title>" in svg


def test_images_embed_and_the_nearest_has_thumbnails(image_embedder, tmp_path):
    from PIL import Image

    for name, colour in (("red", "red"), ("blue", "blue"), ("green", "green")):
        Image.new("RGB", (80, 64), colour).save(tmp_path / f"{name}.png")
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        run(shell, f"%config MLXMagics.default_embedding_model = {str(image_embedder)!r}")
        run(shell, f"%mlx embed {str(tmp_path / '*.png')!r} -o photos")
        photos = shell.user_ns["photos"]
        assert photos.vectors.shape == (3, 64) and len(photos.images) == 3
        assert "image" in photos.table.columns
        hits = run(shell, f"%mlx nearest -i {str(tmp_path / 'blue.png')!r} photos -k 2")
        assert hits.positions[0] == 0  # blue.png sorts first
        assert hits.scores[0] == pytest.approx(1.0, abs=1e-4)
        assert hits._repr_html_().count("<img") == 2
        text_hits = run(shell, "%mlx nearest 'a blue square' photos -k 3")
        assert sorted(text_hits.positions) == [0, 1, 2]
        # %%mlx_vision --embed: each item's image.
        shell.user_ns["pictures"] = [Image.new("RGB", (70, 70), "red")]
        run(shell, "%%mlx_vision --embed --map pictures -i {item}\n# the pictures\n")
        assert shell.user_ns["_mlx"].vectors.shape == (1, 64)
        assert len(shell.user_ns["_mlx"].images) == 1
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("%mlx nearest 'x' texts", "texts has no vectors to compare"),
        ("%mlx nearest 'x' nothing", "No table named 'nothing'"),
        ("%mlx nearest 'x' v -k 0", "K is at least 1, not 0"),
        ("%mlx plot v --by nope", "v has no column 'nope' (it has item)"),
        ("%mlx embed df", "df is a table: name its text column with -c COLUMN (text, kind)"),
        ("%mlx embed df -c nope", "df has no column 'nope' (it has text, kind)"),
        ("%mlx embed missing", "%mlx embed missing: no variable named 'missing'"),
        ("%mlx embed texts -m smollm2", "'smollm2' is a chat model, not an embedding model"),
        ("%%mlx --embed -m smollm2\nhello", "'smollm2' is a chat model, not an embedding model"),
        ("%%mlx --embed --chat c\nhello", "--embed makes vectors, not an answer: leave out --chat"),
        ("%%mlx --embed --attention\nhello", "not an answer: leave out --attention"),
        ("%%mlx --embed -m a -m b\nhello", "--embed takes one embedding model"),
        ("%mlx embed texts --batch-size 0", "at least 1, not 0"),
        ("%mlx nearest v", "Usage: %mlx nearest QUERY TABLE"),
    ],
)
def test_mistakes_are_one_line_and_change_nothing(embed_shell, source, expected):
    run(embed_shell, "%mlx embed texts -o v")
    kept = embed_shell.user_ns["_mlx"]
    with pytest.raises(UsageError) as caught:
        run(embed_shell, source)
    assert expected in one_line(caught)
    assert embed_shell.user_ns["_mlx"] is kept


def test_an_embedder_in_a_chat_cell_is_one_line(embed_shell, text_embedder):
    for source in (
        f"%%mlx -m {text_embedder}\nhello",
        f"%%mlx --draft {text_embedder}\nhello",
        f"%%mlx_vision -m {text_embedder} -i red\nhello",
    ):
        embed_shell.user_ns["red"] = __import__("PIL.Image").Image.new("RGB", (8, 8))
        with pytest.raises(UsageError) as caught:
            run(embed_shell, source)
        assert "is an embedding model: it gives vectors, not answers" in one_line(caught)


def test_umap_without_umap_learn_is_one_line(embed_shell):
    try:
        import umap  # noqa: F401
    except ImportError:
        run(embed_shell, "%mlx embed texts -o v")
        with pytest.raises(UsageError) as caught:
            run(embed_shell, "%mlx plot v --umap")
        assert "--umap needs umap-learn (pip install umap-learn)" in one_line(caught)
    else:
        run(embed_shell, "%mlx embed texts -o v")
        run(embed_shell, "%mlx plot v --umap")
        assert embed_shell.user_ns["v"].points.shape == (len(TEXTS), 2)


def test_no_embedding_model_is_one_line():
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    try:
        shell.user_ns["texts"] = ["a"]
        with pytest.raises(UsageError) as caught:
            run(shell, "%mlx embed texts")
        assert "No embedding model: pass -m MODEL" in one_line(caught)
    finally:
        shell.extension_manager.unload_extension("mlx_magic")


def test_a_chat_family_is_an_embedder_only_in_a_sentence_transformers_folder(
    text_embedder, tmp_path
):
    from mlx_magic.models.resolve import resolve_model

    plain = tmp_path / "plain-qwen3"
    shutil.copytree(text_embedder, plain)
    (plain / "modules.json").unlink()
    shutil.rmtree(plain / "1_Pooling")
    assert resolve_model(str(plain)).kind == "text"
    assert resolve_model(str(text_embedder)).kind == "embedding"


def test_the_embedding_families_are_mlx_vlm_s():
    import mlx_vlm.models
    from mlx_vlm.embedding_loader import EMBEDDING_MODEL_REMAPPING

    from mlx_magic.models.embedders import EMBEDDING_MODEL_TYPES, RENAMED

    assert RENAMED == EMBEDDING_MODEL_REMAPPING
    root = pathlib.Path(inspect.getfile(mlx_vlm.models)).parent
    families = {
        path.parent.name
        for path in root.glob("*/*.py")
        if "EmbeddingOutput(" in path.read_text()
        and "colbert" not in path.parent.name
        and not path.parent.name.startswith("col")
    }
    assert families == EMBEDDING_MODEL_TYPES


def test_vectors_cross_the_worker_pipe_exactly():
    from mlx_magic.runtime.process import rpc
    from mlx_magic.vocabulary.embedding import Embeddings

    vectors = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    made = Embeddings(vectors, "bert", "mean", False, 7, 1, 0.5)
    back = rpc.decode(rpc.encode(made))
    assert isinstance(back, Embeddings) and back.vectors.dtype == np.float32
    np.testing.assert_array_equal(back.vectors, vectors)
    assert back.tokens == 7


def test_a_worker_process_embeds_as_the_thread_runtime_does(text_embedder):
    from PIL import Image

    from mlx_magic.errors import UserError
    from mlx_magic.models.resolve import resolve_model
    from mlx_magic.runtime.process.runtime import ProcessRuntime
    from mlx_magic.runtime.thread import ThreadRuntime
    from mlx_magic.vocabulary.embedding import EmbedRequest

    spec = resolve_model(str(text_embedder))
    asked = EmbedRequest(spec, texts=tuple(TEXTS), batch_size=2)
    worker, thread = ProcessRuntime(1 << 30), ThreadRuntime(1 << 30)
    try:
        far, near = worker.embed(asked), thread.embed(asked)
        np.testing.assert_array_equal(far.vectors, near.vectors)
        assert (far.tokens, far.batches, far.pooling) == (near.tokens, near.batches, "lasttoken")
        assert [info.kind for info in worker.models()] == ["embedding"]
        # The worker's one line is the kernel's, as the same class.
        pictures = EmbedRequest(spec, images=(Image.new("RGB", (8, 8)),))
        with pytest.raises(UserError, match="embeds text only"):
            worker.embed(pictures)
    finally:
        worker.stop()
        thread.stop()


def test_a_remote_runtime_refuses_in_one_line(embed_shell):
    from mlx_magic.vocabulary.embedding import NEEDS_LOCAL_MODEL

    run(embed_shell, "%config MLXMagics.runtime = 'remote'")
    try:
        with pytest.raises(UsageError) as caught:
            run(embed_shell, "%mlx embed texts")
        assert one_line(caught) == NEEDS_LOCAL_MODEL
    finally:
        run(embed_shell, "%config MLXMagics.runtime = 'thread'")


def test_a_long_run_goes_in_chunks_with_the_same_vectors(embed_shell, monkeypatch):
    from mlx_magic.magics import embedding

    run(embed_shell, "%mlx embed texts -o whole")
    monkeypatch.setattr(embedding, "CHUNK_ITEMS", 2)
    run(embed_shell, "%mlx embed texts -o chunked")
    whole, chunked = embed_shell.user_ns["whole"], embed_shell.user_ns["chunked"]
    np.testing.assert_allclose(chunked.vectors, whole.vectors, atol=1e-5)
    assert (whole.embeddings.batches, chunked.embeddings.batches) == (1, 3)
    assert chunked.embeddings.tokens == whole.embeddings.tokens


def test_in_a_notebook_the_plot_is_a_picture(embed_shell, monkeypatch):
    import base64

    from mlx_magic.display.views import NotebookView

    run(embed_shell, "%mlx embed df -c text -o table")
    # What decides "a notebook" (a kernel beside the shell), and what it is shown
    # with: the kernel's messages are not what this is about.
    monkeypatch.setattr(embed_shell, "kernel", object(), raising=False)
    shown = []
    monkeypatch.setattr(NotebookView, "show_bundle", lambda self, bundle: shown.append(bundle))
    run(embed_shell, "%mlx plot table --by kind")
    (bundle,) = shown
    assert bundle["text/plain"] == "[table: 5 items by PCA, coloured by kind]"
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
