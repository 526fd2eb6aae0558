"""Which model the checks serve: the bundled default model, or a stand-in of the same size.

The checks should load the server as production does, so they use the bundled model folder
(cats_dogs_other/model, served from its model.onnx). Where it is absent (a checkout before
training ran), a MobileNetV2 with random weights is built once into ``.reliability/model``:
same architecture, same cost per image, meaningless predictions — the checks only need
well-formed ones.
"""

import os
import subprocess
import sys
from pathlib import Path

from reliability.stack import ROOT, WORK_DIR

BUNDLED = ROOT / "cats_dogs_other" / "model"
INPUT_SIZE = (224, 224)  # as the bundled model
STANDIN_DIR = WORK_DIR / f"standin-mobilenetv2-{INPUT_SIZE[0]}"


def build_standin(directory: Path = STANDIN_DIR) -> Path:
    """Build (once) the MobileNetV2 stand-in with the bench's builder, in a subprocess: the
    harness never imports TF."""
    if (directory / "model.onnx").exists():
        return directory
    subprocess.run(
        [sys.executable, "-m", "bench.workload", str(directory), "--size", str(INPUT_SIZE[0]),
         "--name", "reliability-standin-mobilenetv2"],
        check=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    return directory


def resolve(explicit: str | None = None) -> Path:
    """``--model`` if given, else the bundled model, else the stand-in (built on first use)."""
    if explicit:
        path = Path(explicit).resolve()
        if not path.exists():
            raise SystemExit(f"--model {explicit}: no such file")
        return path
    if (BUNDLED / "model.onnx").exists():
        return BUNDLED
    print(f"(no bundled model at {BUNDLED}; using a MobileNetV2 stand-in)", flush=True)
    return build_standin()
