"""The pipeline's stages: plain functions that the Prefect flows and the CLI both call.

Each stage reads its inputs through the store and the readers, calls the pure science and
returns values; tracking logs them.

- :mod:`xrdpipe.stages.fetch`: a COD subset to its validated structure manifest.
- :mod:`xrdpipe.stages.simulate`: a subset's strained peak lists into its Zarr store (Dask).
- :mod:`xrdpipe.stages.train`: one training task, tracked and registered in MLflow.
- :mod:`xrdpipe.stages.refresh`: when a store or a trained model is stale.
- :mod:`xrdpipe.stages.evaluate`: paper 002's N/K grid with baselines, and its report.
- :mod:`xrdpipe.stages.classifiers`: paper 000's cross-validated classifier tables.
- :mod:`xrdpipe.stages.predict`: registered models' predictions for measured patterns.
"""
