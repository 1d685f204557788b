"""The model-side pipeline stages: train (tracked in MLflow), evaluate, batch recommendations, and an optional
sweep."""

from __future__ import annotations


import os

from llm_emf.config import Config
from llm_emf.pipeline.stages import MARKER, Stage, StageContext


def _train(stage_cfg):
    def run(cfg: Config, ctx: StageContext) -> dict:
        from llm_emf.training.tracked import train_tracked

        c = stage_cfg(cfg, ctx)
        result = train_tracked(c)
        return {"run_dir": result.run_dir, "checkpoint": result.checkpoint, "epochs_run": len(result.history),
                "mlflow_run_id": result.extra.get("mlflow_run_id"),
                # where each Ray Train rank ran (its placement after any restart), as in results.json
                "workers": result.extra.get("workers"),
                "best": {d: {"epoch": b["epoch"], "valid_mrr": b["mrr"]} for d, b in result.best.items()}}
    return run


def _evaluate(stage_cfg):
    def run(cfg: Config, ctx: StageContext) -> dict:
        from llm_emf.data.schema import Dataset
        from llm_emf.evaluation import evaluate, protocols_from_config
        from llm_emf.storage import Storage
        from llm_emf.serving import load_scorer

        c = stage_cfg(cfg, ctx)
        train_done = ctx.storage.read_json(ctx.storage.path("train", ctx.keys["train"], MARKER))
        run_dir = train_done["summary"]["run_dir"]
        dataset = Dataset.read(c.data.dataset)
        scorer = load_scorer(run_dir, dataset, c)
        out = Storage(ctx.output("evaluate"))
        results = {}
        for split in ("valid", "test"):
            res = evaluate(scorer, dataset, split, c, protocols=protocols_from_config(c), scorer_name=c.model.name)
            print(res.format_table(f"{c.model.name}: {split} split of {dataset.meta.name}"))
            out.write_json(out.path(f"{split}.json"), res.to_dict())
            results[split] = res.to_dict()["metrics"]
        return {"run_dir": run_dir, "results": out.path("test.json"), "test": results["test"]}
    return run


def _recommend(stage_cfg):
    def run(cfg: Config, ctx: StageContext) -> dict:
        from llm_emf.serving.batch import recommend_all

        c = stage_cfg(cfg, ctx)
        train_done = ctx.storage.read_json(ctx.storage.path("train", ctx.keys["train"], MARKER))
        output = ctx.storage.path("recommend", ctx.keys["recommend"], "recommendations.parquet")
        summary = recommend_all(train_done["summary"]["run_dir"], output, c.pipeline.recommend_split,
                                c.pipeline.recommend_k, c.data.dataset, c.model.features or None,
                                exclude_seen=c.eval.exclude_seen)
        print(summary.report())
        return {"output": output, "users": summary.total, "users_per_s": round(summary.items_per_s, 1)}
    return run


def _tune(stage_cfg):
    def run(cfg: Config, ctx: StageContext) -> dict:
        from llm_emf.tuning.sweep import run_sweep

        c = stage_cfg(cfg, ctx)
        res = run_sweep(c)
        return {"best_config": res.best_config_path, "best_params": res.best_params, "n_trials": res.n_trials,
                "parent_run_id": res.parent_run_id}
    return run


def stages(uses_features: bool, paths: tuple[str, ...], stage_cfg) -> list[Stage]:
    feature_upstream = ("prepare", "embed") if uses_features else ("prepare",)
    model_keys = ("model", "train", "eval", "seed")
    # the source whose change changes a stage's output (see fingerprint.py; shared modules are always in);
    # scoring: loading a run and scoring with it, which train runs too (validation, the final test)
    scoring = ("model", "evaluation", "checkpoints.py", "serving/run.py", "serving/scoring.py", "serving/catalog.py",
               "data/cold.py")
    return [
        Stage("train", reads=model_keys, upstream=feature_upstream, ignores=paths + ("tracking",),
              run=_train(stage_cfg), code=("training", *scoring)),
        Stage("evaluate", reads=("eval", "seed"), upstream=("prepare", "train"), ignores=paths, run=_evaluate(stage_cfg),
              code=scoring),
        Stage("recommend", reads=("pipeline.recommend_split", "pipeline.recommend_k", "eval.exclude_seen"),
              upstream=("prepare", "train"), ignores=paths, run=_recommend(stage_cfg), code=scoring + ("serving",)),
        Stage("tune", reads=model_keys + ("tune",), upstream=feature_upstream, ignores=paths, run=_tune(stage_cfg),
              code=("tuning", "training", *scoring),
              inputs=lambda cfg: [cfg.tune.space] if os.path.exists(cfg.tune.space) else []),
    ]
