"""Experiment tracking with MLflow: runs, sweeps (parent + child runs), plots. Tracking never stops training."""

from .plots import metric_bars, training_curves
from .tracker import Tracker, TrackingWarning
from .uri import resolve_tracking_uri

__all__ = ["Tracker", "TrackingWarning", "resolve_tracking_uri", "training_curves", "metric_bars"]
