"""The front-ends: main (the `kdtrack` click commands), entry (MLflow project scripts),
paramdoc and mlproject (parameter docs and the MLproject file from the configs), demo.

The top floor: may import anything in kdtrack; nothing in kdtrack imports it.
"""
