"""The paper's measurements as pure functions: tensors or polars frames in, numbers or frames out.

confidence (phi from logits, per-sample tables), deviations (slopes, gaps, groups of Fig. 5),
eigen (first-layer data eigendirections, §4.1), eigenspace (the eigen-pair statistic of §D).
May import: kdtrack's primitives, data and models. Never tracking, training or anything above.
"""
