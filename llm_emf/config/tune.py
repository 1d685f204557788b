"""Config section: Ray Tune sweeps."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import help_field
from .tracking import TrackingConfig  # noqa: F401  re-exported: `from llm_emf.config.tune import TrackingConfig`


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
