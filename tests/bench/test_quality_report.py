"""bench/quality/report.py and run.py: the convergence report, the JSON layout, and a popularity-only run of
the benchmark on a hand-made dataset (no training), resumed and re-reported."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bench.quality import merge, report, run

pytestmark = pytest.mark.unit


def _trained(variant, seed, stopped, epochs=5, ranks=None):
    return {"variant": variant, "seed": seed, "overrides": ["train.epochs=40"], "wall_s": 61.0,
            "resumed_from_epoch": 0, "epochs_run": epochs, "stopped_early": stopped, "max_epochs": 40,
            "best": {"Food": {"epoch": epochs - 3, "valid_mrr": 0.1}, "Kitchen": {"epoch": epochs - 2,
                                                                              "valid_mrr": 0.05}},
            "history": [], "test": {"metrics": {"full": {"Food": {"MRR": 0.1}}}},
            **({"ranks": ranks} if ranks else {})}


def _popularity(seed, ranks):
    return {"variant": "popularity", "seed": seed, "overrides": [], "wall_s": 2.0, "resumed_from_epoch": 0,
            "epochs_run": 0, "stopped_early": None, "trained": False, "best": {}, "history": [],
            "test": {"metrics": {"full": {"Food": {"MRR": 0.05}}}}, "ranks": ranks}


def test_dumps_writes_per_case_lists_on_one_line_and_round_trips():
    doc = {"seeds": [1, 2], "runs": [{"ranks": {"full": {"Food": list(range(1, 41))}}}], "x": {"y": 1.5}}
    text = report.dumps(doc)
    assert json.loads(text) == doc
    assert "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20," in text
    assert '"seeds": [\n' in text                          # short lists keep the indented layout
    assert len(text.splitlines()) < 20


def test_unconverged_flags_trained_runs_that_used_all_epochs():
    runs = [_trained("id_only", 1, True), _trained("text", 1, False, epochs=40), _popularity(1, {}),
            _trained("old", 1, None)]
    assert [r["variant"] for r in report.unconverged(runs)] == ["text", "old"]


def test_convergence_section_lists_every_run_and_warns():
    runs = [_trained("id_only", 1, True), _trained("text", 1, False, epochs=40), _popularity(1, {})]
    md = report.convergence_section(runs)
    lines = md.splitlines()
    assert "| id_only | 1 | 5 / 40 | 0 | Food 2, Kitchen 3 | yes | 61 |" in lines
    assert "| text | 1 | 40 / 40 | 0 | Food 37, Kitchen 38 | **no** | 61 |" in lines
    assert "| popularity | 1 | 0 | 0 | - | not trained | 2 |" in lines
    assert "**Warning: 1 of 2 trained runs did not converge**: text seed 1 (40 of 40 epochs)" in md
    assert "without per-case ranks" in md and "id_only seed 1, text seed 1, popularity seed 1" in md
    assert "All 1 trained runs stopped early." in report.convergence_section([_trained("id_only", 1, True)])


def test_markdown_report_holds_the_new_tables():
    ranks_ref = {"full": {"Food": [2, 4, 1, 8]}, "sampled": {"Food": [1, 2, 1, 3]}}
    ranks_text = {"full": {"Food": [1, 2, 1, 5]}, "sampled": {"Food": [1, 1, 1, 2]}}
    doc = {"dataset": "runs/tiny", "command": "python -m bench.quality.run ...", "notes": [],
           "machine": {"cpu_count": 2, "torch_threads": 2, "cuda": False, "torch": "2", "ray": "2", "python": "3.11",
                       "loadavg_at_start": [1.0, 1.0, 1.0]},
           "runs": [_trained("id_only", 1, True, ranks=ranks_ref), _trained("text", 1, True, ranks=ranks_text),
                    _popularity(1, ranks_ref)],
           "target_train_counts": {"Food": [0, 10, 50, 500]}}
    run.analyse(doc, reference="id_only", n_boot=200, boot_seed=0)
    assert set(doc["paired"]["results"]) == {"text", "popularity"}
    assert doc["paired"]["results"]["popularity"]["full"]["Food"]["MRR"]["diff"] == 0.0   # same ranks as id_only
    md = report.markdown_report(doc, pngs=["x_MRR.png"])
    assert "**full protocol, Food**" in md                                   # the mean ± std tables
    assert "## Difference from id_only (paired bootstrap 95% CI over test cases)" in md
    assert "| popularity | 1 | +0.0000 [+0.0000, +0.0000] (+0.0%) | +0.0000 [+0.0000, +0.0000] (+0.0%) |" in md
    assert "## Test MRR by the target's training count (mean over seeds)" in md
    assert "| text | 1 | full | 1.0000 | 0.5000 | 1.0000 | 0.2000 | 0.6750 |" in md
    assert "## Runs and convergence" in md and "All 2 trained runs stopped early." in md
    assert md.rstrip().endswith("![x_MRR.png](x_MRR.png)")


def test_negatives_seed_override_needs_the_config_key(monkeypatch):
    import llm_emf.config

    monkeypatch.setattr(llm_emf.config, "load_config", lambda path, overrides: None)
    assert run.negatives_seed_override(7) == "eval.negatives_seed=7"

    def unknown_key(path, overrides):
        raise llm_emf.config.ConfigError("unknown key 'eval.negatives_seed'")
    monkeypatch.setattr(llm_emf.config, "load_config", unknown_key)
    with pytest.raises(SystemExit, match="no eval.negatives_seed key"):
        run.negatives_seed_override(7)


def _tiny_dataset(folder):
    """X = items 0..3, Y = 4..6; training counts 0:4, 1:2, 2:1, 3:0 | 4:2, 5:1, 6:1."""
    from llm_emf.data.schema import ITEM_SCHEMA, SEQUENCE_SCHEMA, Dataset, DatasetMeta
    seqs = [("u1", "train", [0, 4, 1, 0]), ("u2", "train", [0, 5, 2]), ("u3", "train", [1, 4, 0]),
            ("u4", "train", [6]), ("u1", "valid", [0, 4, 1]), ("u2", "valid", [0, 5]),
            ("u1", "test", [0, 4, 1, 0, 3]), ("u3", "test", [1, 4, 0, 6]), ("u2", "test", [0, 5, 2, 1]),
            ("u4", "test", [5, 4]), ("u5", "test", [2, 2])]
    n = 7
    items = pa.table({"item_index": list(range(n)), "item_id": [f"i{i}" for i in range(n)],
                      "domain": [0] * 4 + [1] * 3, "title": [None] * n, "image_uri": [None] * n,
                      "attributes": [None] * n}, schema=ITEM_SCHEMA)
    sequences = pa.table({"user_id": [s[0] for s in seqs], "split": [s[1] for s in seqs],
                          "items": [s[2] for s in seqs], "timestamps": [None] * len(seqs)}, schema=SEQUENCE_SCHEMA)
    Dataset(items, sequences, DatasetMeta(name="tiny", domains=("Food", "Kitchen"), n_items=(4, 3))).write(folder)


def test_popularity_benchmark_keeps_ranks_in_target_order_resumes_and_reports(tmp_path, capsys):
    _tiny_dataset(tmp_path / "data")
    out = tmp_path / "res" / "q"
    argv = ["--dataset", str(tmp_path / "data"), "--variants", "popularity", "--seeds", "1,2", "--no-tracking",
            "--out", str(out), "--bootstrap", "50", "--converge", "train.eval_batch_size=2"]
    assert run.main(argv) == 0                               # nothing trained: nothing to converge
    doc = json.loads(out.with_suffix(".json").read_text())
    # test rows in file order; Food cases u1, u2, u5 and Kitchen cases u3, u4
    assert doc["targets"] == {"Food": [3, 1, 2], "Kitchen": [6, 4]}
    assert doc["target_train_counts"] == {"Food": [0, 2, 1], "Kitchen": [1, 2]}
    pop = doc["runs"][0]
    assert [r["seed"] for r in doc["runs"]] == [1, 2] and pop["trained"] is False and pop["epochs_run"] == 0
    # popularity, ties pessimistic: Food 3 (count 0) is last of 4, 1 second, 2 third; Kitchen 6 ties 5
    assert pop["ranks"]["full"] == {"Food": [4, 2, 3], "Kitchen": [3, 1]}
    assert pop["test"]["metrics"]["full"]["Food"]["MRR"] == pytest.approx((1 / 4 + 1 / 2 + 1 / 3) / 3)
    food = doc["by_popularity"]["results"]["popularity"]["Food"]
    assert food["< 5"]["full_MRR"] == pytest.approx((1 / 4 + 1 / 2 + 1 / 3) / 3) and food["< 5"]["cases"] == 3
    assert doc["aggregate"]["popularity"]["seeds"] == [1, 2]
    assert {"command", "machine", "runs", "aggregate", "variants", "seeds"} <= set(doc)    # the old keys stay
    assert doc["command"] == f"python -m bench.quality.run --dataset {tmp_path / 'data'} --variants popularity " \
        f"--seeds 1,2 --no-tracking --out {out} --bootstrap 50 --converge train.eval_batch_size=2"

    capsys.readouterr()
    assert run.main([*argv, "--resume"]) == 0
    assert capsys.readouterr().out.count("kept from") == 2
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == doc["runs"]

    out.with_suffix(".md").unlink()
    assert run.main([*argv, "--report-only", "--reference", "popularity"]) == 0
    md = out.with_suffix(".md").read_text()
    assert "## Test MRR by the target's training count" in md and "## Runs and convergence" in md
    assert "| popularity | 1 | 0 | 0 | - | not trained |" in md


def test_converge_fails_the_command_only_when_asked():
    import argparse
    doc = {"runs": [_trained("id_only", 1, True), _trained("text", 1, False, epochs=40)]}
    assert run.converge_status(argparse.Namespace(converge=True), doc) == 1
    assert run.converge_status(argparse.Namespace(converge=False), doc) == 0
    assert run.converge_status(argparse.Namespace(converge=True), {"runs": doc["runs"][:1]}) == 0


def test_merge_joins_parallel_invocations_and_refuses_different_cases(tmp_path):
    _tiny_dataset(tmp_path / "data")
    base = ["--dataset", str(tmp_path / "data"), "--variants", "popularity", "--no-tracking", "--bootstrap", "20",
            "train.eval_batch_size=2"]
    assert run.main([*base, "--seeds", "1", "--out", str(tmp_path / "a")]) == 0
    assert run.main([*base, "--seeds", "2", "--out", str(tmp_path / "b")]) == 0
    assert merge.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "ab"),
                       "--reference", "popularity", "--bootstrap", "20"]) == 0
    doc = json.loads((tmp_path / "ab.json").read_text())
    assert sorted(r["seed"] for r in doc["runs"]) == [1, 2] and doc["seeds"] == [1, 2]
    assert len(doc["commands"]) == 2 and doc["aggregate"]["popularity"]["seeds"] == [1, 2]
    assert doc["merge_command"].startswith(f"python -m bench.quality.merge {tmp_path / 'a.json'} ")
    assert "## Runs and convergence" in (tmp_path / "ab.md").read_text()
    assert merge.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "none"),
                       "--exclude", "popularity", "--bootstrap", "20"]) == 0
    assert json.loads((tmp_path / "none.json").read_text())["runs"] == []
    other = json.loads((tmp_path / "b.json").read_text())
    other["targets"]["Food"] = [0, 1, 2]
    (tmp_path / "c.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="expected the same targets"):
        merge.main([str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--out", str(tmp_path / "ac")])
