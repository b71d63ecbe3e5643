"""Answers rendered as they stream: the answer cut into Markdown blocks, one
output each, in the splitter, in a real kernel (the embedded model, made to
write Markdown by a scripted logits processor), in a saved notebook and in
nbconvert's HTML."""

import json
import random
import re

import nbformat
import pytest

from mlx_magic.display.markdown_blocks import MAX_OPEN, Joined, MarkdownBlocks, Segment
from mlx_magic.display.markdown_view import MarkdownStream

ANSWER = (
    "## Paris\n\n"
    "Paris is the **capital** of France.\nIt lies on the Seine.\n\n"
    "- the Louvre\n- the Eiffel Tower\n\n  built in 1889\n- Notre-Dame\n\n"
    "```python\nprint('bonjour')\n\nprint('salut')\n```\n"
    "| city | people |\n|---|---|\n| Paris | 2.1 M |\n| Lyon | 0.5 M |\n\n"
    "$$\ne^{i\\pi} + 1 = 0\n$$\n"
    "That is all."
)


def blocks_of(text, sizes, **kwargs):
    """Feed ``text`` in chunks of the given sizes (cycled); all events."""
    blocks, events, position, index = MarkdownBlocks(**kwargs), [], 0, 0
    while position < len(text):
        size = sizes[index % len(sizes)]
        events += blocks.add(text[position : position + size])
        position, index = position + size, index + 1
    return events + blocks.finish()


def segments(events):
    return [e for e in events if isinstance(e, Segment)]


def test_an_answer_is_cut_into_its_blocks_wherever_the_chunks_end():
    expected = [
        "## Paris\n",
        "\nParis is the **capital** of France.\nIt lies on the Seine.\n\n",
        "- the Louvre\n- the Eiffel Tower\n\n  built in 1889\n- Notre-Dame\n\n",
        "```python\nprint('bonjour')\n\nprint('salut')\n```\n",
        "| city | people |\n|---|---|\n| Paris | 2.1 M |\n| Lyon | 0.5 M |\n\n",
        "$$\ne^{i\\pi} + 1 = 0\n$$\n",
        "That is all.",
    ]
    rng = random.Random(7)
    for sizes in ([1], [3], [len(ANSWER)], [rng.randint(1, 9) for _ in range(50)]):
        found = segments(blocks_of(ANSWER, sizes))
        assert [s.text for s in found] == expected, sizes
        assert [s.index for s in found] == list(range(len(expected)))


def test_the_open_block_is_what_follows_the_finished_ones():
    blocks = MarkdownBlocks()
    assert [s.text for s in segments(blocks.add("# Title\n\nA par"))] == ["# Title\n"]
    assert blocks.open.text == "\nA par" and blocks.open.index == 1
    assert blocks.add("agraph.\n") == []  # a paragraph goes on until a blank line
    assert [s.text for s in segments(blocks.add("\n```"))] == ["\nA paragraph.\n\n"]
    assert blocks.open.text == "```"


def test_a_heading_a_list_or_code_ends_a_paragraph_without_a_blank_line():
    found = segments(blocks_of("Here:\n1. one\n2. two\n\nText\n```\nx\n```\n### End\n", [2]))
    assert [s.text for s in found] == [
        "Here:\n",
        "1. one\n2. two\n\n",
        "Text\n",
        "```\nx\n```\n",
        "### End\n",
    ]


def test_a_long_paragraph_is_cut_after_sentences_and_stays_small():
    sentences = " ".join(f"Sentence number {i} says a little more." for i in range(200))
    found = segments(blocks_of(sentences, [5]))
    assert "".join(s.text for s in found) == sentences
    assert len(found) > 10
    assert all(len(s.text) <= MAX_OPEN for s in found)
    assert all(s.text.endswith(". ") for s in found[:-1])


def test_a_cut_never_splits_inline_code_when_it_can_avoid_it():
    text = ("word " * 30 + "`a span with spaces " + "inside " * 12 + "` ") * 12
    found = segments(blocks_of(text, [7], max_open=300))
    assert len(found) > 3
    assert all(s.text.count("`") % 2 == 0 for s in found)


