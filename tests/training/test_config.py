"""Configs read back from checkpoints, and the command lines a card records (training/config.py, provenance.py)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from training.config import config_from_args, config_from_checkpoint
from training.provenance import command_line


@dataclass
class Cfg:
    epochs: int = 3
    widths: tuple[int, ...] = (8, 16)
    added_later: float = 0.5


def test_a_checkpoint_config_over_the_default():
    cfg = config_from_checkpoint(Cfg(), {"epochs": 7, "widths": (4, 4)})
    assert cfg == Cfg(epochs=7, widths=(4, 4), added_later=0.5)  # a field added since keeps its default


def test_a_retired_field_is_accepted_only_at_its_neutral_value():
    assert config_from_checkpoint(Cfg(), {"epochs": 2, "lm_epochs": 0}, retired={"lm_epochs": 0}).epochs == 2
    with pytest.raises(SystemExit, match="lm_epochs=2"):
        config_from_checkpoint(Cfg(), {"lm_epochs": 2}, retired={"lm_epochs": 0})
    with pytest.raises(SystemExit, match="not a field"):
        config_from_checkpoint(Cfg(), {"typo": 1})


def test_set_overrides_are_typed_by_the_default():
    args = argparse.Namespace(epochs=None, batch_size=None, set=["widths=2,3", "added_later=0.25"])
    assert config_from_args(Cfg(), args) == Cfg(widths=(2, 3), added_later=0.25)


def test_the_recorded_command_is_what_ran_without_note_and_resume():
    argv = ["train", "sentiment-lstm", "--epochs", "3", "--set", "augment_copies=12", "--resume", "--note", "a b"]
    assert command_line(argv) == "neuroserve-train train sentiment-lstm --epochs 3 --set augment_copies=12"
    assert command_line(["export", "traffic", "--note=x", "--out", "/tmp/m"]) == "neuroserve-train export traffic --out /tmp/m"
