"""Scaling a run out: tiles, executors and the command-line glue.

`tiles` (one image a task, persisted for resume), `executors` (in-process, local or remote
Dask) and `run` (--workers / --scheduler / --resume of analyze and estimate).
"""