def test_a_long_code_block_is_cut_between_lines_and_joined_once_complete():
    code = "```python\n" + "".join(f"print({i})  # line {i}\n" for i in range(120)) + "```\n"
    events = blocks_of(code + "After.\n", [11])
    parts = [s for s in segments(events) if s.text.strip() and s.text != "After.\n"]
    assert len(parts) >= 3
    for part in parts:  # each part shows as a code block of its own
        assert part.markdown.startswith("```python\n")
        assert part.markdown.rstrip("\n").endswith("\n```")
    assert parts[0].prefix == "" and parts[1].prefix == "```python\n"
    [joined] = [e for e in events if isinstance(e, Joined)]
    assert (joined.first, joined.last) == (parts[0].index, parts[-1].index)
    assert joined.text == code
    assert events.index(joined) < events.index(segments(events)[-1])  # before "After."


def test_a_long_table_repeats_its_header_in_each_part():
    table = "| n | square |\n|---|---|\n" + "".join(f"| {i} | {i * i} |\n" for i in range(150))
    events = blocks_of(table + "\nDone.", [13])
    parts = [s for s in segments(events) if "|" in s.text]
    assert len(parts) >= 3
    assert all(p.prefix == "| n | square |\n|---|---|\n" for p in parts[1:])
    [joined] = [e for e in events if isinstance(e, Joined)]
    assert joined.text.strip() == table.strip()


class FakeHandle:
    def __init__(self, log, bundle):
        self.log, self.bundle = log, bundle
        self.positions = [len(log)]
        log.append(("display", bundle))

    def update(self, bundle, raw=False):
        assert raw
        self.bundle = bundle
        self.positions.append(len(self.log))
        self.log.append(("update", bundle))


def stream(text, sizes):
    log, handles = [], []

    def show(bundle):
        handles.append(FakeHandle(log, bundle))
        return handles[-1]

    view, position, index = MarkdownStream(show), 0, 0
    while position < len(text):
        size = sizes[index % len(sizes)]
        view.write(text[position : position + size])
        position, index = position + size, index + 1
    view.finish()
    return log, handles


def test_each_output_ends_with_markdown_and_plain_text_and_live_updates_send_markdown_only():
    log, handles = stream(ANSWER, [4])
    finals = [h.bundle for h in handles]
    assert [b["text/plain"] for b in finals] == [
        "## Paris",
        "Paris is the **capital** of France.\nIt lies on the Seine.",
        "- the Louvre\n- the Eiffel Tower\n\n  built in 1889\n- Notre-Dame",
        "```python\nprint('bonjour')\n\nprint('salut')\n```",
        "| city | people |\n|---|---|\n| Paris | 2.1 M |\n| Lyon | 0.5 M |",
        "$$\ne^{i\\pi} + 1 = 0\n$$",
        "That is all.",
    ]
    assert all(b["text/markdown"] == b["text/plain"] for b in finals)
    live = [bundle for _, bundle in log if "text/plain" not in bundle]
    assert live and all(set(b) == {"text/markdown"} for b in live)
    # A finished block is never touched again: once it has its plain copy,
    # nothing more is sent to its output.
    finished = set()
    for handle, (_, bundle) in log_with_handles(log, handles):
        assert handle not in finished
        if "text/plain" in bundle:
            finished.add(handle)


def log_with_handles(log, handles):
    """(handle index, message) for every message of ``log``."""
    owners = []
    for handle_index, handle in enumerate(handles):
        owners += [(position, handle_index) for position in handle.positions]
    return [(owner, log[position]) for position, owner in sorted(owners)]


def test_a_code_block_too_long_to_join_keeps_its_parts_with_their_copies():
    code = "```\n" + "".join(f"line {i}\n" for i in range(800)) + "```\n"
    events = blocks_of(code, [9])
    assert not [e for e in events if isinstance(e, Joined)]
    log, handles = stream(code, [9])
    assert len(handles) > 5
    assert all("text/plain" in h.bundle for h in handles)
    shown = "".join(h.bundle["text/plain"] + "\n" for h in handles)
    assert shown.count("line ") == 800


