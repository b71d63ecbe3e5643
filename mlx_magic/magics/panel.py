"""A small chat panel in the notebook (``%mlx panel``): prompt box, Send and
Stop, a model picker, sliders, and for vision models images from uploads or
notebook variables.

The panel is a front end to the same runtime, caches and conversations as
the magics: its conversation (``panel`` by default) can be continued with
``%%mlx --chat panel``. Answers stream from a helper thread into widgets, so
the kernel stays free while the panel generates.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Optional, Sequence

from mlx_magic.display.widget_view import WidgetStreamView
from mlx_magic.magics.background import BackgroundJob
from mlx_magic.magics.options import CellOptions
from mlx_magic.magics.session import Session

if TYPE_CHECKING:
    from traitlets.utils.bunch import Bunch

    from mlx_magic.display.result import MLXResult
    from mlx_magic.grounding import Box
    from mlx_magic.images import LoadedImage
    from mlx_magic.magics.options import PreparedCell

PANEL_CONVERSATION = "panel"


class ChatPanel:
    """The widgets and what their buttons do.

    Args:
        session: the :class:`~mlx_magic.magics.session.Session` of the magics, shared.
        vision: show the image controls and default to the vision model.
        conversation: the conversation the panel continues.
    """

    def __init__(
        self, session: Session, *, vision: bool = False, conversation: str = PANEL_CONVERSATION
    ):
        import ipywidgets as widgets

        self.session = session
        settings = session.settings
        self.vision = vision
        self.conversation = conversation
        self.running: Optional[BackgroundJob] = None
        self.prompt = widgets.Textarea(
            placeholder="Ask something…", rows=3, layout=widgets.Layout(width="100%")
        )
        self.send_button = widgets.Button(
            description="Send", button_style="primary", icon="paper-plane"
        )
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        labelled = {"description_width": "initial"}  # labels are not cut short
        self.model = widgets.Combobox(
            options=self.model_choices(),
            value=self.default_model(),
            description="Model",
            ensure_option=False,
            style=labelled,
        )
        self.temperature = widgets.FloatSlider(
            value=settings.temperature,
            min=0.0,
            max=2.0,
            step=0.05,
            description="Temperature",
            style=labelled,
        )
        self.max_tokens = widgets.BoundedIntText(
            value=min(settings.max_tokens, 4096),
            min=1,
            max=4096,
            description="Max tokens",
            style=labelled,
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=True, description="Images")
        self.image_variables = widgets.SelectMultiple(
            options=self.image_variable_names(), description="Variables", rows=3
        )
        self.transcript = widgets.VBox([])
        # Regions picked from drawn boxes, sent with the next turn.
        self.region_images: list = []
        self._turn_images: tuple = ()
        self._conversation_base = conversation
        self._conversation_count = 1
        self.model.observe(self._model_changed, "value")
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())
        controls = [self.model, self.temperature, self.max_tokens]
        if vision:
            controls += [self.upload, self.image_variables]
        self.widget = widgets.VBox(
            [
                self.transcript,
                self.prompt,
                widgets.HBox([self.send_button, self.stop_button]),
                widgets.VBox(controls),
            ]
        )
        # Stable handles for styling and for browser tests.
        for widget, name in [
            (self.widget, "panel"),
            (self.prompt, "prompt"),
            (self.send_button, "send"),
            (self.stop_button, "stop"),
        ]:
            widget.add_class(f"mlx-magic-{name}")

    # ---- choices -------------------------------------------------------------

    def default_model(self) -> str:
        if self.vision:
            return self.session.settings.default_vision_model or ""
        return self.session.settings.default_model or "smollm2"

    def model_choices(self) -> list[str]:
        """Warm models, the configured defaults and the aliases."""
        names = []
        if self.session.runtime_started:
            names += [info.name for info in self.session.runtime.models()]
        names += [
            self.session.settings.default_model or "smollm2",
            self.session.settings.default_vision_model or "",
        ]
        names += list(self.session.settings.aliases)
        return [name for index, name in enumerate(names) if name and name not in names[:index]]

    def image_variable_names(self) -> list[str]:
        """Notebook variables that hold something ``-i`` accepts."""
        from mlx_magic.images import ImageSourceError, load_images

        names = []
        for name, value in list(self.session.shell.user_ns.items()):
            if name.startswith("_") or callable(value) or isinstance(value, (str, int, float)):
                continue
            try:
                load_images([name], {name: value})
            except (ImageSourceError, TypeError, ValueError):
                continue
            names.append(name)
        return names

    # ---- actions --------------------------------------------------------------

    def send(self) -> Optional[BackgroundJob]:
        """Start a turn with the prompt box's text; returns the job."""
        text = self.prompt.value.strip()
        if not text or self.running is not None:
            return None
        from mlx_magic.magics.run import run_background

        try:
            cell, images = self._prepare(text)
        except Exception as error:  # shown in the panel: a button has no cell to fail
            self._note(f"✖ {error}")
            return None
        self.prompt.value = ""
        self.region_images = []
        self._turn_images = images
        self._add_user_turn(text, images)
        view = WidgetStreamView(cell.request.model.name)
        view.box.add_class("mlx-magic-answer")
        self.transcript.children = self.transcript.children + (view.box,)
        self.send_button.disabled, self.stop_button.disabled = True, False

        def done(entry: BackgroundJob) -> None:
            self.running = None
            self.send_button.disabled, self.stop_button.disabled = False, True
            if entry.result is None and entry.error:
                self._note(f"✖ {entry.error}")
            elif entry.result is not None and entry.result.boxes and images:
                self._show_boxes(entry.result, images)

        self.running = run_background(self.session, cell, view=view, on_done=done)
        return self.running

    def ask_about(self, box: Box) -> None:
        """Fill a follow-up about ``box``: its region goes with the next turn."""
        self.region_images = [box.crop()]
        what = f"the {box.label}" if box.label else "this region"
        self.prompt.value = f"Look closely at {what} (the region sent with this turn): "
        self._note(f"The region of {what} will be sent with the next turn")

    def _show_boxes(self, result: MLXResult, images: Sequence[LoadedImage]) -> None:
        """The turn's images with the answer's boxes drawn, and a button per box."""
        import ipywidgets as widgets

        from mlx_magic.display.previews import preview_bundle
        from mlx_magic.grounding import Grounding

        drawn = preview_bundle(
            images, grounding=Grounding(boxes=tuple(result.boxes), points=tuple(result.points))
        )
        buttons = []
        for index, box in enumerate(result.boxes):
            button = widgets.Button(
                description=f"Ask about {box.label or f'box {index + 1}'}",
                icon="search",
                tooltip=f"({box.x1:.0f}, {box.y1:.0f})–({box.x2:.0f}, {box.y2:.0f})",
            )
            button.add_class("mlx-magic-region-button")
            button.on_click(lambda _, box=box: self.ask_about(box))
            buttons.append(button)
        self.transcript.children = self.transcript.children + (
            widgets.HTML(value=drawn["text/html"]),
            widgets.HBox(buttons),
        )

    def _model_changed(self, change: Bunch) -> None:
        # A conversation keeps its model: another model starts another one.
        existing = self.session.conversations.get(self.conversation)
        if existing is not None and existing.turns:
            self._conversation_count += 1
            self.conversation = f"{self._conversation_base}-{self._conversation_count}"
            self._note(f"New conversation '{self.conversation}' with {change['new']}")

    def stop(self) -> None:
        if self.running is not None:
            self.running.job.cancel()

    def _prepare(self, text: str) -> tuple[PreparedCell, tuple[LoadedImage, ...]]:
        """The panel's turn as a prepared cell, built as a cell's would be."""
        from mlx_magic.magics.prepare import prepare

        options = CellOptions(
            model=self.model.value or None,
            max_tokens=self.max_tokens.value,
            temperature=self.temperature.value,
            chat=self.conversation,
            interpolate=False,
            background=True,
        )
        session = self.session
        resolve = session.resolve_vision if self.vision else session.resolve
        images = tuple(self._new_images()) if self.vision else ()
        return prepare(session, options, text, resolve, images), images

    def _new_images(self) -> list[LoadedImage]:
        """The selected images the conversation has not seen yet: the ones it
        has stay with the turn that sent them."""
        conversation = self.session.conversations.get(self.conversation)
        seen = (
            {key for turn in conversation.turns for key in turn.image_keys}
            if conversation
            else set()
        )
        return [image for image in self._images() if image.cache_key not in seen]

    def _images(self) -> list[LoadedImage]:
        from mlx_magic.images import load_images

        namespace = dict(self.session.shell.user_ns)
        sources = list(self.image_variables.value)
        for index, upload in enumerate(self.upload.value):
            name = f"__panel_upload_{index}"
            namespace[name] = bytes(upload["content"])
            sources.append(name)
        for index, region in enumerate(self.region_images):
            name = f"region_{index + 1}"
            namespace[name] = region
            sources.append(name)
        return load_images(sources, namespace, cache=self.session.image_cache) if sources else []

    def _add_user_turn(self, text: str, images: Sequence[LoadedImage]) -> None:
        import ipywidgets as widgets

        parts = [widgets.HTML(value=f"<b>You:</b> {html.escape(text)}")]
        if images:
            from mlx_magic.display.preview_output import PreviewOutput, drawing_usable

            # Drawn on as a cell's previews are: later cells use the marks (--region @1).
            previews = PreviewOutput(images, drawable=drawing_usable(self.session.shell))
            static = previews.bundle()
            parts.append(previews.board or widgets.HTML(value=static["text/html"]))
            self.session.latest_marks.watch(previews)
        self.transcript.children = self.transcript.children + tuple(parts)

    def _note(self, message: str) -> None:
        import ipywidgets as widgets

        self.transcript.children = self.transcript.children + (
            widgets.HTML(value=f"<em>{html.escape(message)}</em>"),
        )
