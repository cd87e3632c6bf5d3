"""``ModalityField``: one modality as one scvi-tools field (validation, registration, transfer)."""

from __future__ import annotations

import numpy as np
from scvi.data.fields import BaseAnnDataField

from .. import _compat
from .._constants import modality_key
from ..modalities import ModalitySpec
from ._validation import RemadomSetupError, check_modality_matrix, get_modality_matrix, read_mask


def feature_names(adata, spec: ModalitySpec) -> np.ndarray:
    """Feature names of a modality (var_names, DataFrame columns, ``uns['<name>_names']`` or ``<name>_<i>``)."""
    matrix = get_modality_matrix(adata, spec)
    if spec.attr == "layers":
        return np.asarray(adata.var_names, dtype=str)
    if hasattr(matrix, "columns"):
        return np.asarray(matrix.columns, dtype=str)
    if f"{spec.name}_names" in adata.uns:
        return np.asarray(adata.uns[f"{spec.name}_names"], dtype=str)
    return np.asarray([f"{spec.name}_{i}" for i in range(matrix.shape[1])])


class ModalityField(BaseAnnDataField):
    """A modality's matrix (``X``, a layer or an ``obsm`` entry, dense or sparse), registered as one field.

    The field validates the matrix against the likelihood (shape, finiteness, counts) and the
    modality's mask column, and keeps in its state registry the :class:`~remadom.modalities.ModalitySpec`
    (``"spec"``) and the feature names (``"column_names"``). The model reads its modalities from
    there. :meth:`transfer_field` checks that new data (``load``, ``_validate_anndata`` and,
    later, query data) has the same features, in the same order.

    Parameters
    ----------
    spec
        The modality.
    """

    SPEC_KEY = "spec"
    COLUMN_NAMES_KEY = "column_names"

    def __init__(self, spec: ModalitySpec):
        super().__init__()
        self.spec = spec
        self._registry_key = modality_key(spec.name)
        self._validated = None  # id of the AnnData last validated, so setup checks each matrix once

    @property
    def registry_key(self) -> str:
        return self._registry_key

    @property
    def attr_name(self) -> str:
        if self.spec.attr == "layers" and self.spec.key is None:
            return "X"
        return self.spec.attr

    @property
    def attr_key(self) -> str | None:
        return None if self.attr_name == "X" else self.spec.key

    @property
    def is_empty(self) -> bool:
        return False

    def get_field_data(self, adata):
        """The modality's matrix; a clear error when its key is missing."""
        return get_modality_matrix(adata, self.spec)

    def validate_field(self, adata) -> None:
        """Check the matrix against the likelihood and read the mask (both raise :class:`RemadomSetupError`)."""
        check_modality_matrix(adata, self.spec, self.get_field_data(adata))
        read_mask(adata, self.spec)
        self._validated = id(adata)

    def register_field(self, adata) -> dict:
        """Validate (unless just done for this AnnData), then store the spec and the feature names."""
        if self._validated != id(adata):
            self.validate_field(adata)
        self._validated = None
        _compat._verify_and_correct_data_format(adata, self.attr_name, self.attr_key)
        return {self.SPEC_KEY: self.spec.to_dict(), self.COLUMN_NAMES_KEY: feature_names(adata, self.spec)}

    def transfer_field(self, state_registry: dict, adata_target, **kwargs) -> dict:
        """Validate ``adata_target`` and check it has the registered features, in the same order.

        A registry written before this field existed (a ``LayerField`` / ``ObsmField`` state with
        no ``"spec"``) is compared by number of features only, as its names may be positions.
        """
        self.validate_field(adata_target)
        found = feature_names(adata_target, self.spec)
        saved = np.asarray(state_registry.get(self.COLUMN_NAMES_KEY, []))
        legacy = self.SPEC_KEY not in state_registry
        if len(saved) != len(found) or (not legacy and not np.array_equal(saved.astype(str), found)):
            raise RemadomSetupError(
                f"The {self.spec.name!r} features of this data ({len(found)}) do not match the "
                f"{len(saved)} the model was trained on. Subset/reorder the data to the model's "
                f"features: model.feature_names_[{self.spec.name!r}]."
            )
        names = found if legacy else saved
        return {self.SPEC_KEY: self.spec.to_dict(), self.COLUMN_NAMES_KEY: names}

    def get_summary_stats(self, state_registry: dict) -> dict:
        """``n_mod_<name>``: the number of features."""
        return {f"n_{self.registry_key}": len(state_registry[self.COLUMN_NAMES_KEY])}

    def view_state_registry(self, state_registry: dict):
        """No table (the spec is shown by the model summary)."""
        return None


def registered_specs(adata_manager) -> list[ModalitySpec]:
    """The modality specs registered with ``adata_manager``, in registration order."""
    return [ModalitySpec(**adata_manager.get_state_registry(f.registry_key)[ModalityField.SPEC_KEY])
            for f in adata_manager.fields if isinstance(f, ModalityField)]


def registered_feature_names(adata_manager) -> dict[str, np.ndarray]:
    """``{modality: feature names}`` from ``adata_manager``'s registry."""
    return {
        f.spec.name: np.asarray(adata_manager.get_state_registry(f.registry_key)[ModalityField.COLUMN_NAMES_KEY])
        for f in adata_manager.fields if isinstance(f, ModalityField)
    }


__all__ = ["ModalityField", "feature_names", "registered_feature_names", "registered_specs"]
