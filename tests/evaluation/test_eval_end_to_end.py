"""evaluate() on the tiny hand-made dataset of conftest.py, with hand-computed ranks.

Popularity (training counts) X: [4, 2, 1, 0], Y: [2, 1, 1]. Test targets and their full-protocol ranks:
u1 -> 3 (count 0): rank 4;  u2 -> 1 (count 2): rank 2;  u5 -> 2 (count 1): rank 3      (X, Food)
u3 -> 6 (count 1, tied with 5): rank 3 pessimistic / 2 optimistic;  u4 -> 4 (count 2): rank 1  (Y, Kitchen)
"""

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from llm_emf.config import ConfigError
from llm_emf.data.schema import DataError
from llm_emf.evaluation import EvalResult, PopularityScorer, evaluate
from llm_emf.evaluation.negatives import negatives_path

from eval_tiny_dataset import make_dataset

pytestmark = pytest.mark.unit


def _mrr(ranks):
    return sum(1 / r for r in ranks) / len(ranks)


def test_popularity_scores_are_training_counts(tiny):
    pop = PopularityScorer(tiny)
    rows = tiny.split("test").slice(0, 2)
    assert pop(rows, 0).tolist() == [[4, 2, 1, 0]] * 2
    assert pop(rows, 1).tolist() == [[2, 1, 1]] * 2


def test_popularity_full_protocol_hand_computed(tiny, cfg):
    r = evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("full",))
    assert r.counts == {"Food": 3, "Kitchen": 2}
    assert r.n_candidates == {"full": {"Food": 4, "Kitchen": 3}}
    assert r.ranks["full"]["Food"].tolist() == [4, 2, 3]
    assert r.ranks["full"]["Kitchen"].tolist() == [3, 1]
    food, kitchen = r.metrics["full"]["Food"], r.metrics["full"]["Kitchen"]
    assert food["MRR"] == pytest.approx(_mrr([4, 2, 3]))
    assert food["NDCG@5"] == pytest.approx((1 / math.log2(5) + 1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert food["HR@1"] == 0.0 and food["HR@5"] == 1.0 and food["HR@10"] == 1.0   # k above 4 candidates
    assert kitchen["MRR"] == pytest.approx(_mrr([3, 1]))
    assert kitchen["HR@1"] == 0.5
    assert kitchen["NDCG@5"] == pytest.approx((0.5 + 1.0) / 2)


def test_optimistic_ties_change_only_the_tied_case(tiny, cfg):
    cfg.eval.ties = "optimistic"
    r = evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("full",))
    assert r.ranks["full"]["Food"].tolist() == [4, 2, 3]
    assert r.ranks["full"]["Kitchen"].tolist() == [2, 1]


def test_exclude_seen_masks_history_but_never_the_target(tiny, cfg):
    cfg.eval.exclude_seen = True
    r = evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("full",))
    # u1: 0 and 1 seen -> [-, -, 1, 0] rank 2; u2: 0 and 2 seen -> rank 1; u5: 2 is its own target -> rank 3
    assert r.ranks["full"]["Food"].tolist() == [2, 1, 3]
    # u3: 4 seen -> [-, 1, 1], still tied with 5 -> rank 2; u4: 5 seen -> rank 1
    assert r.ranks["full"]["Kitchen"].tolist() == [2, 1]


def test_sampled_protocol_ranks_against_the_files_candidates(tiny, cfg):
    cfg.eval.n_negatives = 2
    r = evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("sampled",))
    table = pq.read_table(negatives_path(cfg, "test"))
    counts = {0: 4, 1: 2, 2: 1, 3: 0, 4: 2, 5: 1, 6: 1}
    expected = {}
    for user, target, negs in zip(*(table.column(c).to_pylist() for c in ("user_id", "target", "negatives"))):
        assert len(negs) == 2 and target not in negs
        expected[user] = 1 + sum(counts[n] >= counts[target] for n in negs)     # ties count against the model
    assert r.ranks["sampled"]["Food"].tolist() == [expected["u1"], expected["u2"], expected["u5"]]
    assert r.ranks["sampled"]["Kitchen"].tolist() == [expected["u3"], expected["u4"]]
    assert r.n_candidates["sampled"] == {"Food": 3, "Kitchen": 3}
    assert r.info["negatives_file"] == str(negatives_path(cfg, "test"))


