from ._plan import RemadomTrainingPlan
from ._splitter import SparseBatchDataSplitter

__all__ = ["RemadomTrainingPlan", "SparseBatchDataSplitter"]
