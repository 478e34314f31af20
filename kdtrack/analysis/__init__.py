"""The analysis of a finished student: analyze (the `analyze` entry point), evidence and
eigen_evidence (gather a run's numbers, tables and figures into one value), theory (Theorem 4.1's
closed form against gradient descent), figures and style (matplotlib, frames in, Figures out).

May import: primitives, data, models, metrics, training, tracking, pipeline. Never report,
studies or cli.
"""
