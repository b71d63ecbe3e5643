"""The public surface, pinned: what notebooks, configs, scripts and docs rely on
must not move when the code inside does."""

import dataclasses
import subprocess
import sys
import threading

import mlx_magic

TRAITS = [
    "aliases",
    "api_key_env",
    "connect_timeout_s",
    "default_embedding_model",
    "default_format",
    "default_model",
    "default_segment_model",
    "default_vision_model",
    "disk_cache_dir",
    "disk_cache_gb",
    "disk_cache_min_tokens",
    "draft_model",
    "endpoints",
    "first_token_timeout_s",
    "grounding",
    "judge_prompt",
    "kv_bits",
    "max_image_pixels",
    "max_images",
    "max_kv_size",
    "max_tokens",
    "memory_budget_gb",
    "num_draft_tokens",
    "prefix_cache",
    "prefix_cache_entries",
    "prefix_cache_gb",
    "runtime",
    "segment_threshold",
    "short_errors",
    "stream_interval_ms",
    "system_prompt",
    "temperature",
    "tool_timeout_s",
    "top_p",
    "trust_remote_code",
]
# Only %%mlx_vision takes these.
VISION_FLAGS = [
    "-i",
    "--image",
    "-v",
    "--video",
    "--fps",
    "--max-frames",
    "--region",
    "--marks",
    "--segment",
    "--max-pixels",
]
# Only %%mlx takes these (the logit lens reads text answers).
TEXT_ONLY_FLAGS = [
    "--lens",
    "--max-kv-size",
    "--kv-bits",
    "--tools",
    "--max-steps",
    "--auto",
    "--show-prompt",
]
TEXT_FLAGS = [
    "--attention",
    "--background",
    "--batch-size",
    "--chat",
    "--draft",
    "--embed",
    "--error",
    "--format",
    "--map",
    "--max-tokens",
    "--min-p",
    "--model",
    "--no-interpolate",
    "--no-think",
    "--num-draft",
    "--out",
    "--probs",
    "--raw",
    "--repetition-penalty",
    "--resume",
    "--schema",
    "--score",
    "--score-by",
    "--judge",
    "--seed",
    "--system",
    "--temp",
    "--think",
    "--think-budget",
    "--top-k",
    "--top-p",
    "--trust-remote-code",
    "-b",
    "-c",
    "-f",
    "-m",
    "-n",
    "-o",
    "-s",
]
COMMANDS = [
    "load",
    "unload",
    "models",
    "pull",
    "rm",
    "status",
    "memory",
    "cache",
    "chat",
    "stats",
    "jobs",
    "cancel",
    "wait",
    "panel",
    "runtime",
    "restart",
    "connect",
    "disconnect",
    "bench",
    "replay",
    "branch",
    "lens",
    "attention",
    "marks",
    "segment",
    "embed",
    "nearest",
    "plot",
    "map",
    "tools",
]
CSS_CLASSES = [
    "mlx-magic-answer",
    "mlx-magic-answer-now",
    "mlx-magic-attention",
    "mlx-magic-attention-heatmap",
    "mlx-magic-columns",
    "mlx-magic-draft",
    "mlx-magic-footer",
    "mlx-magic-lens",
    "mlx-magic-notice",
    "mlx-magic-preview",
    "mlx-magic-previews",
    "mlx-magic-probs",
    "mlx-magic-result",
    "mlx-magic-scores",
    "mlx-magic-status",
    "mlx-magic-thinking",
    "mlx-magic-text",
    "mlx-magic-token",
]
ENVIRONMENT = [
    "MLX_MAGIC_CACHE",
    "MLX_MAGIC_DEFAULT_MODEL",
    "MLX_MAGIC_DEFAULT_VISION_MODEL",
    "MLX_MAGIC_WORKER_TEST_HOOKS",
]


def option_strings(method):
    return sorted(s for action in method.parser._actions for s in action.option_strings)


def test_package_exports():
    assert sorted(mlx_magic.__all__) == [
        "MLXMagics",
        "gpu_lock",
        "load_ipython_extension",
        "panel",
        "unload_ipython_extension",
    ]
    from mlx_magic.engine import stepping, text_generation, vision_generation
    from mlx_magic.runtime import thread

    assert isinstance(mlx_magic.gpu_lock, type(threading.RLock()))
    for module in (stepping, text_generation, vision_generation, thread):
        assert module.gpu_lock is mlx_magic.gpu_lock, module.__name__
    assert callable(mlx_magic.load_ipython_extension)
    assert callable(mlx_magic.unload_ipython_extension)
    assert callable(mlx_magic.panel)


