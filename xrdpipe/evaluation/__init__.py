"""Evaluation of trained models: metrics, baselines, cross-validation, CAMs, tables and plots."""
