"""A model profile: which models the scenarios run on, and at what sizes.

Without a profile (the default) every scenario uses the models it was written
for on a CPU: the embedded SmolLM2 and the tiny random models. A profile
(``python -m benchmarks --profile FILE``, a JSON file) names other model
folders instead, for a machine where those are too small to show anything,
a GPU: :mod:`benchmarks.gpu` builds random models of real shapes and writes
such a file. Each scenario reads only the part it needs:

* ``decode`` - ``overhead`` (decode and TTFT, raw mlx-lm against ``%%mlx``);
* ``runtimes`` - ``runtimes`` (thread, process, remote);
* ``fast`` - ``traffic`` and ``responsiveness`` (a model at 1,000+ tokens/s);
* ``responsive`` - the further models of ``responsiveness``;
* ``warm`` - ``warm_vs_cold`` (text models, short prompts);
* ``long`` - ``prefix`` and ``conversation`` (long pasted prompts, ``long_tokens``);
* ``vision`` - ``warm_vs_cold`` and ``repeat_image`` (``image_size`` pixels a side).

Every model entry is ``{"label", "alias", "path", "max_tokens", "reps", "small"}``
(``small``: at most 1.5 B parameters, where the warm-TTFT target applies).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class ProfileModel:
    """One model folder of a profile, with how the scenarios run it."""

    label: str
    alias: str
    path: str
    max_tokens: int = 256
    reps: int = 6
    small: bool = True


@dataclass(frozen=True)
class Profile:
    """The models and sizes the scenarios run at (see the module's docstring)."""

    name: str
    decode: tuple = ()
    runtimes: tuple = ()
    fast: Optional[ProfileModel] = None
    responsive: tuple = ()
    warm: tuple = ()
    long: Optional[ProfileModel] = None
    long_tokens: tuple = (4096, 16384)
    vision: Optional[ProfileModel] = None
    image_size: int = 1024
    #: decode, ours ÷ raw, paired per repetition: in every mode
    decode_target: float = 0.97
    #: process mode ÷ thread mode, paired per repetition
    process_target: float = 0.97
    #: a warm cell's first text on a short prompt, for the ``small`` models
    warm_ttft_target_s: float = 0.100
    cold_reps: int = 2
    notes: tuple = field(default_factory=tuple)

    def models(self) -> list:
        """Every model entry, each alias once."""
        seen: dict = {}
        groups = [self.decode, self.runtimes, self.responsive, self.warm]
        singles = [self.fast, self.long, self.vision]
        for model in [m for group in groups for m in group] + [m for m in singles if m]:
            seen.setdefault(model.alias, model)
        return list(seen.values())

    def path_of(self, alias: str) -> Path:
        for model in self.models():
            if model.alias == alias:
                return Path(model.path)
        raise KeyError(f"no model {alias!r} in profile {self.name!r}")

    def to_json(self) -> dict:
        def entry(model):
            return None if model is None else dict(model.__dict__)

        data = {}
        for key, value in self.__dict__.items():
            if isinstance(value, ProfileModel) or value is None:
                data[key] = entry(value)
            elif key in ("decode", "runtimes", "responsive", "warm"):
                data[key] = [entry(m) for m in value]
            else:
                data[key] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        def entry(value):
            return None if value is None else ProfileModel(**value)

        values = dict(data)
        for key in ("fast", "long", "vision"):
            values[key] = entry(values.get(key))
        for key in ("decode", "runtimes", "responsive", "warm"):
            values[key] = tuple(entry(v) for v in values.get(key, ()))
        for key in ("long_tokens", "notes"):
            values[key] = tuple(values.get(key, ()))
        return cls(**values)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path) -> "Profile":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
