"""A draft model made from a model's own first layers, for ``--draft``.

Speculative decoding needs a small model with the *same tokenizer*. Where no
smaller model of the same family is at hand (here: only the embedded
SmolLM2), the model's first layers, its embeddings and its output head make
one: it shares the tokenizer by construction and guesses the easy tokens
(punctuation, the ends of words) the way the full model would.

    from mlx_magic.testing.drafts import build_layer_draft

    draft = build_layer_draft("smollm2", "/tmp/smollm2-draft", num_layers=8)

    %%mlx --draft {draft}
    What is the capital of France?
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import cast

from mlx_magic.testing.tiny_models.folders import atomic_build

_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def build_layer_draft(model: str, folder: str | os.PathLike, *, num_layers: int) -> Path:
    """A draft of ``model`` (a name mlx_magic resolves, or an mlx-lm folder)
    that keeps its first ``num_layers`` transformer layers; returns its folder.

    Idempotent, like the tiny models: a finished build of the same recipe is
    returned as it is.
    """
    from mlx_magic.models.resolve import resolve_model

    source = Path(resolve_model(model).path)
    config = json.loads((source / "config.json").read_text())
    total = int(config["num_hidden_layers"])
    if not 1 <= num_layers < total:
        raise ValueError(f"num_layers must be between 1 and {total - 1}, not {num_layers}")
    recipe = {"kind": "layer-draft", "source": str(source), "num_layers": num_layers}

    def fill(tmp: Path) -> None:
        import mlx.core as mx

        for name in os.listdir(source):
            if not name.endswith(".safetensors") and name != "config.json":
                path = source / name
                if path.is_file():
                    shutil.copy2(path, tmp / name)
        (tmp / "config.json").write_text(
            json.dumps({**config, "num_hidden_layers": num_layers}, indent=2)
        )
        for weights in sorted(source.glob("*.safetensors")):
            arrays = cast(dict, mx.load(str(weights)))  # a .safetensors file: a dict
            kept = {
                key: value
                for key, value in arrays.items()
                if not (m := _LAYER.match(key)) or int(m.group(1)) < num_layers
            }
            mx.save_safetensors(str(tmp / weights.name), kept, metadata={"format": "mlx"})
        index = source / "model.safetensors.index.json"
        if index.is_file():
            layout = json.loads(index.read_text())
            layout["weight_map"] = {
                key: file
                for key, file in layout.get("weight_map", {}).items()
                if not (m := _LAYER.match(key)) or int(m.group(1)) < num_layers
            }
            (tmp / index.name).write_text(json.dumps(layout, indent=2))

    return atomic_build(Path(folder), recipe, fill)
