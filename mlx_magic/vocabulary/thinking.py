"""Tell a reasoning model's thinking (``<think> … </think>``) from its answer,
in text that arrives in pieces.

Qwen3, the DeepSeek-R1 distills, SmolLM3 and others write their reasoning
between ``<think>`` and ``</think>`` before the answer. Where the tags are not
single tokens (or a server streams them as text), a tag can be split across
chunks: ``"<thi"`` then ``"nk>"``. :class:`ThinkingSplitter` holds back the
end of a chunk while it could still begin a tag, so no tag ever leaks into
either text. Plain text (no MLX): the display and the engine both use it.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

#: Where the splitter is: nothing but whitespace so far (a ``<think>`` may
#: still come), inside the thinking, or in the answer.
START, THINKING, ANSWER = "start", "thinking", "answer"


class ThinkingSplitter:
    """Splits streamed text into thinking and answer pieces.

    A thinking block is recognised only where the answer begins (after
    whitespace at most), as these models write it; a ``<think>`` later in an
    answer is text. Whitespace around the tags is dropped: the thinking and
    the answer start at their first character.

    Args:
        opened: the prompt already opened the block (the chat template wrote
            ``<think>``), so the text starts inside it.
    """

    def __init__(self, opened: bool = False):
        self.state = THINKING if opened else START
        #: Whether a thinking block was opened (by the prompt or the text).
        self.saw_thinking = opened
        self._held = ""
        self._strip = opened  # drop the whitespace that follows a tag

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """The pieces of ``text`` that can be told apart now, in order, as
        ``(is_thinking, piece)``; the end of a possible tag is held back."""
        pieces: list[tuple[bool, str]] = []
        text = self._held + text
        self._held = ""
        while text:
            if self.state == START:
                rest = text.lstrip()
                if rest.startswith(OPEN_TAG):
                    self.state, self.saw_thinking, self._strip = THINKING, True, True
                    text = rest[len(OPEN_TAG) :]
                elif not rest or OPEN_TAG.startswith(rest):
                    self._held = text  # whitespace, or the beginning of "<think>"
                    break
                else:
                    self.state = ANSWER  # the text is kept as it came
            elif self._strip:
                text = text.lstrip()
                self._strip = not text
            elif self.state == THINKING:
                end = text.find(CLOSE_TAG)
                if end >= 0:
                    pieces.append((True, text[:end]))
                    self.state, self._strip = ANSWER, True
                    text = text[end + len(CLOSE_TAG) :]
                    continue
                keep = _tag_start_at_end(text, CLOSE_TAG)
                pieces.append((True, text[: len(text) - keep]))
                self._held = text[len(text) - keep :]
                break
            else:
                pieces.append((False, text))
                break
        return [(thinking, piece) for thinking, piece in pieces if piece]

    def flush(self) -> list[tuple[bool, str]]:
        """What is still held back (the text ended): as thinking inside the
        block, else as answer."""
        held, self._held = self._held, ""
        if not held or (self._strip and not held.strip()):
            return []
        if self.state == START:
            self.state = ANSWER
        return [(self.state == THINKING, held)]


def _tag_start_at_end(text: str, tag: str) -> int:
    """The length of the longest end of ``text`` that begins ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


def prompt_opens_thinking(prompt_text: str) -> bool:
    """Whether a rendered prompt ends by opening a thinking block (as the
    DeepSeek-R1 templates end theirs, ``<think>\n``): the model's text begins
    as thinking. A ``<think>`` the user wrote is followed by the template's
    own turn markers, so it opens nothing."""
    return prompt_text.rstrip().endswith(OPEN_TAG)
