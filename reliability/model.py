"""Which model the checks serve: the bundled default model, or a stand-in of the same size.

The checks should load the server as production does, so they use the bundled model
(cats_dogs_other/model/model.keras). Where it is absent (a checkout before training ran), a
MobileNetV2 with random weights is built once into ``.reliability/model``: same architecture,
same cost per image, meaningless predictions — the checks only need well-formed ones.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from reliability.stack import ROOT, WORK_DIR

BUNDLED = ROOT / "cats_dogs_other" / "model" / "model.keras"
INPUT_SIZE = (224, 224)  # as the bundled model
STANDIN_DIR = WORK_DIR / f"standin-mobilenetv2-{INPUT_SIZE[0]}"

_BUILD = """
import sys, keras
size = int(sys.argv[2]), int(sys.argv[3])
base = keras.applications.MobileNetV2(input_shape=(*size, 3), include_top=False,
                                      weights=None, pooling="avg")
out = keras.layers.Dense(3, activation="softmax")(base.output)
keras.Model(base.input, out, name="reliability-standin").save(sys.argv[1])
"""


def standin_metadata() -> dict[str, object]:
    return {
        "format": "kto-keras-inference/1",
        "name": "reliability-standin-mobilenetv2",
        "version": "0.0.0",
        "classes": ["Cat", "Dog", "Other"],
        "input_size": list(INPUT_SIZE),
        "resize": "bilinear",
        "preprocessing": {"mode": "scale", "scale": 1 / 127.5, "offset": -1.0},
        "decision": None,
    }


def build_standin(directory: Path = STANDIN_DIR) -> Path:
    """Build (once) the MobileNetV2 stand-in in a subprocess: the harness never imports TF."""
    path = directory / "model.keras"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "model.tmp.keras"
    subprocess.run(
        [sys.executable, "-c", _BUILD, str(tmp), *map(str, INPUT_SIZE)],
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    (directory / "metadata.json").write_text(json.dumps(standin_metadata(), indent=2))
    tmp.rename(path)
    return path


def resolve(explicit: str | None = None) -> Path:
    """``--model`` if given, else the bundled model, else the stand-in (built on first use)."""
    if explicit:
        path = Path(explicit).resolve()
        if not path.exists():
            raise SystemExit(f"--model {explicit}: no such file")
        return path
    if BUNDLED.exists():
        return BUNDLED
    print(f"(no bundled model at {BUNDLED}; using a MobileNetV2 stand-in)", flush=True)
    return build_standin()
