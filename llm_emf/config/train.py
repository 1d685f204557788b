"""Config sections: training on Ray Train, and evaluation."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field

PROTOCOLS = ("sampled", "full")   # how llm_emf.evaluation ranks a case: among sampled negatives, among all items


@dataclass
class TrainConfig:
    epochs: int = help_field(20, "(int) maximum epochs", min=1, max=10000)
    batch_size: int = help_field(256, "(int) sequences per step per worker", min=1, max=1 << 20)
    lr: float = help_field(1e-3, "(float) Adam learning rate", min=0.0, max=10.0)
    weight_decay: float = help_field(0.0, "(float) AdamW weight decay", min=0.0, max=10.0)
    warmup_steps: int = help_field(0, "(int) linear learning-rate warm-up steps", min=0)
    patience: int = help_field(5, "(int) stop after this many epochs without a better validation MRR", min=1)
    loss: str = help_field("auto", "(str) training loss, per domain: full (softmax over every item of the "
                           "target's domain), sampled (softmax over the batch's targets plus "
                           "train.sampled_negatives drawn items, log-Q corrected; training only: validation and "
                           "test rank the full catalog) or auto (full up to 100,000 items in a domain, sampled "
                           "above: the crossover in bench/results/catalog_scale.md)",
                           choices=("auto", "full", "sampled"))
    sampled_negatives: int = help_field(1024, "(int) train.loss=sampled: items drawn per domain and batch (with "
                                        "replacement) as negatives besides the batch's targets", min=1, max=1 << 24)
    sampled_alpha: float = help_field(0.0, "(float) train.loss=sampled: items are drawn with probability "
                                      "proportional to their training count ** alpha; 0 is uniform over all the "
                                      "domain's items (the batch's targets already follow popularity, so the draws "
                                      "cover the tail and untrained items), 1 follows popularity", min=0.0, max=2.0)
    num_workers: int = help_field(0, "(int) Ray Train workers; 0 trains in-process (local mode)", min=0, max=4096)
    cpus_per_worker: float = help_field(1.0, "(float) CPUs reserved per worker (fractions allowed)", min=0.0)
    use_gpu: bool = help_field(False, "(bool) one GPU per worker (NCCL); otherwise gloo on CPU")
    bf16: bool = help_field(False, "(bool) bf16 autocast for forward and loss where the device does "
                                  "bf16 natively (GPU, AVX-512/AMX CPU); elsewhere fp32 with a warning")
    compile: bool = help_field(False, "(bool) the training step's sequence encoders through torch.compile "
                               "(inductor; the first steps compile); eager mode with one warning where it cannot "
                               "work (no C++ compiler or Triton, another device, a compile error)",
                               measured="off by default: on a 2-core AVX-512 CPU a compiled step was 2-11% slower "
                               "than an eager one, after 41-56 s of compiling (bench/results/train_ceiling.md)")
    max_failures: int = help_field(2, "(int) worker-group restarts from the latest checkpoint", min=0)
    run_name: str = help_field("", "(str) run name; reusing it resumes that run from its latest checkpoint")
    storage: str = help_field("runs/train", "(str) where Ray Train keeps checkpoints (local path, s3://, gs://)")
    eval_batch_size: int = help_field(512, "(int) sequences per batch in validation/test", min=1)
    select_protocol: str = help_field("full", "(str) protocol whose validation MRR selects the best epoch per "
                                      "domain and drives early stopping", choices=PROTOCOLS)
    # ablations (--help lists them under their own heading)
    embedding_l2: float = help_field(0.0, "(float) L2 penalty on the item-ID rows a training batch reads (its "
                                     "input items and targets, each row once; not the negatives, so it does not "
                                     "depend on train.loss), as SASRec's l2_emb: loss += embedding_l2 * the sum of "
                                     "their squared entries; with model.id_tables=per_encoder each table's rows its "
                                     "encoder reads or scores; 0 is off; needs model.use_id",
                                     min=0.0, max=100.0, measured="ablation, not yet measured")


@dataclass
class EvalConfig:
    protocol: str = help_field("both", "(str) sampled (target + n_negatives), full (all target-domain items) or both",
                               choices=(*PROTOCOLS, "both"))
    n_negatives: int = help_field(999, "(int) negatives per case in the sampled protocol", min=1)
    negatives_seed: int = help_field(42, "(int) seed of the sampled negatives, kept apart from the training seed so "
                                     "that every model and every training seed is scored on the same candidates",
                                     min=0)
    negatives_file: str = help_field("", "(str) sampled negatives file, may use {split}, {seed} "
                                     "(eval.negatives_seed), {n}; written on first use so every model is scored "
                                     "on the same candidates (default: "
                                     "<data.dataset>/negatives_{split}_seed{seed}_n{n}.parquet)")
    exclude_seen: bool = help_field(False, "(bool) full protocol: remove items already in the history (never the "
                                    "target) from the candidates (off: the C2DSR protocol keeps them)")
    ks: list[int] = help_field(None, "(list[int]) cut-offs for NDCG@k and HR@k", default_factory=lambda: [1, 5, 10])
    ties: str = help_field("pessimistic", "(str) rank rule when a candidate has exactly the target's score: "
                           "pessimistic (ties rank above the target: count against the model) or optimistic "
                           "(only strictly higher scores count, as C2DSR's code)",
                           choices=("pessimistic", "optimistic"))
    output: str = help_field("", "(str) result JSON path (default: evaluation.json in the run folder)")
