"""Theorem 4.1 checked (paper §4, §B): distillation exaggerates gradient descent's bias toward
the top eigendirections of the data, for linear regression with p > n.

Closed forms (Eqs. 3-6): with the Gram matrix X X^T = sum_k lambda_k u_k u_k^T and v_k = X^T u_k /
sqrt(lambda_k), the teacher's component along v_k after gradient flow to time t is
beta_k(t) = alpha_k(t) c_k, alpha_k(t) = 1 - exp(-lambda_k t), c_k = u_k^T y / sqrt(lambda_k); a
student trained on the teacher's outputs at T_te has beta~_k(t~) = alpha_k(t~) alpha_k(T_te) c_k.
At matched top-direction progress (beta_k1(t) = beta~_k1(t~)) the theorem says
|beta~_k2(t~) / beta_k2(t)| = alpha_k2(t~) alpha_k2(T_te) / alpha_k2(t) < 1 for lambda_k1 > lambda_k2.
Also checked: finite-step gradient descent on the same data, and cross-entropy (softmax
regression, student on the teacher's probabilities). The eigen-pair statistic the analysis of real
runs uses (kdtrack.metrics.eigenspace: delta on the teacher's shared scale) is evaluated here on the
closed-form trajectories (teacher to T_te, student for the same length), where the theorem says
delta < 0 on every pair, and on the cross-entropy trajectories: the statistic and the theorem are
checked against each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from kdtrack.metrics.eigenspace import delta_summary, delta_table, sample_pairs
from kdtrack.say import say


@dataclass(frozen=True)
class Instance:
    x: np.ndarray  # n x p
    y: np.ndarray  # n
    eigenvalues: np.ndarray  # of X X^T, descending
    u: np.ndarray  # n x n, eigenvectors of X X^T as columns
    v: np.ndarray  # p x n, the corresponding unit directions in input space

    @classmethod
    def random(cls, n: int, p: int, seed: int) -> "Instance":
        """Gaussian inputs with a decaying per-feature scale (distinct eigenvalues), random targets."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, p)) * (np.arange(1, p + 1) ** -0.5) * np.sqrt(p / np.log(p + 1)) / np.sqrt(n)
        y = rng.standard_normal(n)
        x /= np.sqrt(np.linalg.eigvalsh(x @ x.T)[-1])  # top eigenvalue 1: times are in its units
        values, u = np.linalg.eigh(x @ x.T)
        values, u = values[::-1], u[:, ::-1]
        return cls(x, y, values, u, x.T @ u / np.sqrt(values))

    @property
    def limits(self) -> np.ndarray:
        """c_k = u_k^T y / sqrt(lambda_k): beta_k(t) = alpha_k(t) c_k under gradient flow from zero."""
        return self.u.T @ self.y / np.sqrt(self.eigenvalues)


def alpha(lam, t):
    return -np.expm1(-np.multiply.outer(t, lam))


def matched_student_time(lam1: float, t: np.ndarray, teacher_time: float) -> np.ndarray:
    """t~ with alpha_1(t~) alpha_1(T_te) = alpha_1(t), for t < T_te. Solved in exponentials so
    that it stays exact where alpha_1 rounds to 1:
    t~ = t - log1p(-exp(-lam1 (T_te - t))) / lam1 + log1p(-exp(-lam1 T_te)) / lam1."""
    return (t - np.log1p(-np.exp(-lam1 * (teacher_time - t))) / lam1
            + np.log1p(-np.exp(-lam1 * teacher_time)) / lam1)


def closed_form_ratios(eigenvalues: np.ndarray, teacher_time: float, points: int = 50) -> np.ndarray:
    """|beta~_k2(t~) / beta_k2(t)| for every pair k1 < k2 with distinct eigenvalues, at `points`
    teacher times in (0, T_te): an array (pairs x points); the theorem says every entry is < 1.

    Computed as 1 - m / alpha_k2(t) with the margin m = alpha_k2(t) - alpha_k2(t~) alpha_k2(T_te)
    = b~ + B - b~ B - b (b = exp(-lambda_k2 t), likewise b~, B), which keeps its sign where the
    alphas themselves round to 1. Pairs whose eigenvalues differ by less than a millionth are left
    out; so should be times far beyond 1 / lambda (the ratio is then 1 - O(exp(-lambda t)))."""
    times = np.linspace(0, teacher_time, points + 2)[1:-1]
    out = []
    for k1 in range(len(eigenvalues)):
        t_student = matched_student_time(eigenvalues[k1], times, teacher_time)
        for k2 in range(k1 + 1, len(eigenvalues)):
            lam2 = eigenvalues[k2]
            if eigenvalues[k1] <= lam2 * (1 + 1e-6):  # ties: a ratio of 1 - O(gap), below float resolution
                continue
            b, b_student, b_end = np.exp(-lam2 * times), np.exp(-lam2 * t_student), np.exp(-lam2 * teacher_time)
            margin = (b_student - b) + b_end * (1 - b_student)
            out.append(1 - margin / -np.expm1(-lam2 * times))
    return np.array(out)


