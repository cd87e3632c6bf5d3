"""Count the lines a default ``model.train()`` prints (issue #16: quiet output).

Runs the README example (PBMC mosaic shipped with the package, 2 epochs) in a fresh
subprocess, once with the default ``remadom.settings.verbosity`` and once with
``REMADOM_VERBOSITY=info`` (everything the libraries print, as before #16), and reports the
newline-terminated lines of stdout+stderr per step. The progress bar redraws with carriage
returns; its frames are counted separately.

    PYTHONPATH=src python benchmarks/output_noise.py
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = r"""
import sys, tempfile
import remadom
from remadom.datasets import load_pbmc_cite_mosaic
mdata = load_pbmc_cite_mosaic()
print("@@ setup", file=sys.stderr, flush=True)
remadom.REMADOM.setup_mudata(mdata, batch_key="batch", labels_key="celltype")
model = remadom.REMADOM(mdata, n_latent=20)
print("@@ train", file=sys.stderr, flush=True)
model.train(max_epochs=2)
print("@@ impute", file=sys.stderr, flush=True)
model.impute("adt", from_modalities=["rna"])
print("@@ save+load", file=sys.stderr, flush=True)
d = tempfile.mkdtemp()
model.save(d, overwrite=True)
remadom.REMADOM.load(d, adata=mdata)
print("@@ end", file=sys.stderr, flush=True)
"""


def count(verbosity: str | None) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    if verbosity:
        env["REMADOM_VERBOSITY"] = verbosity
    with tempfile.TemporaryDirectory() as cwd:  # no ../shared/data next to it
        out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, check=True)
    # bytes, decoded without universal newlines: text=True would turn each "\r" bar redraw into a line
    sections, current = {}, "import+load data"
    for line in out.stdout.decode("utf-8", "replace").split("\n"):
        if line.startswith("@@ "):
            current = line[3:]
            sections.setdefault(current, (0, 0))
            continue
        if line.strip():
            lines, frames = sections.get(current, (0, 0))
            sections[current] = (lines + 1, frames + line.count("\r"))
    return sections


if __name__ == "__main__":
    for verbosity in ("info", None):
        label = "REMADOM_VERBOSITY=info" if verbosity else "default"
        print(f"{label}: " + "; ".join(f"{k}: {n} lines ({f} bar redraws)" for k, (n, f) in count(verbosity).items()
                                      if k != "end"))