def test_traffic_stays_linear_in_the_answer_length():
    """The benchmark's target (< 3 × text + 512 B per message), for a long
    paragraph without a break, as random weights write, and for code."""
    words = [f"w{random.Random(i).randint(0, 999)}" for i in range(9000)]
    for text in (" ".join(words), "```\n" + "\n".join(words) + "\n```\n"):
        for sizes in ([5], [60], [190]):
            log, _ = stream(text, sizes)
            sent = sum(len(json.dumps(bundle, ensure_ascii=False)) + 90 for _, bundle in log)
            assert sent < 3 * len(text) + 512 * len(log), (sizes, sent, len(text), len(log))


# ---- a real kernel ------------------------------------------------------------------

FORCED = (
    "from mlx_magic.testing.scripted import forced_answer\n"
    "with forced_answer({answer!r}):\n"
    "    get_ipython().run_cell_magic('mlx', {flags!r}, 'Tell me about Paris.')\n"
)


def forced_cell(answer, flags="-n 200", model=None):
    """A cell forcing ``answer``; with ``model`` (the tiny llama, which decodes
    a hundred times faster than SmolLM2 here) the script is its tokens."""
    return FORCED.format(answer=answer, flags=f"-m {model} {flags}" if model else flags)


@pytest.mark.model
@pytest.mark.kernel
def test_in_a_kernel_blocks_stream_as_markdown_outputs_and_the_footer_follows(kernel, tiny_llama):
    from kernel_helpers import execute, printed, stream_text

    _, client = kernel
    cell = forced_cell(ANSWER, "-n 400 -f markdown", tiny_llama)
    reply, messages = execute(client, cell, timeout=300)
    assert reply["status"] == "ok", reply
    assert stream_text(messages) == ""  # nothing on stdout: the answer is rendered
    outputs = {}  # display id -> its bundles, in order
    order = []
    for message in messages:
        content = message["content"]
        if message["msg_type"] in ("display_data", "update_display_data"):
            display_id = content.get("transient", {}).get("display_id")
            if display_id is None:
                order.append(("plain display", content["data"]))
                continue
            if display_id not in outputs:
                order.append(("output", display_id))
            outputs.setdefault(display_id, []).append(content["data"])
    blocks = [
        outputs[d] for kind, d in order if kind == "output" and "text/markdown" in outputs[d][-1]
    ]
    finals = [bundles[-1] for bundles in blocks]
    assert [f["text/plain"].split("\n")[0] for f in finals] == [
        "## Paris",
        "Paris is the **capital** of France.",
        "- the Louvre",
        "```python",
        "| city | people |",
        "$$",
        "That is all.",
    ]
    assert "".join(f["text/markdown"] for f in finals).replace("\n", "") == printed(
        client, "_mlx.text"
    ).replace("\n", "")
    # The answer streamed: some block was shown before it was complete.
    assert any(len(bundles) > 1 and "text/plain" not in bundles[0] for bundles in blocks)
    footer = order[-1]
    assert footer[0] == "plain display" and "tok/s" in footer[1]["text/plain"]


@pytest.mark.model
@pytest.mark.kernel
def test_format_text_keeps_the_plain_stream(kernel, tiny_llama):
    from kernel_helpers import displays, execute, printed, stream_text

    _, client = kernel
    reply, messages = execute(
        client, forced_cell(ANSWER, "-n 400 -f text", tiny_llama), timeout=300
    )
    assert reply["status"] == "ok", reply
    assert stream_text(messages).rstrip("\n") == printed(client, "_mlx.text").rstrip("\n")
    assert not [d for d in displays(messages) if "text/markdown" in d]
    setting = "get_ipython().find_magic('mlx', 'cell').__self__.default_format"
    before = printed(client, setting)
    execute(client, "%config MLXMagics.default_format = 'text'")
    try:
        reply, messages = execute(
            client, forced_cell("Just **text**.", model=tiny_llama), timeout=300
        )
        assert "Just **text**." in stream_text(messages)
        reply, _ = execute(client, "%config MLXMagics.default_format = 'html'")
        assert printed(client, setting) == "text"  # refused, the old value kept
    finally:
        execute(client, f"%config MLXMagics.default_format = {before!r}")


