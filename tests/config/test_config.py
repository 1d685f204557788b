"""The typed config tree: YAML, dotted overrides, type checks, unknown keys, help, round trip."""

import re

import pytest
import yaml
from pathlib import Path

from llm_emf.cli.main import main as cli_main
from llm_emf.config import Config, ConfigError, flatten_config, format_help, load_config, save_config
from llm_emf.config.fields import iter_fields

pytestmark = pytest.mark.unit


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 7\nmodel:\n  n_heads: 2\n  hidden_size: 64\n")
    cfg = load_config(path, ["model.n_heads=4", "train.lr=0.01", "model.cross_attention=false"])
    assert cfg.seed == 7
    assert cfg.model.hidden_size == 64
    assert cfg.model.n_heads == 4          # override beats the file
    assert cfg.train.lr == 0.01
    assert cfg.model.cross_attention is False
    assert cfg.model.n_blocks == Config().model.n_blocks  # untouched default


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"model.n_heads.*expected an integer, found 2.5"):
        load_config(None, ["model.n_heads=2.5"])


def test_strings_are_never_evaluated():
    cfg = load_config(None, ["data.name=__import__('os').getcwd()"])
    assert cfg.data.name == "__import__('os').getcwd()"
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(None, ["seed=__import__('os').getpid()"])


def test_bool_must_be_a_bool():
    with pytest.raises(ConfigError, match="expected a boolean"):
        load_config(None, ["model.use_text=1"])


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'model.n_head'; did you mean 'model.n_heads'"):
        load_config(None, ["model.n_head=4"])
    with pytest.raises(ConfigError, match=r"did you mean 'train.lr'"):
        load_config(None, ["trian.lr=0.1"])


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hiden_size: 32\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'model.hiden_size'; did you mean "
                                          r"'model.hidden_size'"):
        load_config(path)


def test_bounds_and_choices():
    with pytest.raises(ConfigError, match=r"model.dropout.*<= 0.9, found 1.5"):
        load_config(None, ["model.dropout=1.5"])
    with pytest.raises(ConfigError, match=r"model.fusion.*one of \['early', 'late'\], found 'middle'"):
        load_config(None, ["model.fusion=middle"])


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="divisible"):
        load_config(None, ["model.hidden_size=30", "model.n_heads=4"])
    with pytest.raises(ConfigError, match="at least one of use_id"):
        load_config(None, ["model.use_id=false"])


def test_section_is_not_a_value():
    with pytest.raises(ConfigError, match="is a section"):
        load_config(None, ["model=3"])


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 1\nmodel:\n  n_heads: [1,\n")
    with pytest.raises(ConfigError, match=r"broken.yaml line \d+: not valid YAML"):
        load_config(path)


def test_missing_file_and_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["model.n_heads"])


def test_list_and_dict_fields():
    cfg = load_config(None, ["eval.ks=[1, 20]", "features.enrich.engine_kwargs={max_model_len: 2048}"])
    assert cfg.eval.ks == [1, 20]
    assert cfg.features.enrich.engine_kwargs == {"max_model_len": 2048}
    with pytest.raises(ConfigError, match=r"eval.ks\[1\].*expected an integer"):
        load_config(None, ["eval.ks=[1, x]"])


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["model.n_heads=2", "eval.ks=[5]", "features.enrich.engine_kwargs={a: 1}"])
    path = save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(path)
    assert again == cfg
    assert yaml.safe_load(Path(path).read_text())["model"]["n_heads"] == 2


def test_flatten_has_every_leaf():
    flat = flatten_config(Config())
    assert flat["model.n_heads"] == 1
    assert "features.embed.batch_size" in flat
    assert not any(isinstance(v, Config) for v in flat.values())


def test_every_field_has_help():
    text = format_help(Config)
    entries = re.split(r"\n(?=  \S)", text.split("\n\n")[0])     # "  key (type, default ...)" then its help
    assert len(entries) == len([f for _, f, _ in iter_fields(Config) if "measured" not in f.metadata])
    for entry in entries:
        key_line, *help_lines = entry.splitlines()
        assert help_lines and all(line.startswith("      ") and line.strip() for line in help_lines), key_line
    assert "model.n_heads (int, default 1)" in text


def test_cli_help_lists_config_keys(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["prepare", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "data.skip_bad_rows" in out and "quarantine" in out


def test_cli_rejects_unknown_key_cleanly(capsys):
    assert cli_main(["stats", "dat.dataset=/tmp/x"]) == 2
    assert "did you mean 'data.dataset'" in capsys.readouterr().err


def test_cli_unknown_command(capsys):
    assert cli_main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
