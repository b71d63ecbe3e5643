"""The chat panel (%mlx panel): widgets driven as a user would, on the real runtime."""

import time

import numpy as np
import pytest

import mlx_magic

from conftest import run

pytestmark = pytest.mark.model


def wait(entry, seconds=120):
    assert entry is not None
    assert entry.done.wait(seconds)
    return entry


def transcript_html(panel):
    """Every HTML value in the panel's transcript, however deeply nested."""

    def values(widget):
        value = getattr(widget, "value", None)
        if isinstance(value, str):
            yield value
        for child in getattr(widget, "children", ()):
            yield from values(child)

    return "".join(values(panel.transcript))


def test_panel_sends_streams_and_shares_the_conversation(model_shell):
    run(model_shell, "%mlx panel")
    panel = model_shell.magics_manager.registry["MLXMagics"].session.panels[-1]
    assert "smollm2" in panel.model.options and panel.model.value == "smollm2"
    panel.temperature.value = 0.0
    panel.max_tokens.value = 12
    panel.prompt.value = "What is the capital of France?"
    entry = wait(panel.send())
    assert entry.result.finish_reason in ("stop", "length")
    assert "Paris" in entry.result.text
    html = transcript_html(panel)
    assert "What is the capital of France?" in html and "Paris" in html
    assert panel.prompt.value == "" and not panel.send_button.disabled
    conversation = model_shell.magics_manager.registry["MLXMagics"].session.conversations.get(
        "panel"
    )
    assert len(conversation.turns) == 1
    # The panel's conversation continues in a cell, with its history cached.
    run(model_shell, "%%mlx -n 6 --chat panel\nAnd of Italy?")
    assert model_shell.user_ns["_mlx"].stats.cached_prompt_tokens > 30
    assert len(conversation.turns) == 2


def test_stop_button_cancels(model_shell, tiny_llama):
    panel = mlx_magic.panel()  # conversation 'panel' is with smollm2 already
    panel.model.value = str(tiny_llama)
    assert panel.conversation == "panel-2" and "New conversation" in transcript_html(panel)
    panel.max_tokens.value = 1024
    panel.prompt.value = "Tell a very long story."
    entry = panel.send()
    assert panel.send_button.disabled and not panel.stop_button.disabled
    panel.stop()
    wait(entry, 60)
    assert entry.state == "cancelled"
    assert not panel.send_button.disabled


def test_vision_panel_lists_image_variables_and_sends_them(model_shell, tiny_vlm):
    model_shell.user_ns["photo"] = (np.random.default_rng(1).random((40, 60, 3)) * 255).astype(
        "uint8"
    )
    model_shell.user_ns["not_an_image"] = [1, 2, 3]
    magics = model_shell.magics_manager.registry["MLXMagics"]
    magics.default_vision_model = str(tiny_vlm)
    try:
        panel = mlx_magic.panel(vision=True, conversation="looking")
        assert "photo" in panel.image_variables.options
        assert "not_an_image" not in panel.image_variables.options
        panel.image_variables.value = ("photo",)
        panel.max_tokens.value = 5
        panel.prompt.value = "What is this?"
        entry = wait(panel.send())
        assert entry.result.stats.prompt_tokens > 20
        assert "mlx-magic-preview" in transcript_html(panel)
    finally:
        magics.default_vision_model = None


def test_a_drawn_box_in_the_panel_is_a_follow_up_about_its_region(model_shell, tiny_vlm):
    from mlx_magic.testing.scripted import forced_vision_answer

    model_shell.user_ns["scene"] = np.zeros((80, 120, 3), "uint8")
    magics = model_shell.magics_manager.registry["MLXMagics"]
    magics.default_vision_model = str(tiny_vlm)
    answer = "<|object_ref_start|>cat<|object_ref_end|><|box_start|>(100,250),(500,750)<|box_end|>"
    try:
        panel = mlx_magic.panel(vision=True, conversation="regions")
        panel.image_variables.value = ("scene",)
        panel.max_tokens.value = 40
        panel.prompt.value = "Where is the cat?"
        with forced_vision_answer(answer):
            entry = wait(panel.send())
        assert [box.label for box in entry.result.boxes] == ["cat"]

        def region_buttons():
            return [
                child
                for row in panel.transcript.children
                for child in getattr(row, "children", ())
                if "mlx-magic-region-button" in child._dom_classes
            ]

        deadline = time.monotonic() + 10  # the panel's own done-callback adds them
        while not region_buttons() and time.monotonic() < deadline:
            time.sleep(0.05)
        buttons = region_buttons()
        assert [button.description for button in buttons] == ["Ask about cat"]
        buttons[0].click()
        assert "the cat" in panel.prompt.value
        assert panel.region_images[0].size == (48, 40)
        entry = wait(panel.send())
        # The follow-up sent the region (a new image in the conversation's turn).
        turns = magics.session.conversations.get("regions").turns
        assert len(turns) == 2 and len(turns[1].images) == 1
        assert turns[1].images[0].size == (48, 40)
        assert panel.region_images == []
    finally:
        magics.default_vision_model = None


def test_panel_shows_errors_instead_of_raising(model_shell):
    panel = mlx_magic.panel()
    panel.model.value = "/no/such/model"
    panel.prompt.value = "Hi"
    assert panel.send() is None
    assert "No model folder" in transcript_html(panel)


@pytest.mark.kernel
def test_panel_clicks_in_a_real_kernel(kernel):
    from kernel_helpers import execute, printed

    _, client = kernel
    reply, messages = execute(
        client, "import mlx_magic\np = mlx_magic.panel(conversation='clicks')"
    )
    assert reply["status"] == "ok"
    assert any(
        "application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})
        for m in messages
        if m["msg_type"] == "display_data"
    )
    execute(
        client,
        "p.max_tokens.value = 10\np.prompt.value = 'What is the capital of France?'\n"
        "p.send_button.click()\nentry = p.running",
    )
    assert printed(client, "entry.done.wait(120)") == "True"
    assert printed(client, "entry.state") == "done"
    assert "Paris" in printed(client, "entry.result.text")
    assert printed(client, "len(p.transcript.children)") == "2"  # the question and the answer
    execute(
        client,
        "p.max_tokens.value = 300\np.prompt.value = 'Write a long essay about Rome.'\n"
        "p.send_button.click()\nlong = p.running\nimport time; time.sleep(3)\n"
        "p.stop_button.click()",
    )
    assert printed(client, "long.done.wait(60)") == "True"
    assert printed(client, "long.state") == "cancelled"
    assert printed(client, "p.send_button.disabled") == "False"
