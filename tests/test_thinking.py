"""Reasoning made visible: ``<think> … </think>`` told apart from the answer
(across chunk boundaries), counted apart, shown in a "Thinking" block, cut by
``--think-budget`` or "Answer now", switched by ``--think`` / ``--no-think``,
and read from a server's reasoning deltas.

The embedded SmolLM2 and the tiny llama do not think: a scripted logits
processor (``forced_answer``) makes the real generation path write the tags,
and copies of the tiny llama carry Qwen3-style chat templates."""

import http.server
import json
import shutil
import time

import pytest
from IPython.core.error import UsageError

from mlx_magic.display.thinking_stream import ThinkingStream
from mlx_magic.display.thinking_view import thinking_bundle, thinking_summary
from mlx_magic.display.views import CollectingView
from mlx_magic.vocabulary.job import Job
from mlx_magic.vocabulary.thinking import ThinkingSplitter, prompt_opens_thinking
from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec, TokenChunk

from conftest import make_shell, run

THOUGHT = "<think>\nThe user wants the capital. It is Paris.\n</think>\n\nParis."


def split(chunks, opened=False):
    splitter, pieces = ThinkingSplitter(opened), []
    for chunk in chunks:
        pieces += splitter.feed(chunk)
    pieces += splitter.flush()
    thinking = "".join(p for is_thinking, p in pieces if is_thinking)
    answer = "".join(p for is_thinking, p in pieces if not is_thinking)
    return thinking, answer


def test_tags_are_found_wherever_a_chunk_boundary_falls():
    for first in range(len(THOUGHT) + 1):
        for second in range(first, len(THOUGHT) + 1, 3):
            chunks = [THOUGHT[:first], THOUGHT[first:second], THOUGHT[second:]]
            assert split(chunks) == ("The user wants the capital. It is Paris.\n", "Paris."), chunks


def test_text_without_thinking_is_left_as_it_came():
    assert split(["  Hello", " <think> is a tag"]) == ("", "  Hello <think> is a tag")
    assert split(["<", "b>bold</b>"]) == ("", "<b>bold</b>")
    assert split(["<thi"]) == ("", "<thi")  # the text ended before the tag did
    # A template that opened the block: the text is thinking until </think>.
    assert split(["I reason.\n</th", "ink>\n\nAnswer."], opened=True) == ("I reason.\n", "Answer.")
    assert split(["<think>cut off at max tokens </thi"]) == ("cut off at max tokens </thi", "")


def test_a_prompt_that_ends_inside_a_thinking_block_is_recognised():
    assert prompt_opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not prompt_opens_thinking("<|im_start|>assistant\n")


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


class RecordingView(CollectingView):
    def __init__(self):
        super().__init__()
        self.thinking, self.done = [], None

    def think(self, text, tokens, seconds, answer_now):
        self.thinking.append((text, tokens, seconds, answer_now))

    def thinking_done(self, text, tokens, seconds, note=""):
        self.done = (text, tokens, seconds, note)


def job_for(**request):
    return Job(GenerationRequest(model=ModelSpec("m", "m", "m"), prompt="hi", **request))


def test_thinking_is_counted_and_timed_apart_from_the_answer():
    clock, view = Clock(), RecordingView()
    stream = ThinkingStream(job_for(), view, None, clock)
    answer = ""
    for text in ["<thi", "nk>", "\nStep one.", " Step two.", "\n</think>", "\n\n", "Done", "."]:
        answer += stream.take(TokenChunk(text=text, token_ids=(1,)))
        clock.now += 0.5
    answer += stream.flush()
    assert answer == "Done."
    assert stream.text == "Step one. Step two."
    assert stream.tokens == 5  # the tags' tokens are the thinking's
    assert view.done == ("Step one. Step two.", 5, pytest.approx(2.0), "")
    assert [t for t, *_ in view.thinking] == ["\nStep one.".lstrip(), " Step two.", "\n"]