def test_a_scorer_that_puts_the_target_first_gets_mrr_1(tiny, cfg):
    def oracle(rows, domain):
        lo, size = (0, tiny.n_x) if domain == 0 else (tiny.n_x, tiny.n_y)
        targets = [s[-1] for s in rows.column("items").to_pylist()]
        scores = torch.zeros(rows.num_rows, size)
        scores[torch.arange(rows.num_rows), torch.tensor(targets) - lo] = 1.0
        return scores
    r = evaluate(oracle, tiny, "test", cfg)
    for protocol in ("sampled", "full"):
        for domain in ("Food", "Kitchen"):
            assert r.metrics[protocol][domain]["MRR"] == 1.0
            assert r.metrics[protocol][domain]["NDCG@5"] == 1.0 and r.metrics[protocol][domain]["HR@1"] == 1.0


def _random_dataset(n_users=60, n_x=40, n_y=25, seed=0):
    rng = np.random.default_rng(seed)
    seqs = []
    for u in range(n_users):
        for split in ("train", "test"):
            seqs.append((f"user{u}", split, rng.integers(0, n_x + n_y, size=rng.integers(1, 8)).tolist()))
    return make_dataset(seqs, n_x, n_y)


class _LastItemScorer:
    """Scores depend only on the row (a fixed random matrix indexed by the last input item); records calls."""

    def __init__(self, ds):
        self.table = torch.randn(ds.n_items + 1, ds.n_items, generator=torch.Generator().manual_seed(1))
        self.n_x, self.calls = ds.n_x, []

    def __call__(self, rows, domain):
        seqs = rows.column("items").to_pylist()
        self.calls.append((domain, [s[-1] for s in seqs]))
        last_input = torch.tensor([s[-2] if len(s) > 1 else len(self.table) - 1 for s in seqs])
        scores = self.table[last_input]                                       # (B, n_items)
        return scores[:, :self.n_x] if domain == 0 else scores[:, self.n_x:]


@pytest.mark.parametrize("exclude_seen", [False, True])
def test_full_ranking_in_batches_equals_one_big_batch(cfg, exclude_seen):
    ds = _random_dataset()
    cfg.eval.exclude_seen = exclude_seen
    results = {}
    for batch_size in (1, 7, 1000):
        cfg.train.eval_batch_size = batch_size
        scorer = _LastItemScorer(ds)
        results[batch_size] = evaluate(scorer, ds, "test", cfg)
        # every call is one domain, at most batch_size rows, and every target is in that domain
        assert all(len(t) <= batch_size and all((x < ds.n_x) == (d == 0) for x in t) for d, t in scorer.calls)
        assert sum(len(t) for _, t in scorer.calls) == 60
    for protocol in ("sampled", "full"):
        for domain in ("Food", "Kitchen"):
            for b in (1, 7):
                np.testing.assert_array_equal(results[b].ranks[protocol][domain], results[1000].ranks[protocol][domain])
            assert results[1].metrics[protocol][domain] == results[1000].metrics[protocol][domain]


def test_every_model_is_scored_on_the_same_candidates(cfg):
    ds = _random_dataset()
    cfg.eval.n_negatives = 5
    evaluate(PopularityScorer(ds), ds, "test", cfg, protocols=("sampled",))
    path = negatives_path(cfg, "test")
    before = pq.read_table(path)
    r = evaluate(_LastItemScorer(ds), ds, "test", cfg, protocols=("sampled",))
    assert pq.read_table(path).equals(before)
    assert r.n_candidates["sampled"] == {"Food": 6, "Kitchen": 6}


def test_negatives_of_another_dataset_are_rejected(tiny, cfg):
    evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("sampled",))
    other = _random_dataset()
    with pytest.raises(DataError, match=r"negatives_test_seed42_n999\.parquet: expected negatives for fingerprint="):
        evaluate(PopularityScorer(other), other, "test", cfg, protocols=("sampled",))


def test_domain_without_cases_reports_nan_and_null(cfg):
    ds = make_dataset([("a", "train", [0, 1]), ("a", "valid", [0, 2])])
    r = evaluate(PopularityScorer(ds), ds, "valid", cfg)
    assert r.counts == {"Food": 1, "Kitchen": 0}
    assert math.isnan(r.metrics["full"]["Kitchen"]["MRR"])
    d = r.to_dict()
    assert d["metrics"]["full"]["Kitchen"]["MRR"] is None
    assert EvalResult.from_dict(d).metrics["full"]["Food"] == r.metrics["full"]["Food"]
    assert "-" in r.format_table().splitlines()[-1]


