"""--schema: decoding constrained by llguidance to a JSON schema, on the real mlx-lm path."""

import json

import pytest
from IPython.core.error import UsageError

from conftest import make_shell, run

pytestmark = pytest.mark.model

DIGIT = {
    "type": "object",
    "properties": {
        "digit": {"type": "integer", "minimum": 0, "maximum": 9},
        "even": {"type": "boolean"},
    },
    "required": ["digit", "even"],
}


@pytest.fixture(scope="module")
def schema_shell(tiny_llama):
    shell = make_shell()
    shell.extension_manager.load_extension("mlx_magic")
    run(shell, f"%config MLXMagics.aliases = {{'tiny': {str(tiny_llama)!r}}}")
    shell.user_ns["Digit"] = DIGIT
    run(
        shell,
        "from pydantic import BaseModel\nclass Animal(BaseModel):\n    name: str\n    legs: int\n",
    )
    yield shell
    shell.extension_manager.unload_extension("mlx_magic")


def test_a_random_model_answers_valid_json_only_when_constrained(schema_shell):
    run(schema_shell, "%%mlx -m tiny -n 40\nGive a digit as JSON.")
    free = schema_shell.user_ns["_mlx"].text
    with pytest.raises(json.JSONDecodeError):
        json.loads(free)  # random weights: not JSON by themselves
    run(schema_shell, "%%mlx -m tiny -n 60 --schema Digit -o picked\nGive a digit as JSON.")
    picked = schema_shell.user_ns["picked"]
    assert isinstance(picked, dict) and set(picked) == {"digit", "even"}
    assert 0 <= picked["digit"] <= 9 and isinstance(picked["even"], bool)
    assert schema_shell.user_ns["_mlx"].data == picked
    assert json.loads(schema_shell.user_ns["_mlx"].text) == picked


def test_a_pydantic_class_gives_an_instance_and_map_columns(schema_shell):
    run(schema_shell, "%%mlx --schema Animal -n 40\nDescribe an ant as JSON.")
    animal = schema_shell.user_ns["_mlx"].data
    assert type(animal).__name__ == "Animal" and isinstance(animal.legs, int)
    run(schema_shell, "bugs = ['ant', 'spider', 'beetle']")
    run(schema_shell, "%%mlx --map bugs --schema Animal -n 40\nDescribe a {item} as JSON.")
    table = schema_shell.user_ns["_mlx"].table
    assert {"name", "legs"} <= set(table.columns)
    assert all(isinstance(legs, int) for legs in table["legs"])
    assert all(type(r.data).__name__ == "Animal" for r in schema_shell.user_ns["_mlx"].results)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("nothing", None, "no variable named 'nothing'"),
        ("Broken", {"type": "nonsense"}, "does not compile: Invalid type: nonsense"),
        ("Listed", [1, 2], "a list is not a schema"),
        ("Text", "{not json", "the text is not JSON"),
        ("Pattern", {"type": "string", "pattern": "[a-"}, "does not compile: regex parse error"),
    ],
)
def test_a_bad_schema_is_one_line_and_changes_nothing(schema_shell, name, value, message):
    if value is not None:
        schema_shell.user_ns[name] = value
    run(schema_shell, "%%mlx -m tiny -n 2\nHi")
    before = schema_shell.user_ns["_mlx"]
    with pytest.raises(UsageError, match=message) as caught:
        run(schema_shell, f"%%mlx -m tiny --schema {name} -n 5\nHi")
    assert "\n" not in str(caught.value)
    assert schema_shell.user_ns["_mlx"] is before


def test_a_schema_for_a_server_is_refused_in_one_line(shell):
    shell.user_ns["Digit"] = DIGIT
    run(shell, "%config MLXMagics.endpoints = ['http://127.0.0.1:9/v1']")
    run(shell, "%config MLXMagics.runtime = 'remote'")
    with pytest.raises(UsageError, match="--schema constrains the local decoder") as caught:
        run(shell, "%%mlx --schema Digit -n 5\nHi")
    assert "\n" not in str(caught.value)


def test_an_answer_cut_by_max_tokens_says_raise_n(schema_shell):
    with pytest.raises(UsageError, match="stopped at max tokens before the JSON closed: raise -n"):
        run(schema_shell, "%%mlx --schema Animal -n 3\nDescribe an ant as JSON.")
    assert schema_shell.user_ns["_mlx"].finish_reason == "length"


def test_an_items_column_or_a_schema_field_named_like_the_tables_own_is_kept_apart(
    schema_shell,
):
    # A DataFrame with columns the table fills itself, and a schema with a
    # field named "error": neither overwrites the run's columns, nor makes a
    # good row count as failed.
    run(
        schema_shell,
        "import pandas as pd\n"
        "rows = pd.DataFrame({'answer': ['a1', 'a2'], 'error': ['x', 'y'], 'tokens': [7, 8]})\n"
        "Checked = {'type': 'object', 'properties': {'error': {'type': 'boolean'}, "
        "'answer': {'type': 'integer'}}, 'required': ['error', 'answer']}",
    )
    run(schema_shell, "%%mlx -m tiny --map rows --schema Checked -n 60\nCheck {row.answer}.")
    result = schema_shell.user_ns["_mlx"]
    table = result.table
    assert list(table["item_answer"]) == ["a1", "a2"] and list(table["item_tokens"]) == [7, 8]
    assert list(table["item_error"]) == ["x", "y"]
    assert all(isinstance(flag, bool) for flag in table["data_error"])
    assert all(isinstance(number, int) for number in table["data_answer"])
    assert list(table["answer"]) == [r.text for r in result.results]  # the model's own text
    assert list(table["error"]) == ["", ""] and all(n > 0 for n in table["tokens"])
    assert "failed" not in result.summary
