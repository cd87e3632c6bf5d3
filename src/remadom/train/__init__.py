from ._plan import RemadomTrainingPlan

__all__ = ["RemadomTrainingPlan"]
