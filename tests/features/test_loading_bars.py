"""Model-loading progress bars: off without a terminal, where each update would be one more log line."""

import io
import sys

import pytest
from transformers.utils import logging as hf_logging

from llm_emf.features.model_source import quiet_loading_bars

pytestmark = pytest.mark.unit


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_are_off_without_a_terminal_and_kept_with_one(monkeypatch):
    hf_logging.enable_progress_bar()
    try:
        monkeypatch.setattr(sys, "stderr", _Terminal())
        quiet_loading_bars()
        assert hf_logging.is_progress_bar_enabled()
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        quiet_loading_bars()
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