def gradient_descent(x: np.ndarray, target: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """Weights after each of `steps` full-batch steps on (1/2)||X b - target||^2 from b = 0."""
    beta, path = np.zeros(x.shape[1]), []
    for _ in range(steps):
        beta = beta - lr * x.T @ (x @ beta - target)
        path.append(beta)
    return np.array(path)


def gd_holds(instance: Instance, lr: float, steps: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Finite-step GD: for each pair and each teacher step, does |beta~_k2| < |beta_k2| hold where
    the student's |beta~_k1| first reaches the teacher's? (Interpolated between student steps.)"""
    teacher = gradient_descent(instance.x, instance.y, lr, steps) @ instance.v
    student = gradient_descent(instance.x, instance.x @ (teacher[-1] @ instance.v.T), lr, steps * 4) @ instance.v
    checks = []
    for k1, k2 in pairs:
        top_s, bottom_s = np.abs(student[:, k1 - 1]), np.abs(student[:, k2 - 1])
        for s in range(steps - 1):
            target = abs(teacher[s, k1 - 1])
            if target >= top_s[-1] or target <= top_s[0]:
                continue
            bottom = np.interp(target, top_s, bottom_s)  # |beta~_k1| grows monotonically here
            checks.append(bottom < abs(teacher[s, k2 - 1]))
    return np.array(checks, dtype=bool)


def softmax_regression(x: np.ndarray, targets: np.ndarray, lr: float, steps: int) -> np.ndarray:
    """First-layer weights W (p x C) after each step of GD on cross-entropy to soft `targets`."""
    w, path = np.zeros((x.shape[1], targets.shape[1])), []
    for _ in range(steps):
        logits = x @ w
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        w = w - lr * x.T @ (probs - targets) / len(x)
        path.append(w)
    return np.array(path)


def trajectory_table(path: np.ndarray, v: np.ndarray) -> pl.DataFrame:
    """||W^T v_k|| per step, in the layout of eigen/trajectory.parquet (step 0 = the zero init)."""
    norms = np.linalg.norm(np.einsum("spc,pk->skc", path, v), axis=2)
    norms = np.vstack([np.zeros(v.shape[1]), norms])
    return pl.DataFrame({"step": np.arange(len(norms)), **{f"v{k + 1}": norms[:, k] for k in range(v.shape[1])}})


def closed_form_tables(instance: Instance, teacher_time: float,
                       points: int = 1001) -> tuple[pl.DataFrame, pl.DataFrame]:
    """|beta_k| over time in the layout of eigen/displacement.parquet (beta(0) = 0, so the norm is the
    displacement): the teacher alpha_k(t) c_k to T_te, the student alpha_k(t) alpha_k(T_te) c_k for the
    same length (Eqs. 3-6), at `points` evenly spaced times."""
    c = instance.limits
    times = np.linspace(0, teacher_time, points)
    teacher = np.abs(alpha(instance.eigenvalues, times) * c)
    student = np.abs(alpha(instance.eigenvalues, times) * alpha(instance.eigenvalues, teacher_time) * c)
    return tuple(pl.DataFrame({"step": np.arange(points), **{f"v{k + 1}": path[:, k] for k in range(len(c))}})
                 for path in (teacher, student))


def cross_entropy_check(instance: Instance, classes: int, lr: float, steps: int, pairs, seed: int):
    """Teacher on one-hot labels, student on the teacher's final probabilities, both by GD from
    zero for the same number of steps; the eigen-pair statistic (delta) on their ||W^T v_k||
    trajectories, which from a zero start are their displacements."""
    rng = np.random.default_rng(seed)
    labels = np.eye(classes)[rng.integers(0, classes, len(instance.y))]
    teacher = softmax_regression(instance.x, labels, lr, steps)
    logits = instance.x @ teacher[-1]
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    student = softmax_regression(instance.x, soft, lr, steps)
    return delta_table(trajectory_table(teacher, instance.v), trajectory_table(student, instance.v), pairs,
                       instance.eigenvalues)


def statistic_metrics(prefix: str, deltas: pl.DataFrame) -> dict[str, float]:
    """The pair statistic's headline numbers as theory/<prefix>... metrics."""
    summary = delta_summary(deltas)
    return {f"theory/{prefix}exaggerated_pair_frac": summary["exaggerated_pair_frac"],
            f"theory/{prefix}median_delta": summary["median_delta"],
            f"theory/{prefix}pairs": summary["pairs"], f"theory/{prefix}pairs_left_out": summary["pairs_left_out"]}


def check(n: int = 32, p: int = 256, seed: int = 0, teacher_time: float = 5.0, steps: int = 200,
          pairs: int = 32, classes: int = 4) -> tuple[dict[str, float], dict]:
    """Every check on one random instance: metrics, and the curves for the figure."""
    instance = Instance.random(n, p, seed)
    ratios = closed_form_ratios(instance.eigenvalues, teacher_time)
    lr = teacher_time / steps  # GD with this step to `steps` approximates the flow to T_te
    chosen = sample_pairs(n, pairs, seed)
    gd = gd_holds(instance, lr, steps, chosen)
    closed = delta_table(*closed_form_tables(instance, teacher_time), chosen, instance.eigenvalues)
    ce = cross_entropy_check(instance, classes, 1.0 / instance.eigenvalues[0], steps * 5, chosen, seed)
    metrics = {"theory/closed_form_holds_frac": float((ratios < 1).mean()),
               "theory/closed_form_max_ratio": float(ratios.max()),
               "theory/closed_form_checks": float(ratios.size),
               "theory/gd_holds_frac": float(gd.mean()) if gd.size else float("nan"),
               "theory/gd_checks": float(gd.size),
               **statistic_metrics("closed_form_", closed), **statistic_metrics("ce_", ce)}
    return metrics, {"instance": instance, "teacher_time": teacher_time, "pairs": chosen[:4]}


def trajectories_figure(instance: Instance, teacher_time: float, pairs: list[tuple[int, int]]):
    """(beta_k1, beta_k2) over time for teacher (to T_te) and student (to 3 T_te), closed form."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = instance.limits
    times = np.linspace(0, teacher_time, 200)
    teacher = alpha(instance.eigenvalues, times) * c
    student = alpha(instance.eigenvalues, times * 3) * alpha(instance.eigenvalues, teacher_time) * c
    figure, axes = plt.subplots(1, len(pairs), figsize=(3.6 * len(pairs), 3.4), squeeze=False)
    for ax, (k1, k2) in zip(axes[0], pairs):
        for path, colour, label in ((teacher, "tab:blue", "teacher"), (student, "tab:orange", "student")):
            ax.plot(path[:, k1 - 1], path[:, k2 - 1], color=colour, label=label)
            ax.plot(path[-1, k1 - 1], path[-1, k2 - 1], "*", ms=12, color=colour)
        ax.set(xlabel=f"beta_{k1} (top)", ylabel=f"beta_{k2} (bottom)")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle("Theorem 4.1: closed-form trajectories (Eqs. 3-6)")
    figure.tight_layout()
    return figure


def theory(config, context=None) -> str:
    """Run every check and log a `theory` run: the metrics and the figure."""
    from kdtrack import tracking
    from kdtrack.config import to_params

    context = context or tracking.RunContext()
    tracking.check_store()
    metrics, detail = check(config.n, config.p, config.seed, config.teacher_time, config.steps,
                            config.pairs, config.classes)
    figure = trajectories_figure(detail["instance"], config.teacher_time, detail["pairs"])
    with tracking.run(tracking.resolve_experiment(config.experiment, context), f"theory-n{config.n}-p{config.p}-"
                      f"seed{config.seed}", "theory", to_params(config), context) as run:
        run.metrics(metrics, 0)
        run.log_figure(figure, "figures/theorem41.png")
    say(", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return run.run_id
