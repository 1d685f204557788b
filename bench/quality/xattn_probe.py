"""What the cross-domain attention reads, and how large its output is next to H and S.

    python -m bench.quality.xattn_probe --runs runs/quality_conv/quality-id_only-XXXX --out bench/results/xattn_probe

For every test case of a trained LLM-EMF run (each domain with its best-validation state) it rebuilds the
prediction state h^D = H_t + (S^D + X^D) at the last D-position, where X^D is the cross-attention output,
and reports per domain: the mean norms of H_t, S^D and X^D; the cosine between X^D and H_t (is the cross term
a copy of what H already adds?); how the attention spreads over the mixed columns it may see (mass on the
query item's own column, on items of the other domain, and the entropy against a uniform spread); and the
fraction of cases whose query sees no mixed column at all (its item lies before the mixed window), where X
is zero by construction. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from bench import command_line
from llm_emf.model.batch import PAD, eval_inputs
from llm_emf.model.network import embed
from llm_emf.serving import load_models


def _attention(cross, single: torch.Tensor, mixed: torch.Tensor, mixed_time: torch.Tensor,
               mixed_valid: torch.Tensor) -> torch.Tensor:
    """(B, h, L, L) attention weights of a CrossDomainAttention (rows with nothing allowed are all zero)."""
    attn = cross.attn
    B, L, d = single.shape
    h = attn.n_heads
    q = attn.q(cross.ln_q(single)).view(B, L, h, d // h).transpose(1, 2)                     # (B, h, L, d/h)
    k = attn.kv(cross.ln_kv(mixed)).view(B, L, 2, h, d // h)[:, :, 0].transpose(1, 2)       # (B, h, L, d/h)
    cols = torch.arange(L)
    allowed = (cols.view(1, 1, -1) <= mixed_time.unsqueeze(-1)) & mixed_valid.unsqueeze(1)  # (B, L, L)
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(d // h)
    logits = logits.masked_fill(~allowed.unsqueeze(1), float("-inf"))
    weights = torch.softmax(logits, dim=-1)
    return torch.nan_to_num(weights, nan=0.0), allowed


@torch.no_grad()
def probe(run: str) -> dict:
    cfg, dataset, models = load_models(run)
    if cfg.model.name != "llm_emf" or cfg.model.fusion != "early" or not cfg.model.cross_attention:
        raise SystemExit(f"{run}: expected an early-fusion llm_emf run with cross_attention on")
    rows = dataset.split("test")
    items = rows.column("items").to_pylist()
    out = {"run": run, "domains": {}}
    for d, name in enumerate(dataset.meta.domains):
        model = models[d].eval()
        cases = [i for i, seq in enumerate(items) if (seq[-1] >= dataset.n_x) == bool(d)]
        batch = model.build_eval_batch(eval_inputs(rows.take(pa.array(cases))))
        vecs = model.fusion()
        net = model.net
        mixed_valid = batch.items != PAD
        H = net.mixed(embed(vecs, batch.items), mixed_valid)                              # (B, L, q)
        seq = batch.seq[d]
        S = net.single[d](embed(vecs, seq), seq != PAD)                                   # (B, L, q)
        X = net.cross[d](S, H, batch.time[d], mixed_valid)                                # (B, L, q)
        weights, allowed = _attention(net.cross[d], S, H, batch.time[d], mixed_valid)   # (B, h, L, L)
        col = batch.last[d][:, -1]                                                        # (B,) last D column
        has = col != PAD
        b = torch.arange(len(col))[has]
        c = col[has]
        h_t, s, x = H[has, -1], S[b, c], X[b, c]                                          # (n, q)
        w = weights[b, :, c].mean(dim=1)                                                  # (n, L) over heads
        sees = allowed[b, c].sum(dim=-1)                                                  # (n,) visible columns
        own = batch.time[d][b, c]                                                         # (n,) own mixed column
        other = (batch.items[b] >= dataset.n_x) != bool(d)                                # (n, L) other-domain items
        seen = sees > 0
        ent = -(w * torch.log(w.clamp(min=1e-12))).sum(-1)
        uniform = torch.log(sees.clamp(min=1).float())
        frac_other = (other & allowed[b, c]).sum(-1).float() / sees.clamp(min=1)
        own_mass = w[torch.arange(len(own))[seen], own[seen]]
        cos = torch.nn.functional.cosine_similarity(x[seen], h_t[seen], dim=-1)
        out["domains"][name] = {
            "cases": len(cases), "with_a_D_item": int(has.sum()),
            "sees_no_mixed_column": float((~seen).float().mean()),
            "norm_H": float(h_t.norm(dim=-1).mean()), "norm_S": float(s.norm(dim=-1).mean()),
            "norm_X": float(x[seen].norm(dim=-1).mean()), "cos_X_H": float(cos.mean()),
            "visible_columns": float(sees[seen].float().mean()),
            "mass_on_own_item": float(own_mass.mean()),
            "mass_on_other_domain": float((w * other).sum(-1)[seen].mean()),
            "share_of_other_domain_columns": float(frac_other[seen].mean()),
            "entropy_vs_uniform": float((ent[seen] / uniform[seen].clamp(min=1e-6))[sees[seen] > 1].mean()),
        }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--out", default="bench/results/xattn_probe")
    args = p.parse_args(argv)
    results = [probe(r) for r in args.runs]
    doc = {"command": command_line(__spec__.name, sys.argv[1:] if argv is None else argv), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(doc, indent=2) + "\n")
    keys = ["cases", "sees_no_mixed_column", "norm_H", "norm_S", "norm_X", "cos_X_H", "visible_columns",
            "mass_on_own_item", "mass_on_other_domain", "share_of_other_domain_columns", "entropy_vs_uniform"]
    lines = ["# Cross-domain attention at the test predictions", "", f"Command: `{doc['command']}`", "",
             "Per domain, at the state each test prediction reads (the last D-position): norms of the mixed state "
             "H_t, the single-domain state S and the cross-attention output X; cosine(X, H_t); where the attention "
             "puts its weight (averaged over heads) among the mixed columns it may see.", "",
             "| run | domain | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in results:
        for name, v in r["domains"].items():
            cells = [f"{v[k]:.3f}" if isinstance(v[k], float) else str(v[k]) for k in keys]
            lines.append(f"| {Path(r['run']).name} | {name} | " + " | ".join(cells) + " |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
