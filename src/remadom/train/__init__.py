from ._plan import RemadomTrainingPlan
from ._precision import default_precision
from ._splitter import SparseBatchDataSplitter

__all__ = ["RemadomTrainingPlan", "SparseBatchDataSplitter", "default_precision"]
