"""Renamed config keys (llm_emf/config/renamed.py): an old name is read as the new key with a warning naming the
new key, in overrides, YAML files, search spaces and configs saved by earlier versions; both names in one source
is an error; --help lists ablations and measured alternatives apart, each with what it was measured to do."""

import re
import shutil
import warnings

import pytest

from llm_emf.cli.main import main as cli_main
from llm_emf.config import Config, ConfigError, format_help, load_config, save_config
from llm_emf.config.fields import ADVANCED_HEADING, all_keys, iter_fields
from llm_emf.config.loader import from_dict, read_yaml_file
from llm_emf.config.renamed import RENAMED, RenamedKeyWarning

pytestmark = pytest.mark.unit


def test_every_rename_goes_from_a_gone_key_to_a_current_one():
    keys = set(all_keys(Config))
    assert not keys & RENAMED.keys()
    assert set(RENAMED.values()) <= keys
    assert RENAMED["data.output"] == "data.dataset" and RENAMED["data.amazon_k_core"] == "data.amazon.k_core"


def test_an_old_name_in_an_override_is_read_as_the_new_key_with_a_warning_naming_it():
    with pytest.warns(RenamedKeyWarning, match=r"override: config key 'data.output' is renamed 'data.dataset'"):
        cfg = load_config(None, ["data.output=runs/x"])
    assert cfg.data.dataset == "runs/x"
    with pytest.warns(DeprecationWarning, match=r"'data.amazon_k_core' is renamed 'data.amazon.k_core'"):
        assert load_config(None, ["data.amazon_k_core=2"]).data.amazon.k_core == 2


def test_new_names_load_without_a_warning(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: runs/x\n  amazon:\n    k_core: 3\n    text_fields: [brand]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_config(path, ["data.amazon.holdout=merged"])
    assert (cfg.data.dataset, cfg.data.amazon.k_core, cfg.data.amazon.text_fields, cfg.data.amazon.holdout) == (
        "runs/x", 3, ["brand"], "merged")


def test_old_names_in_a_yaml_file(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  output: runs/x\n  amazon_k_core: 2\n  amazon_text_fields: [description]\n")
    with pytest.warns(RenamedKeyWarning) as caught:
        cfg = load_config(path)
    assert (cfg.data.dataset, cfg.data.amazon.k_core, cfg.data.amazon.text_fields) == ("runs/x", 2, ["description"])
    assert sorted(str(w.message).split("'")[3] for w in caught) == ["data.amazon.k_core", "data.amazon.text_fields",
                                                                     "data.dataset"]
    assert all(str(w.message).startswith(str(path)) for w in caught)


def test_both_names_in_one_source_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"override: 'data.output' and 'data.dataset' are both given; 'data.output' "
                                          r"is the old name of 'data.dataset': keep 'data.dataset' only"):
        load_config(None, ["data.dataset=runs/a", "data.output=runs/b"])
    path = tmp_path / "both.yaml"
    path.write_text("data:\n  amazon_k_core: 2\n  amazon:\n    k_core: 3\n")
    with pytest.raises(ConfigError, match=rf"{path}: 'data.amazon_k_core' and 'data.amazon.k_core' are both given"):
        load_config(path)


def test_an_override_of_the_new_name_beats_the_old_name_in_the_file(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("data:\n  output: runs/from_file\n")
    with pytest.warns(RenamedKeyWarning):
        assert load_config(path, ["data.dataset=runs/override"]).data.dataset == "runs/override"


def test_a_wrong_value_under_an_old_name_is_still_checked():
    with pytest.warns(RenamedKeyWarning), pytest.raises(ConfigError, match=r"data.amazon.k_core: expected an integer"):
        load_config(None, ["data.amazon_k_core=many"])


def test_unknown_keys_still_name_the_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'data.amazon_kcore'; did you mean 'data.amazon.k_core'"):
        load_config(None, ["data.amazon_kcore=2"])
    with pytest.raises(ConfigError, match=r"unknown config key 'data.amazon.kcore'; did you mean 'data.amazon.k_core'"):
        load_config(None, ["data.amazon.kcore=2"])
    with pytest.raises(ConfigError, match=r"unknown config key 'data.outputs'; did you mean"):
        load_config(None, ["data.outputs=x"])
    with pytest.raises(ConfigError, match=r"'data.amazon' is a section"):
        load_config(None, ["data.amazon=2"])


def test_a_config_saved_by_an_earlier_version_loads(fixtures_dir, tmp_path):
    saved = fixtures_dir / "config_before_renames" / "config.yaml"
    with pytest.warns(RenamedKeyWarning) as caught:
        cfg = from_dict(Config, read_yaml_file(saved, "saved config"), source=str(saved))
    assert len(caught) == 10                                  # data.output and the nine data.amazon_* keys
    assert cfg.data.dataset == "runs/amazon_fk" and cfg.seed == 7 and cfg.model.hidden_size == 64
    a = cfg.data.amazon
    assert (a.domains, a.k_core, a.holdout, a.text_fields) == ("Grocery_and_Gourmet_Food,Home_and_Kitchen", 2,
                                                               "merged", ["description"])
    # saving it again writes the new names only, and that loads without a warning
    again = save_config(cfg, tmp_path / "config.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(again) == cfg


def test_a_checkpoint_folder_from_an_earlier_version_loads(fixtures_dir, tmp_path):
    from llm_emf.checkpoints import load_checkpoint_config

    folder = tmp_path / "checkpoint_000003"
    folder.mkdir()
    shutil.copy(fixtures_dir / "config_before_renames" / "config.yaml", folder / "config.yaml")
    with pytest.warns(RenamedKeyWarning, match=str(folder / "config.yaml")):
        assert load_checkpoint_config(folder).data.amazon.k_core == 2


def test_a_search_space_with_an_old_name(tmp_path):
    from llm_emf.tuning.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text("data.amazon_k_core: {choice: [2, 5]}\nmodel.n_heads: {choice: [1, 2]}\n")
    with pytest.warns(RenamedKeyWarning, match="'data.amazon_k_core' is renamed 'data.amazon.k_core'"):
        space = load_space(path)
    assert sorted(space) == ["data.amazon.k_core", "model.n_heads"]


def test_the_command_line_prints_one_warning_line_naming_the_new_key(tmp_path, capsys):
    assert cli_main(["stats", f"data.output={tmp_path / 'none'}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("llm-emf stats: warning: override: config key 'data.output' is renamed 'data.dataset' (the "
                      "old name still works, with this warning)")
    assert err[1].startswith("llm-emf stats: error: ") and len(err) == 2


def test_help_lists_measured_keys_apart_each_with_what_it_was_measured_to_do():
    text = format_help(Config)
    main, advanced = text.split("\n\n" + ADVANCED_HEADING + "\n")
    measured = [key for key, f, _ in iter_fields(Config) if "measured" in f.metadata]
    assert {"model.text_norm", "model.adaptor", "model.positions", "model.unseen_id",
            "model.cross_attention"} <= set(measured)
    for key in measured:
        assert f"\n  {key} (" in "\n" + advanced and f"  {key} (" not in main
    entries = re.split(r"\n(?=  \S)", advanced)
    assert len(entries) == len(measured) and all("\n      measured: " in e for e in entries)
    assert "  model.use_text (" in main and "  data.dataset (" in main


def test_tracking_config_lives_in_its_own_module_and_the_old_import_works():
    from llm_emf.config.tracking import TrackingConfig
    from llm_emf.config.tune import TrackingConfig as FromTune

    assert FromTune is TrackingConfig and isinstance(Config().tracking, TrackingConfig)
