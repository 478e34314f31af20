"""Many runs at once: suite (declarative YAML studies; the shipped ones in suites/), ablate
(Optuna studies of batch size, learning rate, training length), launch (both as submitit jobs).

May import: everything below it (pipeline, analysis, tracking, ...). Never report or cli.
"""
