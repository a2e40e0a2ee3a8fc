"""Training: losses, trainer, checkpoints, run logs."""
