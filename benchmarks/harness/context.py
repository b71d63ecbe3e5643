"""Settings, models and images shared by the scenarios of one run: :class:`Context`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from benchmarks.harness.baselines import InProcessText, InProcessVision
from benchmarks.harness.profile import Profile


@dataclass
class Context:
    quick: bool
    progress: Callable[[str], None]
    work: Path
    reps: int
    prefix: str = ""
    #: Other models to run on (see :mod:`.profile`); ``None``: the CPU set.
    profile: Optional[Profile] = None
    _baselines: dict = field(default_factory=dict)
    _image_count: int = 0

    @classmethod
    def create(cls, *, quick: bool, progress, work_dir=None, profile=None) -> "Context":
        if work_dir is None:
            from mlx_magic.models.embedded import cache_root

            work_dir = cache_root() / "bench"
        work = Path(work_dir).expanduser()
        (work / "images").mkdir(parents=True, exist_ok=True)
        return cls(
            quick=quick, progress=progress, work=work, reps=1 if quick else 3, profile=profile
        )

    def say(self, line: str) -> None:
        self.progress(f"{self.prefix} {line}")

    @property
    def tiny_llama(self) -> Path:
        from mlx_magic.testing.tiny_models import build_tiny_llama

        return build_tiny_llama(self.work / "tiny-llama")

    @property
    def tiny_vlm(self) -> Path:
        from mlx_magic.testing.tiny_models import build_tiny_vlm

        return build_tiny_vlm(self.work / "tiny-qwen2-vl")

    @property
    def smollm2(self) -> Path:
        """The converted folder of the embedded model (converted here if needed)."""
        from mlx_magic.engine.gguf_conversion import convert_gguf
        from mlx_magic.models.resolve import embedded_spec

        spec = embedded_spec()
        return convert_gguf(spec.gguf, spec.path)

    def aliases(self) -> str:
        """A ``%config`` line naming the tiny models ``tiny-llama`` and ``tiny-vlm``
        (and, with a profile, every model of the profile by its alias)."""
        aliases = {"tiny-llama": str(self.tiny_llama), "tiny-vlm": str(self.tiny_vlm)}
        if self.profile is not None:
            aliases.update({m.alias: str(m.path) for m in self.profile.models()})
        return f"%config MLXMagics.aliases = {aliases!r}"

    def path_of(self, alias: str) -> Path:
        """The folder of a model named by alias: a profile's, or a built-in one."""
        if alias == "smollm2":
            return self.smollm2
        if alias == "tiny-llama":
            return self.tiny_llama
        if alias == "tiny-vlm":
            return self.tiny_vlm
        if self.profile is None:
            raise KeyError(f"no model {alias!r} without a profile")
        return self.profile.path_of(alias)

    def fresh_image(self, size: int = 224) -> Path:
        """A new random PNG (never seen by any cache).

        Smooth random colour fields with a little grain: they compress about
        as well as a photo does (pure noise would not compress at all).
        """
        import numpy as np
        from PIL import Image

        self._image_count += 1
        seed = time.time_ns() % (2**32)
        rng = np.random.default_rng(seed)
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((size, size), Image.Resampling.BICUBIC), np.int16)
        grain = rng.integers(-6, 7, smooth.shape, dtype=np.int16)
        pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
        path = self.work / "images" / f"bench-{os.getpid()}-{seed}-{self._image_count}.png"
        Image.fromarray(pixels).save(path)
        return path

    def text_baseline(self, path: Path) -> "InProcessText":
        key = ("text", str(path))
        if key not in self._baselines:
            self._baselines[key] = InProcessText(path)
        return self._baselines[key]

    def vision_baseline(self, path: Path) -> "InProcessVision":
        key = ("vision", str(path))
        if key not in self._baselines:
            self._baselines[key] = InProcessVision(path)
        return self._baselines[key]
