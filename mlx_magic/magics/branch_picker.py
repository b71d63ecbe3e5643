"""The "Branch here" picker under a ``--probs`` answer in a notebook: choose a
token and one of its alternatives, and the answer goes on from there with it
(:mod:`mlx_magic.magics.branching`), shown beside the original."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mlx_magic.display.branch_view import branch_bundle
from mlx_magic.display.result import MLXResult
from mlx_magic.display.views import TerminalView
from mlx_magic.magics.branching import run_branch

if TYPE_CHECKING:
    from mlx_magic.magics.session import Session


class BranchPicker:
    """Two drop-downs (the token, its alternative) and a button, with an
    output area where the branch streams and the two answers are compared."""

    def __init__(self, session: Session, result: MLXResult) -> None:
        import ipywidgets as widgets

        self.session, self.result = session, result
        steps = [
            (f"{number}: {token.text!r} ({math.exp(token.logprob):.0%})", number)
            for number, token in enumerate(result.tokens, 1)
            if token.top and token.logprob is not None
        ]
        self.step = widgets.Dropdown(options=steps, description="Token")
        self.alternative = widgets.Dropdown(description="instead")
        self.button = widgets.Button(description="Branch here", icon="code-fork")
        self.output = widgets.Output()
        self.step.observe(lambda _: self._fill_alternatives(), names="value")
        self._fill_alternatives()
        self.button.on_click(lambda _: self._clicked())
        self.widget = widgets.VBox(
            [widgets.HBox([self.step, self.alternative, self.button]), self.output]
        )
        self.widget.add_class("mlx-magic-branch-picker")

    def _fill_alternatives(self) -> None:
        token = self.result.tokens[self.step.value - 1]
        options = [
            (f"{text!r} ({math.exp(logprob):.1%})", rank)
            for rank, (token_id, text, logprob) in enumerate(token.top, 1)
            if token_id != token.id
        ]
        self.alternative.options = options
        # New options leave no choice made: the most likely one, ready to branch.
        self.alternative.index = 0 if options else None

    def _clicked(self) -> None:
        from mlx_magic.errors import UserError

        try:
            self.branch()
        except UserError as error:  # one line in the picker, as a cell would show it
            with self.output:
                print(f"UsageError: {error}")

    def branch(self) -> MLXResult:
        """Generate the branch now (what the button does)."""
        from IPython.display import HTML, display

        step = self.step.value
        chosen = tuple(self.result.tokens[step - 1].top[self.alternative.value - 1])
        with self.output:
            branch = run_branch(self.session, self.result, step, chosen, TerminalView())
            display(HTML(branch_bundle(self.result, branch)["text/html"]))
        return branch