def test_a_servers_reasoning_deltas_fill_the_same_block():
    view = RecordingView()
    stream = ThinkingStream(job_for(), view, None)
    assert stream.take(TokenChunk(text="Let me see.", thinking=True)) == ""
    assert stream.take(TokenChunk(text=" Yes.", thinking=True)) == ""
    assert stream.take(TokenChunk(text="Paris.")) == "Paris."
    assert stream.tokens == 2 and view.done[0] == "Let me see. Yes."


def test_the_note_says_why_the_thinking_ended_early():
    job = job_for(think_budget=2)
    view = RecordingView()
    stream = ThinkingStream(job, view, None)
    for text in ["<think>", "a", "b", "</think>", "x"]:
        stream.take(TokenChunk(text=text, token_ids=(1,)))
    assert view.done[3] == "budget of 2 tokens"
    asked = job_for()
    asked.thinking_can_end = True
    view = RecordingView()
    stream = ThinkingStream(asked, view, None)
    stream.take(TokenChunk(text="<think>a", token_ids=(1,)))
    assert view.thinking[0][3] == asked.end_thinking  # the button's action
    asked.end_thinking()
    stream.take(TokenChunk(text="</think>x", token_ids=(1,)))
    assert view.done[3] == "ended by Answer now"


def test_the_finished_block_is_folded_html_with_a_plain_copy():
    summary = thinking_summary(1234, 5.25, note="ended by Answer now")
    assert summary == "Thinking · 1,234 tokens · 5.2 s · ended by Answer now"
    bundle = thinking_bundle("  a < b\n", summary)
    assert bundle["text/html"].startswith('<details class="mlx-magic-thinking">')
    assert '<details class="mlx-magic-thinking" open' not in bundle["text/html"]
    assert "a &lt; b" in bundle["text/html"]
    assert bundle["text/plain"] == f"[{summary}]\na < b"


def test_the_new_values_cross_the_worker_pipe():
    from mlx_magic.runtime.process import rpc
    from mlx_magic.vocabulary.values import ThinkingOpened

    for value in (
        ThinkingOpened(),
        TokenChunk(text="hm", thinking=True),
        GenerationRequest(model=ModelSpec("m", "m", "m"), prompt="p", think=False, think_budget=7),
    ):
        assert rpc.decode(json.loads(json.dumps(rpc.encode(value)))) == value


# ---- a server that sends its reasoning apart (before the tests that keep a
# shell with the extension loaded: the extension lives in one shell at a time) ---------------------------------------------


class ReasoningHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._send_json({"object": "list", "data": [{"id": "reasoner", "object": "model"}]})

    def _send_json(self, data):
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        deltas = [
            {"role": "assistant", "reasoning_content": "The user greets me."},
            {"reasoning": " I greet back."},
            {"content": "Hello"},
            {"content": " there!"},
        ]
        events = [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        usage = {
            "prompt_tokens": 9,
            "completion_tokens": 12,
            "completion_tokens_details": {"reasoning_tokens": 8},
        }
        events.append({"choices": [], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.01)
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True


@pytest.fixture
def reasoning_server():
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ReasoningHandler)
    server.bodies = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_servers_reasoning_fills_the_thinking_and_the_flags_reach_its_template(
    reasoning_server, capsys
):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    url = f"http://127.0.0.1:{reasoning_server.server_address[1]}"
    try:
        run(shell, "%config MLXMagics.runtime = 'remote'")
        run(shell, f"%config MLXMagics.endpoints = [{url!r}]")
        run(shell, "%%mlx --no-think\nHi")
        result = shell.user_ns["_mlx"]
        assert result.thinking == "The user greets me. I greet back."
        assert result.text == "Hello there!"
        assert (result.stats.thinking_tokens, result.stats.generation_tokens) == (8, 12)
        assert reasoning_server.bodies[-1]["chat_template_kwargs"] == {"enable_thinking": False}
        run(shell, "%%mlx\nHi")
        assert "chat_template_kwargs" not in reasoning_server.bodies[-1]
    finally:
        shell.extension_manager.unload_extension("mlx_magic")
    assert "[thinking…]\nThe user greets me. I greet back.\n[Thinking · 2 tokens" in (
        capsys.readouterr().out
    )


# ---- with the embedded model, in the kernel's process -------------------------------

LONG_THOUGHT = "<think>\n" + "I count sheep. " * 15 + "\n</think>\n\nThe answer is 42."


@pytest.mark.model
def test_thinking_and_answer_are_kept_apart_in_the_result(model_shell, capsys):
    from mlx_magic.testing.scripted import forced_answer

    with forced_answer(THOUGHT):
        run(model_shell, "%%mlx -n 60\nWhat is the capital of France?")
    result = model_shell.user_ns["_mlx"]
    assert result.thinking == "The user wants the capital. It is Paris."
    assert result.text == "Paris."
    stats = result.stats
    assert 0 < stats.thinking_tokens < stats.generation_tokens
    assert stats.thinking_s > 0
    answer = stats.generation_tokens - stats.thinking_tokens
    assert f"({stats.thinking_tokens} thinking + {answer} answer)" in result.footer
    printed = capsys.readouterr().out
    assert "[thinking…]\nThe user wants the capital. It is Paris.\n[Thinking · " in printed
    assert " s]\nParis.\n[" in printed  # the answer after the thinking's summary


@pytest.mark.model
def test_a_thinking_budget_forces_the_closing_tag_and_the_model_answers(model_shell):
    from mlx_magic.testing.scripted import forced_answer

    with forced_answer(LONG_THOUGHT):
        run(model_shell, "%%mlx -n 200 --think-budget 12\nWhat is the answer?")
    result = model_shell.user_ns["_mlx"]
    assert result.text == "The answer is 42."
    assert result.thinking.startswith("I count sheep.") and len(result.thinking) < 100
    closing = 5  # "\n</think>\n\n" in SmolLM2's tokens
    assert 12 < result.stats.thinking_tokens <= 12 + closing + 4  # + the <think> tag
    with forced_answer(LONG_THOUGHT):
        run(model_shell, "%%mlx -n 200 --think-budget 1000\nWhat is the answer?")
    assert model_shell.user_ns["_mlx"].thinking == ("I count sheep. " * 15).strip()


@pytest.mark.model
@pytest.mark.parametrize(
    "flags, message",
    [
        ("--think-budget 0", "--think-budget must be at least 1 token, not 0"),
        ("--think-budget -3", "--think-budget must be at least 1 token, not -3"),
        ("--think --no-think", "--think and --no-think contradict each other: keep one"),
        ("--no-think --think-budget 5", "--think-budget limits a thinking that --no-think"),
        ("--raw --think", "--think sets the chat template's switch, which --raw leaves out"),
        ("--think", "--think: the chat template of smollm2 has no enable_thinking switch"),
        ("--no-think", "--no-think: the chat template of smollm2 has no enable_thinking"),
    ],
)
def test_thinking_mistakes_are_one_line_and_change_nothing(model_shell, flags, message):
    model_shell.user_ns["_mlx"] = sentinel = object()
    with pytest.raises(UsageError) as error:
        run(model_shell, f"%%mlx -n 5 {flags}\nHi")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert model_shell.user_ns["_mlx"] is sentinel


@pytest.mark.model
def test_vision_models_refuse_the_thinking_flags(model_shell, tiny_vlm):
    run(model_shell, "from PIL import Image; red = Image.new('RGB', (8, 8), 'red')")
    model_shell.user_ns["_mlx"] = sentinel = object()
    with pytest.raises(UsageError, match="work with text models for now"):
        run(model_shell, f"%%mlx_vision -m {tiny_vlm} -i red --think-budget 10\nWhat is it?")
    assert model_shell.user_ns["_mlx"] is sentinel


def test_a_server_is_not_given_a_budget_it_cannot_keep():
    from mlx_magic.magics.edge import as_usage_errors
    from mlx_magic.magics.options import CellOptions, check_thinking

    with (
        pytest.raises(UsageError, match="--think-budget works with local models"),
        as_usage_errors(),
    ):
        check_thinking(CellOptions(think_budget=10), ModelSpec("m", "m", "m"), "remote")
    check_thinking(CellOptions(think=True), ModelSpec("m", "m", "m"), "remote")  # sent on


# ---- tiny llamas with the chat templates of reasoning models ---------------------------

GENERATION_PROMPT = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
QWEN3_STYLE = (
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
R1_STYLE = "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"


def with_template(tiny_llama, folder, generation_prompt):
    shutil.copytree(tiny_llama, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    assert GENERATION_PROMPT in config["chat_template"]
    config["chat_template"] = config["chat_template"].replace(GENERATION_PROMPT, generation_prompt)
    config_path.write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def reasoning_llamas(tiny_llama, tmp_path_factory):
    base = tmp_path_factory.mktemp("reasoning")
    return {
        "qwen3": with_template(tiny_llama, base / "qwen3-style", QWEN3_STYLE),
        "r1": with_template(tiny_llama, base / "r1-style", R1_STYLE),
    }


@pytest.mark.model
def test_think_and_no_think_set_the_templates_switch(model_shell, reasoning_llamas):
    model = reasoning_llamas["qwen3"]
    prompts = {}
    for flag in ("", "--think", "--no-think"):
        run(model_shell, f"%%mlx -m {model} -n 2 {flag}\nHi")
        prompts[flag] = model_shell.user_ns["_mlx"].stats.prompt_tokens
    # enable_thinking false writes an empty block into the prompt; without a
    # flag mlx-lm decides (off, for a tokenizer without a <think> token).
    assert prompts["--think"] < prompts["--no-think"] == prompts[""]


@pytest.mark.model
def test_a_template_that_opens_the_block_starts_the_text_as_thinking(model_shell, reasoning_llamas):
    from mlx_magic.testing.scripted import forced_answer

    with forced_answer("I reason first.\n</think>\n\nThe answer."):
        run(model_shell, f"%%mlx -m {reasoning_llamas['r1']} -n 80\nHi")
    result = model_shell.user_ns["_mlx"]
    assert (result.thinking, result.text) == ("I reason first.", "The answer.")


@pytest.mark.model
@pytest.mark.parametrize("raw", ["", "--raw"])
def test_a_prompt_that_ends_with_think_does_not_make_a_plain_model_think(
    model_shell, tiny_llama, raw
):
    from mlx_magic.testing.scripted import forced_answer

    with forced_answer("A plain answer."):
        run(model_shell, f"%%mlx -m {tiny_llama} -n 40 {raw}\nWhat comes after <think>")
    result = model_shell.user_ns["_mlx"]
    assert (result.thinking, result.text) == ("", "A plain answer.")
    assert result.stats.thinking_tokens == 0


class AnswerNowView(RecordingView):
    """Clicks "Answer now" as soon as the thinking shows."""

    def think(self, text, tokens, seconds, answer_now):
        super().think(text, tokens, seconds, answer_now)
        if answer_now is not None and len(self.thinking) == 1:
            answer_now()


@pytest.mark.model
def test_answer_now_ends_the_thinking_of_a_running_generation(model_shell, reasoning_llamas):
    from mlx_magic.display.streaming import stream_job
    from mlx_magic.testing.scripted import forced_answer

    session = model_shell.magics_manager.registry["MLXMagics"].session
    spec = session.resolve(str(reasoning_llamas["qwen3"]))
    thought = "<think>\n" + "Hmm. " * 150 + "\n</think>\n\nNow."
    with forced_answer(thought):
        job = session.runtime.generate(GenerationRequest(model=spec, prompt="Hi"))
        view = AnswerNowView()
        outcome = stream_job(job, view, interval_s=0.05)
    assert job.thinking_can_end
    assert outcome.result.text == "Now."
    assert outcome.result.stats.thinking_tokens < 150
    assert view.done[3] == "ended by Answer now"


# ---- in a real kernel: the block, and "Answer now" clicked while the cell runs -----------


@pytest.mark.model
@pytest.mark.kernel
def test_in_a_kernel_the_thinking_block_folds_and_answer_now_is_heard_mid_cell(kernel):
    from kernel_helpers import execute, printed

    _, client = kernel
    thought = "<think>\n" + "Let me think step by step. " * 300 + "\n</think>\n\nDone thinking."
    code = (
        "from mlx_magic.testing.scripted import forced_answer\n"
        f"with forced_answer({thought!r}):\n"
        "    get_ipython().run_cell_magic('mlx', '-n 2000 --think-budget 5000 -f markdown', 'Think.')\n"
    )
    button = {}

    def click_once_the_button_exists(message):
        content = message["content"]
        if message["msg_type"] == "comm_open":
            if content["data"]["state"].get("_model_name") == "ButtonModel":
                button["id"] = content["comm_id"]
        if message["msg_type"] == "comm_msg" and "id" in button and "clicked" not in button:
            # The live block is updating: the cell is still running. Click.
            button["clicked"] = time.monotonic()
            click = client.session.msg(
                "comm_msg",
                {
                    "comm_id": button["id"],
                    "data": {"method": "custom", "content": {"event": "click"}},
                },
            )
            client.shell_channel.send(click)

    reply, messages = execute(client, code, timeout=600, on_message=click_once_the_button_exists)
    assert reply["status"] == "ok", reply
    assert "clicked" in button
    accordions = [
        m
        for m in messages
        if m["msg_type"] == "comm_open"
        and m["content"]["data"]["state"].get("_model_name") == "AccordionModel"
    ]
    assert len(accordions) == 1
    folded = [
        m["content"]["data"]
        for m in messages
        if m["msg_type"] == "update_display_data"
        and "mlx-magic-thinking" in m["content"]["data"].get("text/html", "")
    ]
    assert len(folded) == 1 and "ended by Answer now" in folded[0]["text/plain"]
    assert folded[0]["text/html"].startswith('<details class="mlx-magic-thinking">')
    assert printed(client, "_mlx.text") == "Done thinking."
    assert int(printed(client, "_mlx.stats.thinking_tokens")) < 1500
    rendered = [
        m["content"]["data"]
        for m in messages
        if m["msg_type"] in ("display_data", "update_display_data")
        and "text/plain" in m["content"]["data"]
        and "text/markdown" in m["content"]["data"]
    ]
    assert rendered[-1]["text/markdown"] == "Done thinking."


def test_a_think_token_in_the_vocabulary_makes_thinking_possible():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from mlx_magic.engine.thinking_budget import thinking_is_possible
    from mlx_magic.vocabulary.values import GenerationRequest, ModelSpec

    words = Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>")
    request = GenerationRequest(model=ModelSpec("m", "m", "m"), prompt="a")
    assert not thinking_is_possible(tokenizer, request, opened=False)
    tokenizer.add_tokens(["<think>"])
    assert thinking_is_possible(tokenizer, request, opened=False)


def test_the_answer_now_hook_is_in_place_before_the_button_says_anything(monkeypatch):
    # A frontend may click as soon as it sees a message of the button's; the
    # click is heard mid-cell only once the hook is in place (the flaky
    # kernel test above clicked on the add_class message, before the hook).
    import ipywidgets

    from mlx_magic.display import thinking_view

    order = []
    monkeypatch.setattr(thinking_view, "on_click_at_once", lambda *_: order.append("hook"))
    real_add_class = ipywidgets.Button.add_class
    monkeypatch.setattr(
        ipywidgets.Button,
        "add_class",
        lambda self, name: (order.append("message"), real_add_class(self, name))[1],
    )
    thinking_view.ThinkingBlock(answer_now=lambda: None, widgets=True)
    assert order[:2] == ["hook", "message"]
