"""The entry points' work: stages (train_teacher, distill, switch: lineage and reuse), jobs (one
tracked training run, opened or resumed), rebuild (data and models back from a run), replicas
(one job on N ranks).

May import: primitives, data, models, metrics, training, tracking. Never analysis, report,
studies or cli.
"""
