"""Run by tests/test_ddp.py: DDP training (2 gloo CPU processes, strategy="ddp") on a backed .h5ad.

    python tests/_ddp_backed_script.py FILE.h5ad OUT_DIR [--in-memory] [--devices 2]

Lightning's "ddp" launcher re-runs this script once per extra device, so every rank opens the
file itself (h5py handles do not pickle, which rules out "ddp_spawn" for backed data). Rank 0
writes the per-epoch train ELBO to OUT_DIR/elbo.json and saves the model to OUT_DIR/model.
"""

import json
import os
import sys

import anndata as ad
import scvi
import torch

import remadom
from remadom.data import read_h5ad_backed


def main() -> None:
    path, out = sys.argv[1], sys.argv[2]
    devices = int(sys.argv[sys.argv.index("--devices") + 1]) if "--devices" in sys.argv else 2
    torch.set_num_threads(1)
    scvi.settings.seed = 0
    adata = ad.read_h5ad(path) if "--in-memory" in sys.argv else read_h5ad_backed(path)
    remadom.REMADOM.setup_anndata(adata, atac_obsm_key="X_atac", adt_obsm_key="X_adt", batch_key="batch")
    model = remadom.REMADOM(adata, n_hidden=16, n_latent=4, modality_dropout=0.0, dropout_rate=0.0)
    model.train(max_epochs=3, batch_size=64 // devices, accelerator="cpu", devices=devices,
                strategy="ddp" if devices > 1 else "auto", enable_progress_bar=False)
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        elbo = model.history["elbo_train"].to_numpy(dtype=float).ravel().tolist()
        with open(os.path.join(out, "elbo.json"), "w") as fh:
            json.dump({"elbo_train": elbo, "isbacked": adata.isbacked}, fh)
        model.save(os.path.join(out, "model"), overwrite=True)


if __name__ == "__main__":
    main()
