"""The trainer: parameter groups, schedule, loop, checkpoints and resume."""
