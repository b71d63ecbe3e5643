"""The OpenAI-compatible request bodies (no server needed: these are dicts)."""

import base64
import io

from PIL import Image

from mlx_magic.errors import one_line
from mlx_magic.runtime.remote.openai_wire import request_body
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec, SamplingParams

SPEC = ModelSpec(name="vlm", key="vlm", path="vlm", source="served", kind="vision")


def png_size(part):
    data = part["image_url"]["url"].split(",", 1)[1]
    return Image.open(io.BytesIO(base64.b64decode(data))).size


def test_each_image_travels_in_the_turn_that_sent_it():
    first, second = Image.new("RGB", (8, 6), "red"), Image.new("RGB", (5, 4), "blue")
    request = GenerationRequest(
        model=SPEC,
        prompt="And this one?",
        system="Be brief.",
        history=(("What is this?", "A red square."), ("Its colour?", "Red.")),
        history_images=(1, 0),
        images=(first, second),
        image_keys=("a", "b"),
        sampling=SamplingParams(max_tokens=7, seed=3),
    )
    body = request_body(request, "served-model", raw=False)
    messages = body["messages"]
    assert [m["role"] for m in messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    turn_one, turn_two, own = messages[1]["content"], messages[3]["content"], messages[5]["content"]
    assert turn_one[0] == {"type": "text", "text": "What is this?"}
    assert [png_size(part) for part in turn_one[1:]] == [(8, 6)]
    assert turn_two == "Its colour?"  # no image: plain text
    assert own[0]["text"] == "And this one?" and [png_size(p) for p in own[1:]] == [(5, 4)]
    assert body["model"] == "served-model" and body["max_tokens"] == 7 and body["seed"] == 3
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_a_raw_request_is_one_prompt_without_a_model_when_none_is_named():
    request = GenerationRequest(
        model=SPEC, prompt="Go on", raw=True, system="S", history=(("Q", "A"),)
    )
    body = request_body(request, None, raw=True)
    assert body["prompt"] == "S\n\nQ\n\nA\n\nGo on" and "model" not in body
    assert "messages" not in body


def test_one_line_collapses_whitespace_and_cuts():
    assert one_line("a\n  b\tc") == "a b c"
    assert one_line("x" * 10, 5) == "xxxx…"
    assert one_line(ValueError("bad\nthing")) == "bad thing"


def test_dropping_the_oldest_turns_keeps_each_remaining_image_with_its_turn():
    first, second = Image.new("RGB", (8, 6)), Image.new("RGB", (5, 4))
    request = GenerationRequest(
        model=SPEC,
        prompt="Now?",
        history=(("One?", "1."), ("Two?", "2.")),
        history_images=(1, 1),
        images=(first, second),
    )

    def user_message(text, images):
        return {"role": "user", "content": text, "sizes": [image.size for image in images]}

    kept = request.chat_messages(user_message, history=request.history[1:])
    assert [(m["content"], m.get("sizes")) for m in kept] == [
        ("Two?", [(5, 4)]),
        ("2.", None),
        ("Now?", []),
    ]
    assert request.plain_prompt(request.history[1:]) == "Two?\n\n2.\n\nNow?"


def test_an_earlier_turn_s_tool_calls_go_on_the_wire_as_openai_messages():
    between = (
        {"role": "assistant", "content": "",
         "tool_calls": [{"id": "call_1_0", "type": "function",
                         "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
        {"role": "tool", "tool_call_id": "call_1_0", "name": "add", "content": "5"},
    )  # fmt: skip
    request = GenerationRequest(
        model=SPEC, prompt="Sure?", history=(("2 + 3?", "It is 5.", between), ("Hi", "Hello."))
    )
    sent = request_body(request, "m", raw=False)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user",
                                         "assistant", "user"]  # fmt: skip
    call = sent[1]["tool_calls"][0]
    assert sent[1]["content"] is None and call["function"]["arguments"] == '{"a": 2, "b": 3}'
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1_0", "content": "5"}
    assert request.plain_prompt() == "2 + 3?\n\nIt is 5.\n\nHi\n\nHello.\n\nSure?"
