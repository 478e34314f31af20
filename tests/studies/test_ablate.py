"""The Optuna ablation layer on the embedded data: a grid study end to end, resumable."""
import optuna
import pytest
from conftest import TINY

from kdtrack import tracking
from kdtrack.config import AblateConfig, from_params
from kdtrack.errors import UserError
from kdtrack.studies.ablate import ablate, default_storage


def test_a_grid_study_links_trials_and_runs_both_ways(store):
    """A length grid: the knob that scales the teacher's length too, so one study shows both the links
    between trials and runs and one teacher per setting."""
    config = from_params(AblateConfig, {**TINY, "knob": "length", "values": "1,2", "study": "grid", "figures": "false"})
    parent_id = ablate(config, "ablate")
    study = optuna.load_study(study_name="grid", storage=default_storage())
    trials = study.get_trials()
    assert sorted(t.params["value"] for t in trials) == [1.0, 2.0]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)

    parent = tracking.get_run(parent_id)
    assert parent.data.tags["kdtrack.role"] == "study" and parent.info.status == "FINISHED"
    best = study.best_trial
    assert parent.data.tags["kdtrack.best_trials"] == str(best.number)
    assert parent.data.metrics["best/test/slope_bottom25"] == pytest.approx(best.value)
    assert parent.data.metrics["trials/complete"] == 2

    for trial in trials:
        run = tracking.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.data.tags["kdtrack.trial"] == str(trial.number) and run.data.tags["kdtrack.study"] == "grid"
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        student = tracking.get_run(run.data.tags["kdtrack.student_run_id"])
        assert student.data.tags["mlflow.parentRunId"] == run.info.run_id
        assert float(student.data.params["epochs"]) == float(TINY["epochs"]) * trial.params["value"]  # scaled
        assert run.data.metrics["objective/test/slope_bottom25"] == pytest.approx(trial.value)
    experiment = tracking.client().get_experiment_by_name("ablate").experiment_id
    teachers = tracking.search_all([experiment], "tags.`kdtrack.role` = 'teacher'")
    assert sorted(t.data.params["epochs"] for t in teachers) == ["2.0", "4.0"]  # the teacher's length follows too

    # The same command again: the study is complete, nothing trains, the same study run answers.
    assert ablate(config, "ablate") == parent_id
    assert len(optuna.load_study(study_name="grid", storage=default_storage()).get_trials()) == 2


def test_bad_ablation_input_is_one_clear_error(store):
    with pytest.raises(UserError, match="knob='momentum2' is not allowed"):
        from_params(AblateConfig, {"knob": "momentum2"})
    with pytest.raises(UserError, match="batch_size='x' is not an integer"):
        from_params(AblateConfig, {"knob": "batch_size", "values": "16,x"}).knob_values()
    with pytest.raises(UserError, match="has no default values"):
        from_params(AblateConfig, {"knob": "momentum"})
    config = from_params(AblateConfig, {**TINY, "knob": "lr", "values": "0.001", "objective": "nope/x", "study": "bad",
                                        "figures": "false"})
    ablate(config, "ablate-bad")  # the trial fails with its reason; the study itself goes on
    [trial] = optuna.load_study(study_name="bad", storage=default_storage()).get_trials()
    assert trial.state == optuna.trial.TrialState.FAIL and "nope/x" in trial.user_attrs["failure"]
    assert tracking.get_run(trial.user_attrs["mlflow_run_id"]).info.status == "FAILED"


def test_a_pruned_trial_stops_its_student_and_is_recorded_as_pruned(store, monkeypatch):
    import kdtrack.studies.ablate

    # A pruner that prunes everything it sees: test/acc is always above -1.
    prune_all = lambda config: optuna.pruners.ThresholdPruner(upper=-1.0)  # noqa: E731
    monkeypatch.setattr(kdtrack.studies.ablate, "make_pruner", prune_all)
    config = from_params(AblateConfig, {**TINY, "epochs": "4", "eval_every": "2", "knob": "lr", "values": "0.001",
                                        "objective": "test/acc", "study": "pruned", "figures": "false"})
    parent = ablate(config, "ablate-pruned")
    [trial] = optuna.load_study(study_name="pruned", storage=default_storage()).get_trials()
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [2]
    run = tracking.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and "pruned at step 2" in run.data.tags["kdtrack.pruned"]
    assert tracking.get_run(parent).data.metrics["trials/pruned"] == 1
    experiment = tracking.client().get_experiment_by_name("ablate-pruned").experiment_id
    [student] = tracking.search_all([experiment], "tags.`kdtrack.role` = 'student'")
    assert student.info.status == "KILLED"


def test_workers_that_start_together_share_the_experiment_and_the_study_run(store, monkeypatch):
    """Two workers can both find no experiment (or no study run) and both create one: the loser
    of the experiment race takes the winner's, and a second study run gives way to the first."""
    from mlflow.tracking import MlflowClient

    from kdtrack.tracking import runs

    winner = tracking.client().create_experiment("raced")
    with tracking.study_run(winner, "s", {}, tracking.RunContext()) as study:
        first = study.run_id
    calls = []

    def not_yet_the_first_time(real):
        def lookup(*args, **kwargs):
            calls.append(1)
            return [] if len(calls) == 1 else real(*args, **kwargs)
        return lookup

    monkeypatch.setattr(MlflowClient, "get_experiment_by_name",
                        not_yet_the_first_time(MlflowClient.get_experiment_by_name))
    assert tracking.resolve_experiment("raced") == winner
    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(runs, "search_all", not_yet_the_first_time(runs.search_all))
    with tracking.study_run(winner, "s", {}, tracking.RunContext()) as study:
        assert study.run_id == first
    monkeypatch.undo()
    assert [r.info.run_id for r in tracking.search_all([winner], "tags.`kdtrack.study` = 's'")] == [first]


def test_a_worker_killed_before_its_first_heartbeat_does_not_stall_the_grid(tmp_path, monkeypatch):
    """`study.ask()` makes a trial RUNNING before Optuna's heartbeat thread starts: a worker killed in between
    leaves a trial with no heartbeat, which Optuna never marks stale. The other workers used to wait for it forever.
    Its retry then takes a point the grid ran meanwhile, and must not run it twice."""
    import threading

    import kdtrack.studies.ablate
    from kdtrack.studies.ablate import storage, work_loop

    monkeypatch.setattr(kdtrack.studies.ablate, "STALE_FLOOR", 1)  # stale after 4 heartbeats of 1 s, not a minute
    study = optuna.create_study(study_name="ghost", storage=storage(f"sqlite:///{tmp_path}/optuna.db", 1),
                                sampler=optuna.samplers.GridSampler({"value": [16, 32], "seed": [0]}, seed=0))
    study.ask()  # the killed worker's trial: RUNNING, no point chosen yet, no heartbeat
    ran = []

    def objective(trial):
        trial.suggest_categorical("value", [16, 32]), trial.suggest_categorical("seed", [0])
        kdtrack.studies.ablate.skip_done_point(trial)
        ran.append((trial.params["value"], trial.params["seed"]))
        return 1.0

    worker = threading.Thread(target=work_loop, args=(study, objective, [(16, 0), (32, 0)], 0, 1), daemon=True)
    worker.start()
    worker.join(timeout=300)  # on the old code it never returns
    assert not worker.is_alive(), "the work loop still waits for the killed worker's trial"
    assert sorted(ran) == [(16, 0), (32, 0)]  # each point trained exactly once
    states = sorted(t.state.name for t in study.get_trials())
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"]  # the dead trial, and its retry found done
