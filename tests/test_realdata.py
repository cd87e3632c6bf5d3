"""Real data: the native RNA/ADT mosaic PBMC file trains and separates cell types.

Skips when ``../shared/data`` (or ``$REMADOM_DATA_DIR``) is absent.
"""

import numpy as np
import pytest
import scvi
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from remadom import REMADOM

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def pbmc_model(request):
    from conftest import SHARED_DATA

    path = SHARED_DATA / "pbmc_cite_mosaic_hao2021.h5mu"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    import mudata as md

    mdata = md.read_h5mu(path)
    REMADOM.setup_mudata(mdata, batch_key="batch", labels_key="celltype")
    scvi.settings.seed = 0
    model = REMADOM(mdata)
    model.train(max_epochs=40, enable_progress_bar=False)
    return model, mdata


def test_cell_types_separate_in_latent(pbmc_model):
    model, mdata = pbmc_model
    z = model.get_latent_representation(mdata)
    labels = mdata.obs["celltype"].astype(str).to_numpy()
    accuracy = cross_val_score(KNeighborsClassifier(15), z, labels, cv=5).mean()
    majority = max(np.mean(labels == c) for c in np.unique(labels))
    print(f"kNN label accuracy {accuracy:.3f} vs majority rate {majority:.3f}")
    assert accuracy > majority + 0.3


@pytest.mark.parametrize("donor", ["p1_0", "p2_0"])  # p1: RNA only, p2: ADT only
def test_single_modality_donor_lands_on_paired_cells(pbmc_model, donor):
    model, mdata = pbmc_model
    z = model.get_latent_representation(mdata)
    labels = mdata.obs["celltype"].astype(str).to_numpy()
    batch = mdata.obs["batch"].astype(str).to_numpy()
    paired = np.isin(batch, ["p3_0", "p4_0"])
    query = batch == donor
    accuracy = KNeighborsClassifier(15).fit(z[paired], labels[paired]).score(z[query], labels[query])
    majority = max(np.mean(labels[query] == c) for c in np.unique(labels[query]))
    print(f"{donor}: label transfer from paired donors {accuracy:.3f} vs majority {majority:.3f}")
    assert accuracy > majority + 0.3
