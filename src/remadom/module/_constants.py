"""Keys of the dicts the module's stages pass to each other (as scvi-tools' ``MODULE_KEYS``)."""

from typing import NamedTuple


class _ModuleKeys(NamedTuple):
    # inference inputs (and BATCH_INDEX_KEY, for feature masks)
    X_KEY: str = "x"
    OBSERVED_KEY: str = "observed"
    CELL_MASKS_KEY: str = "cell_masks"
    # inference outputs
    Z_KEY: str = "z"
    QZ_KEY: str = "qz"
    QZ_MEAN_KEY: str = "qz_m"
    QZ_LOGVAR_KEY: str = "qz_logvar"
    EXPERT_MEANS_KEY: str = "expert_means"
    EXPERT_LOGVARS_KEY: str = "expert_logvars"
    ENCODED_KEY: str = "encoded"
    LIBRARY_KEY: str = "library"
    X_PREPARED_KEY: str = "x_prepared"
    ENTRY_MASKS_KEY: str = "entry_masks"
    # generative inputs / outputs
    BATCH_INDEX_KEY: str = "batch_index"
    CAT_COVS_KEY: str = "cat_covs"
    CONT_COVS_KEY: str = "cont_covs"
    DECODE_MASKS_KEY: str = "decode_masks"
    PARAMS_KEY: str = "params"
    ROWS_KEY: str = "rows"


MODULE_KEYS = _ModuleKeys()