@pytest.mark.model
@pytest.mark.kernel
def test_traffic_of_a_long_rendered_answer_is_linear(kernel, tiny_llama):
    """As the benchmark measures it: every output message's JSON content."""
    from kernel_helpers import execute, printed

    _, client = kernel
    execute(client, f"%mlx load {tiny_llama}", timeout=300)
    reply, messages = execute(
        client,
        f"%%mlx -m {tiny_llama} -n 2000 --raw -f markdown\nThe history of the city of Rome begins",
    )
    assert reply["status"] == "ok", reply
    outputs = [
        m
        for m in messages
        if m["msg_type"] in ("stream", "display_data", "update_display_data")
        or m["msg_type"].startswith("comm")
    ]
    sent = sum(len(json.dumps(m["content"], ensure_ascii=False).encode()) for m in outputs)
    text_bytes = int(printed(client, "len(_mlx.text.encode())"))
    assert int(printed(client, "_mlx.stats.generation_tokens")) == 2000
    assert sent < 3 * text_bytes + 512 * len(outputs), (sent, text_bytes, len(outputs))
    markdown = [m for m in outputs if "text/markdown" in m["content"].get("data", {})]
    assert len(markdown) > text_bytes / MAX_OPEN  # cut into bounded blocks
    execute(client, f"%mlx unload {tiny_llama}")


@pytest.mark.model
@pytest.mark.kernel
def test_a_saved_notebook_holds_the_answer_as_markdown_and_nbconvert_renders_it(
    tmp_path, tiny_llama
):
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext mlx_magic"),
            nbformat.v4.new_code_cell(forced_cell(ANSWER, "-n 400", tiny_llama)),
        ]
    )
    NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    outputs = notebook.cells[1].outputs
    answer = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(answer) == 7
    assert all(o.data["text/plain"] == o.data["text/markdown"] for o in answer)
    assert not [o for o in outputs if o.output_type == "stream"]
    nbformat.write(notebook, tmp_path / "saved.ipynb")
    body, _ = HTMLExporter().from_notebook_node(nbformat.read(tmp_path / "saved.ipynb", 4))
    assert "<h2" in body and "<strong>capital</strong>" in body and "<table>" in body
    assert re.search(r"<li>\s*(<p>)?the Louvre", body)


@pytest.mark.model
def test_a_terminal_prints_the_markdown_as_plain_text(model_shell, capsys):
    from mlx_magic.testing.scripted import forced_answer

    from conftest import run

    with forced_answer("## Title\n\n- **one**\n"):
        run(model_shell, "%%mlx -n 30\nList one thing.")
    out = capsys.readouterr().out
    assert "## Title\n\n- **one**\n" in out and "tok/s" in out


def test_the_open_block_closes_bold_and_code_left_open_at_its_end():
    from mlx_magic.display.markdown_view import closed_inline

    assert closed_inline("Paris is the **capital") == "Paris is the **capital**"
    assert closed_inline("Paris is the **") == "Paris is the"  # nothing to make bold yet
    assert closed_inline("Paris is the *") == "Paris is the"
    assert closed_inline("on the *Seine*") == "on the *Seine*"
    assert closed_inline("call `print") == "call `print`"
    assert closed_inline("a **b** and `c`") == "a **b** and `c`"
    assert closed_inline('```python\nx = "**"') == '```python\nx = "**"'  # code as it is
    log, handles = stream("Paris is the **capital** of France.\n", [14])
    live = [bundle["text/markdown"] for _, bundle in log if "text/plain" not in bundle]
    assert live[0] == "Paris is the" and all(text.count("**") % 2 == 0 for text in live)
    assert handles[0].bundle["text/markdown"] == "Paris is the **capital** of France."
