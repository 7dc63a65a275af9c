"""Stages: one entry per pipeline stage, what the Prefect flows and the CLI both call.

Each stage reads its inputs through the store and the readers, calls the pure science, and
returns values; tracking logs them.

- :mod:`xrdpipe.stages.train`: the train stage (task dispatch, tracked training).
- :mod:`xrdpipe.stages.refresh`: the pipeline's refresh rules (stale store, training identity).
"""
