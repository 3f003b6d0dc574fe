"""The Python functions the task YAMLs here name (written by `python -m helpers.lmeval write`)."""
from helpers.lmeval import lenient, with_choices  # noqa: F401
