"""A model folder's own Python code runs only when the user opts in.

A downloaded folder can name Python files in its JSON (transformers'
``auto_map``, mlx-lm's ``model_file``); loading it must not run them unless
``--trust-remote-code`` (or the ``trust_remote_code`` setting) says so.
"""

import json
import shutil

import pytest
from IPython.core.error import UsageError

from conftest import magics_of, run

# The folder's code leaves a file behind when it runs.
_CODE = """\
from pathlib import Path
Path({marker!r}).write_text("ran")
{body}
"""
_VISION_BODY = """\
from transformers import Qwen2TokenizerFast, Qwen2VLConfig
class CustomTokenizer(Qwen2TokenizerFast):
    pass
class CustomConfig(Qwen2VLConfig):
    pass
"""
_AUTO_MAP = {
    "AutoConfig": "custom_code.CustomConfig",
    "AutoTokenizer": ["custom_code.CustomTokenizer", "custom_code.CustomTokenizer"],
}


def _name_code(folder, marker, body, files_and_keys):
    (folder / "custom_code.py").write_text(_CODE.format(marker=str(marker), body=body))
    for name, key, value in files_and_keys:
        path = folder / name
        config = json.loads(path.read_text())
        config[key] = value
        path.write_text(json.dumps(config))


@pytest.mark.vision
def test_a_vision_folder_s_code_runs_only_with_trust_remote_code(shell, tiny_vlm, tmp_path):
    folder, marker = tmp_path / "custom-vlm", tmp_path / "ran"
    shutil.copytree(tiny_vlm, folder)
    _name_code(
        folder,
        marker,
        _VISION_BODY,
        [
            ("config.json", "auto_map", _AUTO_MAP),
            ("tokenizer_config.json", "auto_map", _AUTO_MAP),
        ],
    )
    run(shell, "from PIL import Image; red = Image.new('RGB', (32, 24), 'red')")
    run(shell, f"%%mlx_vision -m {folder} -i red -n 2 -o plain\nWhat is it?")
    assert shell.user_ns["plain"].stats.generation_tokens == 2
    assert not marker.exists(), "the folder's code ran without --trust-remote-code"

    run(shell, f"%mlx unload {folder}")
    run(shell, f"%%mlx_vision -m {folder} -i red -n 2 --trust-remote-code\nWhat is it?")
    assert marker.read_text() == "ran"


def test_a_text_model_that_needs_its_code_is_one_line_naming_the_flag(shell, tiny_llama, tmp_path):
    folder, marker = tmp_path / "custom-llama", tmp_path / "ran"
    shutil.copytree(tiny_llama, folder)
    body = "from mlx_lm.models.llama import Model, ModelArgs  # noqa: F401\n"
    _name_code(folder, marker, body, [("config.json", "model_file", "custom_code.py")])
    with pytest.raises(UsageError) as caught:
        run(shell, f"%%mlx -m {folder} -n 2\nHi")
    message = str(caught.value)
    assert type(caught.value) is UsageError and "\n" not in message
    assert "--trust-remote-code" in message and "custom_code.py" in message
    assert not marker.exists()
    assert magics_of(shell).session.runtime.models() == []

    # The setting opts in for every cell.
    run(shell, "%config MLXMagics.trust_remote_code = True")
    run(shell, f"%%mlx -m {folder} -n 2 -o trusted\nHi")
    assert shell.user_ns["trusted"].stats.generation_tokens == 2
    assert marker.read_text() == "ran"
