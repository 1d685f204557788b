"""Config sections: Ray Tune sweeps and MLflow tracking."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field


@dataclass
class TuneConfig:
    space: str = help_field("tune_spaces/fusion.yaml", "(str) search-space YAML file")
    search: str = help_field("optuna", "(str) optuna (TPE, seeded) or random (Tune's seeded variant generator; "
                             "always used for spaces with a grid)", choices=("optuna", "random"))
    num_samples: int = help_field(8, "(int) trials", min=1)
    max_concurrent_trials: int = help_field(0, "(int) concurrent trials; 0 derives it from the cluster's CPUs/GPUs",
                                            min=0)
    cpus_per_trial: float = help_field(0.5, "(float) CPUs per trial (fractions let a 2-core machine run it)", min=0.0)
    grace_period: int = help_field(2, "(int) ASHA: epochs before a trial may be stopped", min=1)
    reduction_factor: int = help_field(2, "(int) ASHA reduction factor", min=2)
    max_retries: int = help_field(1, "(int) retries of a trial that raises", min=0)
    storage: str = help_field("runs/tune", "(str) where Tune keeps experiment state")
    name: str = help_field("", "(str) sweep name; reusing it resumes the sweep")


@dataclass
class TrackingConfig:
    enabled: bool = help_field(True, "(bool) log runs to MLflow")
    uri: str = help_field("", "(str) tracking URI; empty: $MLFLOW_TRACKING_URI, else for `run` and pipeline jobs "
                          "sqlite:///<pipeline.storage>/mlflow.db (refused where that would not outlive a Ray job "
                          "or not be shared by a multi-node cluster), for other commands sqlite:///<cwd>/mlflow.db")
    experiment: str = help_field("llm-emf", "(str) MLflow experiment name (created if missing)")
    artifact_root: str = help_field("", "(str) where a new experiment keeps its artifacts; empty: "
                                    "mlartifacts/<experiment> next to the sqlite file (a server decides itself)")
    timeout_s: float = help_field(3.0, "(float) seconds to wait for a tracking server before going on without it",
                                  min=0.1, max=600.0)
    log_checkpoints: bool = help_field(False, "(bool) upload checkpoint files as artifacts; otherwise only their "
                                       "path/URI is recorded")
