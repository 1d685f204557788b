"""How much the item content itself says about cold and warm targets: no model, no training.

For each test (or valid) case, by domain and target kind (cold: in no training sequence; warm: the rest):

- **nearest trained item**: the cosine of the target's frozen content (text/image, as ``model.unseen_id=neighbor``
  compares it) to the most similar trained item of its domain, itself excluded. A near-duplicate (>= 0.9, e.g.
  the same product in another size) is what ``neighbor`` lends an ID row from.
- **history**: the largest cosine between the target and an item of the case's input history.
- **content ranker**: every candidate scored by its largest cosine to the history, ranked by the evaluator on
  the dataset's own candidates (same sampled negatives as the quality benchmark), so its cold and warm HR@10
  are what titles alone rank, with no collaborative signal at all.

    python -m bench.quality.cold_content --dataset runs/fk_cold --features runs/fk/features.parquet \\
        --out bench/results/cold_fk_content

Writes ``<out>.json`` and ``<out>.md`` with the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from bench import command_line
from llm_emf.config import load_config
from llm_emf.data.cold import trained_items
from llm_emf.data.schema import Dataset, domain_of, domain_slice
from llm_emf.evaluation import evaluate
from llm_emf.model import load_item_features
from llm_emf.model.items import unit_content

NEAR_DUPLICATE, SIMILAR = 0.9, 0.8


def content_matrix(features) -> torch.Tensor:
    """(n_items, sum e) unit rows of the modalities the table has, in the neighbour rule's cosine space."""
    present = [(m, h) for m, h in ((features.text, features.has_text), (features.image, features.has_image))
               if m is not None]
    return unit_content([m for m, _ in present], [h for _, h in present])


def history_scorer(content: torch.Tensor, n_x: int, n_y: int):
    """The evaluator's scorer contract: each candidate's largest cosine to the row's input items."""
    def scorer(rows: pa.Table, domain: int) -> torch.Tensor:
        items = content[domain_slice(n_x, n_y, domain)]                          # (n_D, e)
        out = torch.zeros(rows.num_rows, items.shape[0])
        for r, seq in enumerate(rows.column("items").to_pylist()):
            if len(seq) > 1:
                out[r] = (items @ content[seq[:-1]].T).max(dim=1).values
        return out
    return scorer


def case_similarities(dataset: Dataset, content: torch.Tensor, trained: np.ndarray, split: str) -> dict:
    """{domain: {kind: {"nearest_trained": [...], "history": [...]}}}, one entry per case of the split."""
    out: dict = {name: {} for name in dataset.meta.domains}     # domains in their order, kinds as met
    trained_t = torch.as_tensor(trained)
    pools = []                                                   # per domain: its trained items
    for domain in (0, 1):
        sl = domain_slice(dataset.n_x, dataset.n_y, domain)
        pools.append(torch.arange(sl.start, sl.stop)[trained_t[sl]])
    for seq in dataset.split(split).column("items").to_pylist():
        target = seq[-1]
        domain = int(domain_of(np.asarray(target), dataset.n_x))
        pool = pools[domain]
        sims = content[pool] @ content[target]
        sims[pool == target] = -1.0
        history = (content[seq[:-1]] @ content[target]).max().item() if len(seq) > 1 else 0.0
        cell = out[dataset.meta.domains[domain]].setdefault(
            "warm" if trained[target] else "cold", {"nearest_trained": [], "history": []})
        cell["nearest_trained"].append(float(sims.max()))
        cell["history"].append(history)
    return out


def summary(values: list[float], threshold: float) -> dict:
    a = np.asarray(values)
    return {"median": float(np.median(a)), f"share_ge_{threshold}": float((a >= threshold).mean())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("--split", default="test", choices=("valid", "test"))
    p.add_argument("--out", default="bench/results/cold_content")
    p.add_argument("overrides", nargs="*", help="config overrides for the evaluation (eval.*)")
    args = p.parse_args(argv)
    cfg = load_config(None, [f"data.dataset={args.dataset}", *args.overrides])
    dataset = Dataset.read(args.dataset)
    content = content_matrix(load_item_features(Path(args.features), dataset.items))
    trained = trained_items(dataset).astype(bool)
    sims = case_similarities(dataset, content, trained, args.split)
    ranker = evaluate(history_scorer(content, dataset.n_x, dataset.n_y), dataset, args.split, cfg,
                      scorer_name="content").to_dict()
    command = command_line(__spec__.name, sys.argv[1:] if argv is None else argv)
    rows = {}
    for domain, kinds in sims.items():
        for kind, cell in kinds.items():
            rows[f"{domain}|{kind}"] = {
                "cases": len(cell["history"]),
                "nearest_trained": summary(cell["nearest_trained"], NEAR_DUPLICATE),
                "history": summary(cell["history"], SIMILAR),
                "content_ranker": {p: {m: ranker["by_target"][kind][p][domain][m] for m in ("HR@10", "MRR")}
                                   for p in ranker["by_target"][kind]}}
    doc = {"command": command, "split": args.split, "dataset": args.dataset, "features": args.features,
           "cases": rows, "content_ranker": ranker}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    lines = [f"# What the content says about cold and warm targets ({args.split} split)", "",
             f"Command: `{command}`", "", __doc__.split("\n\n")[1].strip(), "",
             "| domain | target | cases | nearest trained item: median cosine | near-duplicate (>= 0.9) | "
             "history: median max cosine | history item >= 0.8 | content ranker sampled HR@10 | "
             "content ranker full HR@10 |", "|---|---|---|---|---|---|---|---|---|"]
    for key, r in rows.items():
        domain, kind = key.split("|")
        n, h, c = r["nearest_trained"], r["history"], r["content_ranker"]
        lines.append(f"| {domain} | {kind} | {r['cases']} | {n['median']:.2f} | {n[f'share_ge_{NEAR_DUPLICATE}']:.2f} | "
                     f"{h['median']:.2f} | {h[f'share_ge_{SIMILAR}']:.2f} | {c['sampled']['HR@10']:.3f} | "
                     f"{c['full']['HR@10']:.3f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines[-len(rows) - 2:]))


if __name__ == "__main__":
    main()
