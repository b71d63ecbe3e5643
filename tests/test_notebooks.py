"""The notebooks in notebooks/ run top to bottom in a real kernel and say the right things."""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.model, pytest.mark.kernel]

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def outputs_text(cell):
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_committed_notebooks_have_no_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


def test_quickstart_answers_with_the_embedded_model():
    notebook = nbformat.read(NOTEBOOKS / "01-quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    by_source = {cell.source.splitlines()[0]: cell for cell in code}
    capital = by_source["%%mlx"]
    text = outputs_text(capital)
    assert "Paris" in text
    assert "tok/s" in text and "smollm2" in text and "cold" in text
    # The answer is in the saved output as Markdown with a plain-text copy: no
    # widget state needed.
    answer = [o for o in capital.outputs if "text/markdown" in o.get("data", {})]
    assert "Paris" in "".join(o.data["text/plain"] for o in answer)
    assert notebook.metadata.get("widgets") is None
    tips = outputs_text(by_source['%%mlx -n 60 -s "You are a concise assistant." -o tips'])
    assert "warm" in tips and "stopped at max tokens" in tips
    assert "smollm2" in outputs_text(by_source["%mlx models"])
    assert "running" in outputs_text(by_source["%mlx status"])
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source


def test_vision_notebook_shows_previews_before_streamed_answers(
    tiny_vlm, tiny_sam3, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLX_MAGIC_DEFAULT_VISION_MODEL", str(tiny_vlm))
    monkeypatch.setenv("MLX_MAGIC_DEFAULT_SEGMENT_MODEL", str(tiny_sam3))
    notebook = nbformat.read(NOTEBOOKS / "02-vision.ipynb", as_version=4)
    # The notebook saves a chart and a video: in a folder of its own.
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    vision_cells = [
        cell
        for cell in code
        if cell.source.startswith("%%mlx_vision") and "--segment" not in cell.source
    ]
    assert len(vision_cells) == 18
    with_images = [cell for cell in vision_cells if " -i " in cell.source.splitlines()[0]]
    assert len(with_images) == 14
    for cell in with_images:
        previews = [
            i
            for i, o in enumerate(cell.outputs)
            if o.output_type == "display_data" and "image/png" in o.get("data", {})
        ]
        streams = [i for i, o in enumerate(cell.outputs) if "text/markdown" in o.get("data", {})]
        assert previews and streams and previews[0] < streams[0], cell.source
        preview = cell.outputs[previews[0]].data
        images = cell.source.splitlines()[0].count("-i ")
        # A region is shown after the whole image it was cut from.
        in_context = preview["text/html"].count('alt="where the region lies"')
        assert preview["text/html"].count("<img") == images + in_context
        assert "tok/s" in outputs_text(cell)
        # Once the processor has run, each caption says what the image cost.
        assert " tokens]" in preview["text/plain"], cell.source
    by_first_line = {cell.source.splitlines()[0]: cell for cell in vision_cells}
    photo = outputs_text(by_first_line["%%mlx_vision -i photo -n 20"])
    capped = outputs_text(by_first_line["%%mlx_vision -i photo --max-pixels 200000 -n 20"])
    assert "photo · 4032×3024 → " in photo and " image + " in photo
    # (The tiny model's processor allows 224×224 pixels: both fit under its own cap;
    # test_grounded_vision shows --max-pixels below it.)
    assert int(capped.split(" image + ")[0].split("(")[-1]) <= int(
        photo.split(" image + ")[0].split("(")[-1]
    )
    scripted = next(cell for cell in code if "forced_vision_answer(answer)" in cell.source)
    drawn = [o for o in scripted.outputs if o.output_type == "display_data"][0]
    assert [box["label"] for box in drawn.metadata["mlx_magic"]["boxes"]] == [
        "red circle",
        "blue rectangle",
    ]
    assert (
        "where the region lies"
        in by_first_line["%%mlx_vision -i circle -n 30"].outputs[0].data["text/html"]
    )
    # Marks set as the board's value (as drawing does), then used by later cells.
    marks = next(cell for cell in code if cell.source.startswith("# What dragging a box"))
    assert "mark 2: point (235, 130) on image 1" in outputs_text(marks)
    region = by_first_line["%%mlx_vision --region @1 -n 20"]
    assert "canvas [30,40,150,160] · 120×120" in outputs_text(region)
    named = next(cell for cell in code if '"--marks -n 30"' in cell.source)
    assert "MarkRef(number=2" in outputs_text(named) and "text='Mark 2'" in outputs_text(named)
    for video in (
        "%%mlx_vision -v frames --fps 4 -n 40",
        "%%mlx_vision -v ball.mp4 --fps 2 --max-frames 6 -n 40",
    ):
        assert "[video: " in outputs_text(by_first_line[video]) and " video + " in outputs_text(
            by_first_line[video]
        )
    # The follow-up without -i: the image came from the KV cache with the first turn.
    follow_up = by_first_line["%%mlx_vision --chat chart -n 40"]
    assert " cached)" in outputs_text(follow_up)
    transcript = outputs_text(next(cell for cell in code if cell.source == "%mlx chat chart"))
    assert "[image: fig" in transcript and "Which bar is the tallest?" in transcript
    status = outputs_text(next(cell for cell in code if cell.source == "%mlx status"))
    assert "Vision features" in status
    hits = int(status.split("Vision features")[1].split(" hits")[0].split()[-1])
    assert hits >= 1
    # Segmentation: random SAM 3 finds nothing above 0.5; scripted, it counts and measures.
    unscripted = next(
        cell for cell in code if cell.source.startswith("%%mlx_vision -i canvas --seg")
    )
    assert "[no masks · tiny-sam3 · " in outputs_text(unscripted)
    scripted = next(
        cell for cell in code if "with forced_masks(red, blue):\n    get_" in cell.source
    )
    shown = [o for o in scripted.outputs if o.output_type == "display_data"][0]
    assert [m["label"] for m in shown.metadata["mlx_magic"]["masks"]] == ["circle", "rectangle"]
    assert "[1 circle · 1 rectangle · tiny-sam3 · " in shown.data["text/plain"]
    outlined = next(cell for cell in code if "%mlx segment @boxes" in cell.source)
    assert "[1 red circle · 1 blue rectangle · " in outputs_text(outlined)


def test_teaching_notebook_shows_probabilities_sweeps_and_an_untrained_model():
    notebook = nbformat.read(NOTEBOOKS / "03-teaching.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    probs = next(cell for cell in code if "--probs" in cell.source)
    html = "".join(o.get("data", {}).get("text/html", "") for o in probs.outputs)
    assert html.count('class="mlx-magic-token"') >= 3 and "Paris" in html
    sweeps = [
        cell
        for cell in code
        if cell.source.startswith("%%mlx")
        and (
            cell.source.count("--temp") > 1
            or cell.source.count("--seed") > 1
            or cell.source.count("-m ") > 1
        )
    ]
    assert len(sweeps) == 3
    for cell in sweeps:
        datas = [o.get("data", {}) for o in cell.outputs if o.output_type == "display_data"]
        # The live widgets were replaced in place by static columns: the saved
        # notebook needs no widget state.
        assert not any("application/vnd.jupyter.widget-view+json" in d for d in datas)
        assert any("mlx-magic-columns" in d.get("text/html", "") for d in datas)
    versus = outputs_text(next(c for c in code if c.source.startswith("[(r.model")))
    assert "'smollm2'" in versus and "'untrained-llama', 20" in versus
    branched = outputs_text(next(c for c in code if c.source.startswith("%mlx branch")))
    assert "── branch at token 6: ' London' instead of ' Paris' ──" in branched
    lensed = next(c for c in code if c.source.startswith("%%mlx -n 3 --lens"))
    html = "".join(o.get("data", {}).get("text/html", "") for o in lensed.outputs)
    assert 'class="mlx-magic-lens"' in html and html.count("<tr data-layer=") == 30
    assert "[logit lens · 30 layers × 3 answer tokens · " in outputs_text(lensed)
    formed = outputs_text(next(c for c in code if c.source.startswith("lens = _mlx.lens")))
    assert "('The', " in formed and "(' capital', " in formed
    attended = next(c for c in code if c.source.startswith("%%mlx -n 3 --attention"))
    html = "".join(o.get("data", {}).get("text/html", "") for o in attended.outputs)
    assert 'class="mlx-magic-attention"' in html and html.count("data-position=") > 20
    assert "[attention · layer 29 of 30 · mean of 9 heads · token 3 " in outputs_text(attended)
    early = outputs_text(next(c for c in code if c.source.startswith("%mlx attention 2 -l 0")))
    assert "[attention · layer 0 of 30 · mean of 9 heads · token 2 ' capital' · " in early
    top = outputs_text(next(c for c in code if "_mlx.attention.top(3)" in c.source))
    assert top.startswith("[(") and top.count("(") == 3
    drafted = next(c for c in code if "--draft {draft}" in c.source)
    html = "".join(o.get("data", {}).get("text/html", "") for o in drafted.outputs)
    assert "mlx-magic-draft" in html and "draft smollm2-draft: " in outputs_text(drafted)
    steps = outputs_text(next(c for c in code if c.source.startswith("[(step.name")))
    assert "[('add', {'a': 2, 'b': 3}, 5)]" in steps
    shown = outputs_text(next(c for c in code if "--show-prompt" in c.source))
    assert '"name": "add"' in shown and "2 + 3 is 5." in shown
    memory = next(c for c in code if c.source == "%mlx memory")
    assert any("image/png" in o.get("data", {}) for o in memory.outputs)
    assert "kv_cache_mib" in "".join(o.get("data", {}).get("text/html", "") for o in memory.outputs)


def test_research_notebook_maps_constrains_and_replays(tmp_path):
    notebook = nbformat.read(NOTEBOOKS / "04-research.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source
    by_first_line = {cell.source.splitlines()[0]: cell for cell in code}
    countries = outputs_text(by_first_line["%%mlx --map cities -n 16 -o countries"])
    assert "4 items · 4 done" in countries and "batches of" in countries
    table = outputs_text(
        by_first_line['countries.table[["item", "answer", "tokens", "finish_reason"]]']
    )
    assert "Paris" in table and "Madrid" in table
    seen = outputs_text(by_first_line["%%mlx_vision --map shots/*.png -i {item} -n 8 -o seen"])
    assert "3 items · 3 done" in seen and "batches of 3" in seen
    assert "blue.png" in outputs_text(
        by_first_line['seen.table[["item", "answer", "tokens", "finish_reason"]]']
    )
    facts = outputs_text(by_first_line['facts.table[["animal", "name", "legs", "can_fly"]]'])
    assert "spider" in facts and ("True" in facts or "False" in facts)
    assert "3 items · 3 done" in outputs_text(
        by_first_line["%%mlx --map animals --schema Animal -n 40 -o facts"]
    )
    # Sampled with a drawn seed, the story may end before -n 24: any length, replayed exactly.
    replayed = outputs_text(by_first_line["%mlx replay story"])
    assert re.search(r"Reproduced token for token \((\d+) tokens?\)\.", replayed), replayed
    compared = by_first_line[
        "%%mlx -m smollm2 -m {random_model} --map towns --score country --score-by contains "
        "-n 8 -o compared"
    ]
    assert "4 items × 2 models · 8 answers" in outputs_text(compared)
    bars = "".join(o.get("data", {}).get("text/html", "") for o in compared.outputs)
    assert bars.count('class="mean"') == 2 and "95% interval" in bars
    assert "score · random-llama" in outputs_text(
        next(c for c in code if c.source.startswith("compared.table["))
    )
    queried = outputs_text(next(c for c in code if c.source.startswith("[(step.name")))
    assert "[('count_habitat', {'habitat': 'webs'}, 1)]" in queried
    embedded = outputs_text(by_first_line["%mlx embed animals -c animal -o animal_vectors"])
    assert "3 texts" in embedded or "3 items" in embedded, embedded
    nearest = outputs_text(by_first_line['%mlx nearest "dog" animal_vectors -k 2'])
    assert "score" in nearest and "dog" in nearest, nearest
    plotted = by_first_line["%mlx plot animal_vectors --by habitat"]
    assert any(
        "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})
        for o in plotted.outputs
    )
    graded = outputs_text(
        by_first_line["%%mlx --map towns --score country --judge smollm2 -n 8 -o graded"]
    )
    assert "score (judge smollm2 vs country): mean" in graded and "· 4 rows" in graded
    assert "score" in outputs_text(
        by_first_line['graded.judged.table[["graded", "label", "answer", "score"]]']
    )
