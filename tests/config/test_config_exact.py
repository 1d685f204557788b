"""A config value means what was written (issue 24): a line break in an override is refused rather than folded
into a space, a float field takes 1e-3 (which YAML 1.1 reads as a string), and a python tag is named."""

import pytest

from llm_emf.cli.main import main as cli_main
from llm_emf.config import ConfigError, load_config
from llm_emf.config.loader import parse_override

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["data.source=runs/a\nb", "data.source=\"runs/a\nb\"", "data.name=a\r\nb",
                                  "data.name=a\rb", "data.name=a\u2028b", "data.name\n=x", "data.name=x\n"])
def test_an_override_with_a_line_break_is_refused_not_folded(text):
    with pytest.raises(ConfigError, match=r"expected key=value on one line, found a line break \((\\n|\\r|\\u2028)\)"):
        parse_override(text)
    with pytest.raises(ConfigError, match="would fold into a space"):
        load_config(None, [text])


def test_a_line_break_override_on_the_command_line_is_one_error_line(capsys):
    assert cli_main(["stats", "data.dataset=runs/a\nb"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("llm-emf stats: error: override 'data.dataset=runs/a\\nb': expected key=value on one line")
    assert len(err.splitlines()) == 1


def test_values_without_line_breaks_are_kept_exactly():
    cfg = load_config(None, ["data.name=a  b", "data.source=runs/x y"])
    assert cfg.data.name == "a  b" and cfg.data.source == "runs/x y"


@pytest.mark.parametrize("text, value", [("1e-3", 1e-3), ("5E-4", 5e-4), ("1e+1", 10.0), ("-0e0", 0.0),
                                         ("2.5e-3", 2.5e-3), (".5e-3", 5e-4), ("3", 3.0)])
def test_a_float_field_takes_exponent_notation(text, value, tmp_path):
    assert load_config(None, [f"train.lr={text}"]).train.lr == pytest.approx(value)
    path = tmp_path / "c.yaml"
    path.write_text(f"train:\n  lr: {text}\n  weight_decay: {text.lstrip('-')}\n")
    assert load_config(path).train.lr == pytest.approx(value)


def test_exponent_notation_keeps_bounds_and_types():
    with pytest.raises(ConfigError, match=r"train.lr: expected a value <= 10.0, found 1000.0"):
        load_config(None, ["train.lr=1e3"])
    with pytest.raises(ConfigError, match=r"train.lr: expected a number, found '1e-3x'"):
        load_config(None, ["train.lr=1e-3x"])
    with pytest.raises(ConfigError, match=r"model.n_heads: expected an integer, found '1e1'"):
        load_config(None, ["model.n_heads=1e1"])       # an int field does not silently take a float
    assert load_config(None, ["data.name=1e-3"]).data.name == "1e-3"     # a string field keeps the text


def test_a_python_tag_in_a_config_file_names_the_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\nmodel: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match=rf"{path} line 2: expected plain YAML .* found the tag "
                                          r"'!!python/object/apply:os.system', which is never loaded"):
        load_config(path)
