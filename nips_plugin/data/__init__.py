"""Data: verified PDE solvers, generated task families, the task file format and the loaders.

The flow is solvers -> families (systems x input/response pairs) -> task files
(:func:`save_tasks` or :class:`TaskWriter` / :func:`load_tasks`, lazy when large)
-> in-context loaders.
"""
from .families import make_darcy_tasks, make_elasticity_tasks
from .loaders import InContextDataProcessor, QueryRelL2Loss, load_incontext
from .solvers import darcy_operator, elasticity_operator, solve_darcy, solve_elasticity
from .tasks import TaskSet, TaskWriter, load_tasks, save_tasks

__all__ = [
    "solve_darcy", "solve_elasticity", "darcy_operator", "elasticity_operator",
    "make_darcy_tasks", "make_elasticity_tasks",
    "TaskSet", "TaskWriter", "save_tasks", "load_tasks",
    "load_incontext", "InContextDataProcessor", "QueryRelL2Loss",
]
