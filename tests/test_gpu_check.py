"""benchmarks.gpu_check runs end to end on the CPU at small sizes: the same path a lent GPU takes."""

from __future__ import annotations

import re

from benchmarks import gpu_check


def test_the_gpu_check_runs_every_variant_a_sigterm_and_an_evaluation_on_the_cpu(capsys):
    # In-process loading and 2 steps: forking loader processes from a test process costs more than the run.
    assert gpu_check.main(["--device", "cpu", "--workers", "0", "--steps", "2", "--no-write"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^\| (\w+) \| float32 \| 2 x 64x32 \| [\d.]+ \| n/a \| \d+% \| ok \|$", out, re.MULTILINE
    )
    assert rows == [
        "deeplabv2_cityscapes",
        "bisenet_cityscapes",
        "bisenet_gta5",
        "bisenet_gta5_aug1",
        "bisenet_gta5_aug2",
        "bisenet_gta5_aug12",
        "bisenet_gta5_fda",
        "bisenet_gta5_dacs",
    ]
    assert re.search(
        r"SIGTERM at step \d+: exit 130; `--resume` exit 0, ended at step 12 of 12: \*\*ok\*\*", out
    )
    assert "`train evaluate` of deeplabv2_cityscapes on up to 4 val images at full label resolution" in out