def test_traits_magics_flags_and_commands():
    magics = mlx_magic.MLXMagics
    assert sorted(magics.class_trait_names(config=True)) == TRAITS
    assert sorted(magics.magics["cell"]) == ["mlx", "mlx_vision"]
    assert sorted(magics.magics["line"]) == ["mlx"]
    assert option_strings(magics.mlx_cell) == sorted(TEXT_FLAGS + TEXT_ONLY_FLAGS)
    assert option_strings(magics.mlx_vision_cell) == sorted(TEXT_FLAGS + VISION_FLAGS)
    [command] = [a for a in magics.mlx_line.parser._actions if a.dest == "command"]
    assert list(command.choices) == COMMANDS
    from mlx_magic.magics import commands

    for name in COMMANDS:
        assert callable(getattr(commands, f"command_{name}")), name


def test_result_attributes():
    from mlx_magic.display.result import GenerationStats, MLXResult

    names = {f.name for f in dataclasses.fields(MLXResult)}
    assert {
        "text",
        "thinking",
        "prompt",
        "model",
        "finish_reason",
        "stats",
        "tokens",
        "data",
    } <= names
    assert hasattr(MLXResult, "footer")
    stats = {f.name for f in dataclasses.fields(GenerationStats)}
    assert {
        "prompt_tokens",
        "cached_prompt_tokens",
        "prompt_tps",
        "generation_tokens",
        "generation_tps",
        "ttft_s",
        "peak_memory_gb",
        "load_s",
        "warm",
        "dropped_turns",
        "thinking_tokens",
        "thinking_s",
    } <= stats


def test_documented_modules_and_names():
    from mlx_magic.runtime.remote import RemoteRuntime
    from mlx_magic.runtime.remote.runtime import RemoteRuntime as Same
    from mlx_magic.testing import tiny_models

    assert RemoteRuntime is Same
    assert callable(tiny_models.build_tiny_llama) and callable(tiny_models.build_tiny_vlm)
    from mlx_magic.magics import conversations
    from mlx_magic.runtime import thread

    assert thread.THREAD_NAME == "mlx_magic-runtime"
    assert conversations._FORMAT == "mlx_magic.conversation/1"
    from mlx_magic.runtime.process import runtime as process_runtime

    assert process_runtime.WORKER_MODULE == "mlx_magic.worker"


def package_text():
    from pathlib import Path

    root = Path(mlx_magic.__file__).parent
    return "\n".join(path.read_text() for path in root.rglob("*.py"))


def test_css_classes_and_environment_variables_are_still_used():
    text = package_text()
    for name in CSS_CLASSES + ENVIRONMENT:
        assert name in text, name
    for name in ("panel", "prompt", "send", "stop"):
        assert f'"{name}")' in text  # mlx-magic-{name} on the panel's widgets


def test_entry_points_answer_help():
    from pathlib import Path

    clone = Path(mlx_magic.__file__).resolve().parent.parent  # benchmarks/ runs from a clone
    for module in ("mlx_magic", "benchmarks", "benchmarks.gpu"):
        out = subprocess.run(
            [sys.executable, "-m", module, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=clone,
        )
        assert out.returncode == 0, (module, out.stderr)
    out = subprocess.run(
        [sys.executable, "-m", "mlx_magic", "install-kernel", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "--sys-prefix" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "mlx_magic.testing.tiny_models", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "llama" in out.stdout


def test_hub_allow_patterns_are_mlx_lms():
    from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

    from mlx_magic.models.downloads import HUB_ALLOW_PATTERNS

    assert HUB_ALLOW_PATTERNS == list(DEFAULT_ALLOW_PATTERNS)


def test_every_mlx_command_is_in_the_manual_and_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    manual = mlx_magic.MLXMagics.mlx_line.__doc__
    for name in COMMANDS:
        assert f"%mlx {name}" in manual, name
        assert f"%mlx {name}" in readme.split("## `%mlx`")[1].split("## Settings")[0], name


def test_how_it_works_names_every_module():
    from pathlib import Path

    root = Path(mlx_magic.__file__).parent
    readme = (root.parent / "README.md").read_text()
    section = readme.split("## How it works")[1].split("## Benchmarks")[0]
    missing = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py") or path.parent == root
        if f"`{path.name}`" not in section
    ]
    assert missing == [], "README's 'How it works' does not name these modules"
