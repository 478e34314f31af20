"""The schedules as functions of the step give exactly the floats the per-step lists they replaced
gave (so today's runs, and their reuse keys' results, are unchanged), in memory that does not grow
with the training length."""
from hypothesis import given, settings
from hypothesis import strategies as st

from kdtrack.config import TrainConfig
from kdtrack.schedules import constant_weights, learning_rate, switch_weights
from kdtrack.training.state import Plan


def listed_switch_weights(total_steps, start, end, switch_step, window):
    """The list implementation this replaced, verbatim."""
    def weight(t):
        if t <= switch_step:
            return start
        if t > switch_step + window:
            return end
        return start + (end - start) * (t - switch_step) / window
    return [weight(t) for t in range(1, total_steps + 1)]


def listed_rates(total_steps, final_step, peak, warmup_steps, schedule, decay_factor, milestones):
    rates = [learning_rate(s, total_steps, peak, warmup_steps, schedule, decay_factor, milestones)
             for s in range(total_steps)]
    return rates + rates[-1:] * (final_step - total_steps)


WEIGHT = st.floats(0, 1)


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 300), start=WEIGHT, end=WEIGHT, at=st.integers(0, 300), window=st.integers(0, 50))
def test_switch_weights_are_the_old_lists_bit_for_bit(total, start, end, at, window):
    weights = switch_weights(total, start, end, at, window)
    assert weights.total_steps == total
    assert [weights(s) for s in range(total)] == listed_switch_weights(total, start, end, at, window)


@given(total=st.integers(1, 300), weight=WEIGHT)
def test_constant_weights_are_the_old_lists(total, weight):
    weights = constant_weights(total, weight)
    assert weights.total_steps == total and {weights(s) for s in range(total)} == {weight}


@settings(max_examples=100, deadline=None)
@given(schedule=st.sampled_from(["constant", "step", "cosine", "linear"]), epochs=st.integers(1, 20),
       extra=st.integers(0, 30), warmup=st.floats(0, 3), lr=st.floats(1e-6, 1.0))
def test_learning_rates_are_the_old_lists_bit_for_bit(schedule, epochs, extra, warmup, lr):
    config = TrainConfig(train_size=100, batch_size=10, epochs=epochs, warmup=warmup, lr=lr, schedule=schedule)
    plan = Plan.of(config, 100, final_step=10 * epochs + extra)
    rates = plan.rates(config)
    expected = listed_rates(plan.total_steps, plan.final_step, lr, plan.warmup_steps, schedule, 0.1, (0.5, 0.75))
    assert [rates(s) for s in range(plan.final_step)] == expected


def test_a_billion_steps_need_no_memory():
    weights = switch_weights(10**9, 1.0, 0.0, 5 * 10**8, 10)
    assert (weights(0), weights(5 * 10**8 + 4), weights(10**9 - 1)) == (1.0, 0.5, 0.0)
