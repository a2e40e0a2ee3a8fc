"""Experiments as users run them: hyper-parameter search (`study`, on Optuna), search spaces (`space`) and
side-by-side comparison of run directories (`compare`). Optuna is imported only when a study runs."""
