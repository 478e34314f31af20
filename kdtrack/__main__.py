"""`python -m kdtrack`: the `kdtrack` command, as torchrun starts it:

    torchrun --nproc-per-node 2 -m kdtrack distill -P preset=mnist_mlp
"""
from kdtrack.cli.main import main

main(prog_name="kdtrack")
