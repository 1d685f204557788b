"""``llm-emf prepare`` and ``llm-emf stats`` end to end on the bundled sample; synthetic images."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from llm_emf.cli.main import main
from llm_emf.config import load_config
from llm_emf.data.schema import Dataset
from llm_emf.data.synthetic_images import draw_item_image

pytestmark = pytest.mark.unit


def test_prepare_then_stats_on_sample(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["prepare", "data.source=sample", f"data.dataset={out}", "seed=7"]) == 0
    summary = capsys.readouterr().out
    assert "175 Food and 325 Kitchen items" in summary and "145 train, 54 valid and 54 test" in summary
    assert "test sequences of 253 people" in summary       # LLMCDSR: user numbers restart in every file
    assert "0 rows quarantined" in summary
    assert {p.name for p in out.iterdir()} == {"items.parquet", "sequences.parquet", "dataset.json", "config.yaml"}
    cfg = load_config(out / "config.yaml")
    assert cfg.seed == 7 and cfg.data.source == "sample" and cfg.data.dataset == str(out)
    ds = Dataset.read(out)
    assert ds.meta.name == "food_kitchen_sample" and len(ds.meta.fingerprint) == 16

    assert main(["stats", "--dataset", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["items"] == [175, 325] and s["fingerprint"] == ds.meta.fingerprint
    assert {k: v["sequences"] for k, v in s["splits"].items()} == {"train": 145, "valid": 54, "test": 54}
    assert s["people"] == 253 and s["sequences"] == 253
    assert s["splits"]["train"]["users_by_source"] == {"A": 49, "B": 16, "overlap": 80}
    assert s["splits"]["train"]["sequences_both_domains"] == 80
    assert main(["stats", f"data.dataset={out}"]) == 0
    text = capsys.readouterr().out
    assert "train sequence lengths:" in text and "users by source file: A 49, B 16, overlap 80" in text


def test_prepare_skip_bad_rows_flag(tmp_path, plain_sample, capsys):
    (plain_sample / "train_A.txt").write_text((plain_sample / "train_A.txt").read_text() + "999\t1,oops\n")
    bad_line = len((plain_sample / "train_A.txt").read_text().splitlines())
    out = tmp_path / "ds"
    assert main(["prepare", f"data.source={plain_sample}", f"data.dataset={out}"]) == 2
    err = capsys.readouterr().err
    assert f"{plain_sample / 'train_A.txt'}, line {bad_line}: expected integer item ids, found 'oops'" in err
    assert main(["prepare", "--skip-bad-rows", f"data.source={plain_sample}", f"data.dataset={out}"]) == 0
    assert "1 rows quarantined (see quarantine.parquet)" in capsys.readouterr().out
    rows = pq.read_table(out / "quarantine.parquet").to_pylist()
    assert [(r["line"], r["content"]) for r in rows] == [(bad_line, "999\t1,oops")]
    assert load_config(out / "config.yaml").data.skip_bad_rows is True
    assert Dataset.read(out).meta.quarantined_rows == 1


def test_stats_without_dataset_names_the_missing_file(tmp_path, capsys):
    assert main(["stats", "--dataset", str(tmp_path)]) == 2
    assert f"{tmp_path / 'items.parquet'}: expected a prepared dataset file" in capsys.readouterr().err


def test_synthetic_images_are_deterministic(tmp_path, capsys):
    one = draw_item_image("B000BIZT3E", 0, "Enfamil Prosobee Soy", size=32, seed=1)
    assert one == draw_item_image("B000BIZT3E", 0, "Enfamil Prosobee Soy", size=32, seed=1)
    assert one != draw_item_image("B000BIZT3E", 0, "Enfamil Prosobee Soy", size=32, seed=2)
    assert one != draw_item_image("B000BIZT3F", 0, "Enfamil Prosobee Soy", size=32, seed=1)
    args = ["data.source=sample", "data.synthetic_images=true", "data.image_size=24"]
    assert main(["prepare", f"data.dataset={tmp_path / 'a'}", *args]) == 0
    assert main(["prepare", f"data.dataset={tmp_path / 'b'}", *args]) == 0
    items = Dataset.read(tmp_path / "a").items.to_pylist()
    assert all(r["image_uri"] == str((tmp_path / "a" / "images" / f"{r['item_index']}.png").resolve()) for r in items)
    first = (tmp_path / "a/images/0.png").read_bytes()
    assert first == (tmp_path / "b/images/0.png").read_bytes()
    assert first == draw_item_image(items[0]["item_id"], 0, items[0]["title"], size=24, seed=42)
    with Image.open(tmp_path / "a/images/499.png") as image:
        assert image.size == (24, 24) and image.mode == "RGB"
    assert f"synthetic images under {tmp_path / 'b' / 'images'}" in capsys.readouterr().out
