"""lit-kd runs print no third-party advertising."""

from __future__ import annotations

import subprocess
import sys


def test_a_trainer_in_a_lit_kd_process_prints_no_advertising_tip_and_keeps_other_messages() -> None:
    script = (
        "import lightning.pytorch as pl, lit_kd\n"
        "pl.Trainer(accelerator='cpu', logger=True, enable_checkpointing=True, default_root_dir='.')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd="/tmp")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Tip:" not in output and "litlogger" not in output and "litmodels" not in output
    assert "GPU available" in output  # Lightning's own information still reaches the user
