"""The training loop and what it runs on: loop (fit, predict, devices), state (a run's TrainState
and its Plan of steps) and distributed (a World of processes and its collectives).

May import: kdtrack's primitives (config, losses, schedules, interrupts, progress, errors), data,
models, metrics. Never tracking: the loop logs through the RunLog it is handed, so it runs bare.
"""
