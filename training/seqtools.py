"""Old import path, kept only until the fraud/ICU recipes (recipes/risk.py, written alongside this split) import
from the modules below; nothing else imports it. Remove it then.

    settings      -> training.config         schedule, run_fit -> training.loop
    ONNX, parity  -> training.onnx_export    quantile heads    -> training.nets.quantile
    intervals     -> training.intervals      plots             -> training.cards
    commands      -> training.provenance
"""

from __future__ import annotations

import shlex

from training.cards import plot_forecasts  # noqa: F401
from training.config import config_from_args, parse_setting  # noqa: F401
from training.intervals import QUANTILES, block_bootstrap_ci, interval_report, widening_factors  # noqa: F401
from training.loop import one_cycle, run_fit  # noqa: F401
from training.nets.quantile import monotone_quantiles, pinball_loss  # noqa: F401
from training.onnx_export import export_graph, parity_cases, run_onnx  # noqa: F401


def export_command(training_command: str, task: str) -> str:
    """The export command matching a training command (same --checkpoint-dir / --data-dir, if any). The other
    recipes record the export command that ran (training.provenance.command_line)."""
    argv = shlex.split(training_command)
    out = ["neuroserve-train", "export", task]
    for opt in ("--checkpoint-dir", "--data-dir"):
        if opt in argv[:-1]:
            out += [opt, argv[argv.index(opt) + 1]]
    return shlex.join(out)