def test_same_named_domains_stay_apart(tiny, cfg):
    tiny.meta.domains = ("Amazon", "Amazon")
    r = evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("full",))
    assert r.counts == {"Amazon (X)": 3, "Amazon (Y)": 2}


def test_bad_inputs_give_clear_errors(tiny, cfg):
    with pytest.raises(ValueError, match=r"shape \(B=2, items in Food=4\) for domain 0, found \(2, 7\)"):
        evaluate(lambda rows, d: torch.zeros(rows.num_rows, 7), tiny, "test", cfg)
    empty = make_dataset([("a", "test", [1]), ("b", "test", [])])
    with pytest.raises(DataError, match=r"sequences \(test split\), line 2: expected at least one item"):
        evaluate(PopularityScorer(empty), empty, "test", cfg)
    with pytest.raises(ConfigError, match="'valid' or 'test'"):
        evaluate(PopularityScorer(tiny), tiny, "train", cfg)
    with pytest.raises(ConfigError, match="protocols must be"):
        evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("sampled", "fast"))
    cfg.eval.ks = [0, 5]
    with pytest.raises(ConfigError, match=r"eval.ks: expected .* found \[0, 5\]"):
        evaluate(PopularityScorer(tiny), tiny, "test", cfg)


def test_table_names_protocol_next_to_every_number_and_json_round_trip(tiny, cfg):
    r = evaluate(PopularityScorer(tiny), tiny, "test", cfg)
    lines = r.format_table().splitlines()
    assert lines[1].split() == ["protocol", "domain", "cases", "cands", "MRR", "NDCG@5", "NDCG@10", "HR@1",
                                "HR@5", "HR@10"]
    # item 3 is in no training sequence, so Food has a cold row; the lines read "full Food cold 1 ...".
    assert [ln.split()[:3] for ln in lines[3:]] == [
        [p, *d] for p in ("sampled", "full") for d in (["Food", "3"], ["Food", "cold"], ["Food", "warm"],
                                                       ["Kitchen", "2"], ["Kitchen", "cold"], ["Kitchen", "warm"])]
    assert lines[9].split()[4] == f"{_mrr([4, 2, 3]):.4f}"
    assert lines[10].split()[3:7] == ["1", "4", f"{_mrr([4]):.4f}", f"{1 / math.log2(5):.4f}"]
    assert lines[13].split()[3:7] == ["0", "3", "-", "-"]      # no cold Kitchen target: no numbers
    back = EvalResult.from_dict(json.loads(r.to_json()))
    assert back.metrics == r.metrics and back.counts == r.counts and back.split == "test"
    assert back.counts_by_target == r.counts_by_target
    assert back.by_target["warm"]["full"] == r.by_target["warm"]["full"]
    assert math.isnan(back.by_target["cold"]["full"]["Kitchen"]["MRR"])


def test_cold_and_warm_targets_are_reported_apart(tiny, cfg):
    """Test targets: Food u1 -> 3 (no training interaction: cold, rank 4), u2 -> 1 (rank 2), u5 -> 2 (rank 3);
    Kitchen u3 -> 6 (rank 3), u4 -> 4 (rank 1), both warm."""
    r = evaluate(PopularityScorer(tiny), tiny, "test", cfg, protocols=("full",))
    assert r.counts_by_target == {"cold": {"Food": 1, "Kitchen": 0}, "warm": {"Food": 2, "Kitchen": 2}}
    assert r.by_target["cold"]["full"]["Food"]["MRR"] == pytest.approx(1 / 4)
    assert r.by_target["warm"]["full"]["Food"]["MRR"] == pytest.approx(_mrr([2, 3]))
    assert r.by_target["warm"]["full"]["Kitchen"]["MRR"] == pytest.approx(_mrr([3, 1]))
    assert r.to_dict()["by_target"]["cold"]["full"]["Kitchen"]["MRR"] is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores_rank_like_cpu_scores(cfg):
    ds = _random_dataset()
    cfg.eval.exclude_seen = True
    cpu_scorer = _LastItemScorer(ds)
    on_cpu = evaluate(cpu_scorer, ds, "test", cfg)
    on_gpu = evaluate(lambda rows, d: cpu_scorer(rows, d).cuda(), ds, "test", cfg)
    for protocol in ("sampled", "full"):
        assert on_gpu.metrics[protocol] == on_cpu.metrics[protocol]
