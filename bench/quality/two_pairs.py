"""One report over several dataset pairs: each model against per-domain SASRec, and ablations against a base.

    python -m bench.quality.two_pairs --out bench/results/quality_two_pairs \
        --pair Food-Kitchen=bench/results/quality_fk_two_pairs.json \
        --pair Beauty-Electronics=bench/results/quality_abe.json \
        --models id_only,text --ablations id_only_no_xattn,id_only_lambda0 --base id_only

Each ``--pair`` is the JSON of ``bench.quality.run`` (or ``bench.quality.merge``) on one dataset. The first
table answers "is the model at or above SASRec in every domain": per pair, protocol and domain, each model's
mean over seeds and its paired bootstrap difference from ``--reference`` (sasrec) with the 95% interval. The
ablation tables give each ablation's paired difference from ``--base`` on every pair, side by side, so a
choice that wins on one pair and loses on the other shows as such. ``<out>.json`` keeps every number.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bench import command_line
from bench.quality.paired import format_cell, paired_differences
from bench.quality.table import aggregate

METRICS = ("NDCG@10", "MRR")
PROTOCOLS = ("full", "sampled")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", action="append", required=True, metavar="NAME=JSON",
                   help="a dataset pair's quality JSON (repeat per pair)")
    p.add_argument("--models", default="id_only,text", help="variants checked against --reference")
    p.add_argument("--reference", default="sasrec", help="the single-domain baseline")
    p.add_argument("--ablations", default="", help="variants compared with --base on every pair")
    p.add_argument("--base", default="id_only", help="what the ablations are compared with")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B")
    p.add_argument("--note", action="append", default=[], help="a sentence for the report")
    p.add_argument("--out", required=True, help="output path without extension")
    return p.parse_args(argv)


def _split(names: str) -> list[str]:
    return [n for n in names.split(",") if n]


def pair_summary(doc: dict, models: list[str], reference: str, ablations: list[str], base: str,
                 n_boot: int) -> dict:
    """Means per variant and the paired differences of the models from the reference and of the ablations
    from the base, for one pair."""
    runs = doc["runs"]
    present = {r["variant"] for r in runs}
    means = aggregate(runs)
    vs_reference = paired_differences([r for r in runs if r["variant"] in {*models, reference}], reference,
                                      METRICS, n_boot)["results"] if reference in present else {}
    vs_base = paired_differences([r for r in runs if r["variant"] in {*ablations, base}], base, METRICS,
                                 n_boot)["results"] if base in present else {}
    seeds = {v: sorted({r["seed"] for r in runs if r["variant"] == v}) for v in present}
    return {"dataset": doc.get("dataset"), "common_overrides": doc.get("common_overrides"), "seeds": seeds,
            "aggregate": {v: means[v] for v in means if v in {*models, reference, *ablations, base}},
            "validation": validation_means(runs),
            "vs_reference": vs_reference, "vs_base": vs_base, "commands": doc.get("commands") or [doc.get("command")]}


def validation_means(runs: list[dict]) -> dict:
    """``{variant: {domain: mean best validation MRR over seeds}}``: the number that chose each run's epoch
    (and head), so the one a default may be chosen on; the test split never decides anything."""
    values: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        for domain, best in (run.get("best") or {}).items():
            values.setdefault(run["variant"], {}).setdefault(domain, []).append(best["valid_mrr"])
    return {v: {d: sum(xs) / len(xs) for d, xs in ds.items()} for v, ds in values.items()}


def validation_rows(pairs: dict[str, dict], variants: list[str], base: str) -> list[str]:
    """Markdown rows: each variant's mean best validation MRR per pair and domain, and its relative
    difference from ``base`` where both are there."""
    rows = []
    for variant in variants:
        cells = []
        for s in pairs.values():
            valid = s.get("validation", {})
            for domain in _domains(s):
                value, ref = valid.get(variant, {}).get(domain), valid.get(base, {}).get(domain)
                cell = "-" if value is None else f"{value:.4f}"
                if value is not None and ref and variant != base:
                    cell += f" ({value / ref - 1:+.1%})"
                cells.append(cell)
        rows.append(f"| {variant} | " + " | ".join(cells) + " |")
    return rows


def _mean(agg: dict, variant: str, protocol: str, domain: str, metric: str) -> str:
    try:
        m = agg[variant]["metrics"][protocol][domain][metric]
    except KeyError:
        return "-"
    std = m.get("std")
    return f"{m['mean']:.4f}" + (f" ± {std:.4f}" if std is not None and not math.isnan(std) else "")


def gate_rows(pairs: dict[str, dict], models: list[str], reference: str) -> list[dict]:
    """One row per (pair, domain, model) under the full protocol, NDCG@10: the mean difference from the
    reference and whether it is at or above it (the mean may not be below; the interval may touch 0)."""
    rows = []
    for pair, s in pairs.items():
        for model in models:
            for domain, ms in s["vs_reference"].get(model, {}).get("full", {}).items():
                stat = ms["NDCG@10"]
                rows.append({"pair": pair, "domain": domain, "model": model, "diff": stat["diff"],
                             "low": stat["low"], "high": stat["high"], "at_or_above": stat["diff"] >= 0})
    return rows


def markdown(doc: dict) -> str:
    pairs, models, ref = doc["pairs"], doc["models"], doc["reference"]
    lines = [f"# Quality on {len(pairs)} pairs: cross-domain models against per-domain {ref}", "",
             f"Command: `{doc['command']}`", ""]
    lines += [f"- **{name}**: `{s['dataset']}`, common overrides `{' '.join(s['common_overrides'] or [])}`, "
              f"seeds per variant {', '.join(f'{v} {len(x)}' for v, x in sorted(s['seeds'].items()))}"
              for name, s in pairs.items()]
    lines += ["", "Test metrics, each domain at its best-validation epoch, mean ± sample std over seeds; "
              f"differences are paired bootstrap over the test cases ({doc['n_boot']} resamples, 95% interval), "
              "each case's metric averaged over a variant's seeds first. Selection (epochs, heads) used "
              "validation only."]
    lines += ["", *[f"Note: {n}" for n in doc.get("notes", [])]]
    lines += ["", f"## At or above {ref}? (full ranking, NDCG@10)", "",
              "| pair | domain | model | model − " + ref + " [95% CI] | at or above |", "|---|---|---|---|---|"]
    for r in doc["gate"]:
        lines.append(f"| {r['pair']} | {r['domain']} | {r['model']} | {r['diff']:+.4f} [{r['low']:+.4f}, "
                     f"{r['high']:+.4f}] | {'yes' if r['at_or_above'] else '**no**'} |")
    for protocol in PROTOCOLS:
        lines += ["", f"## {protocol} protocol: means and differences from {ref}", ""]
        lines += ["| pair | domain | variant | " + " | ".join(METRICS) + " | " +
                  " | ".join(f"{m} − {ref}" for m in METRICS) + " |", "|---|---|---|" + "---|" * 2 * len(METRICS)]
        for pair, s in pairs.items():
            domains = next(iter(s["aggregate"].values()), {}).get("metrics", {}).get(protocol, {})
            for domain in domains:
                for variant in [ref, *models]:
                    if variant not in s["aggregate"]:
                        continue
                    diffs = s["vs_reference"].get(variant, {}).get(protocol, {}).get(domain, {})
                    lines.append(f"| {pair} | {domain} | {variant} | " +
                                 " | ".join(_mean(s["aggregate"], variant, protocol, domain, m) for m in METRICS) +
                                 " | " + " | ".join(format_cell(diffs.get(m)) if variant != ref else "-"
                                                    for m in METRICS) + " |")
    if doc["ablations"]:
        base = doc["base"]
        for metric in METRICS:
            lines += ["", f"## Ablations: difference from {base} (full ranking, {metric})", "",
                      "| ablation | " + " | ".join(f"{pair} {d}" for pair, s in pairs.items()
                                                   for d in _domains(s)) + " |",
                      "|---|" + "---|" * sum(len(_domains(s)) for s in pairs.values())]
            for ablation in doc["ablations"]:
                cells = [format_cell(s["vs_base"].get(ablation, {}).get("full", {}).get(d, {}).get(metric))
                         for s in pairs.values() for d in _domains(s)]
                lines.append(f"| {ablation} | " + " | ".join(cells) + " |")
    variants = list(dict.fromkeys([doc["base"], ref, *models, *doc["ablations"]]))
    lines += ["", "## Validation: what a default may be chosen on", "",
              f"Best validation MRR (full ranking) per domain, mean over a variant's seeds, and its change from "
              f"{doc['base']}: the number that picked each run's epoch and head.", "",
              "| variant | " + " | ".join(f"{pair} {d}" for pair, s in pairs.items() for d in _domains(s)) + " |",
              "|---|" + "---|" * sum(len(_domains(s)) for s in pairs.values()), *validation_rows(pairs, variants,
                                                                                               doc["base"])]
    return "\n".join(lines) + "\n"


def _domains(summary: dict) -> list[str]:
    return list(next(iter(summary["aggregate"].values()), {}).get("metrics", {}).get("full", {}))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    models, ablations = _split(args.models), _split(args.ablations)
    pairs = {}
    for spec in args.pair:
        name, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--pair: expected NAME=JSON, found '{spec}'")
        pairs[name] = pair_summary(json.loads(Path(path).read_text()), models, args.reference, ablations,
                                   args.base, args.bootstrap)
    doc = {"command": command_line("bench.quality.two_pairs", argv), "pairs": pairs, "models": models,
           "reference": args.reference, "ablations": ablations, "base": args.base, "n_boot": args.bootstrap,
           "notes": args.note}
    doc["gate"] = gate_rows(pairs, models, args.reference)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(doc, indent=1) + "\n")
    Path(args.out + ".md").write_text(markdown(doc))
    print(Path(args.out + ".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
