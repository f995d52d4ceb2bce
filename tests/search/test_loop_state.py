"""The loop's state on its own: the stop rule, patience within a stage, the checkpoint round trip."""

from explorer.config import SearchConfig
from explorer.search.cosearch import LoopState
from explorer.space.hardware import HardwareSpace, HWConfig, Knob


def _cfg(**kw) -> SearchConfig:
    c = SearchConfig()
    c.steps, c.threshold, c.patience, c.min_improvement = 100, 0.0, 3, 0.01
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_patience_counts_steps_without_improvement_and_stops():
    st, cfg = LoopState(stage_i=2, step=50), _cfg()
    st.track(1.0, cfg.min_improvement)
    for _ in range(2):
        st.track(1.0, cfg.min_improvement)
    assert st.S_since == 2 and not st.should_stop(cfg, n_stages=2)
    st.track(1.0, cfg.min_improvement)
    assert st.should_stop(cfg, n_stages=2)
    assert st.stop_reason == "patience" and "3 architecture steps" in st.stop_detail


def test_improvement_resets_patience_and_a_new_stage_forgets_the_best():
    st, cfg = LoopState(stage_i=2, step=50), _cfg()
    st.track(1.0, 0.01)
    st.track(1.0, 0.01)
    assert st.S_since == 1
    st.track(0.0, 0.01)  # smoothed: 0.9 * 1.0 -> an improvement of more than 1%
    assert st.S_since == 0 and st.S_best < 1.0
    st.new_stage()
    assert st.S_best is None and st.S_since == 0


def test_no_stop_before_the_last_stage_or_at_the_last_step():
    cfg = _cfg(threshold=0.5)
    st = LoopState(stage_i=1, step=50)
    st.track(0.1, 0.01)
    assert not st.should_stop(cfg, n_stages=2)  # a stage not reached yet
    st.stage_i, st.step = 2, 100
    assert not st.should_stop(cfg, n_stages=2)  # the last step ends the loop as "steps"
    st.step = 60
    assert st.should_stop(cfg, n_stages=2) and st.stop_reason == "threshold"


def test_checkpoint_round_trip_keeps_every_variable():
    hw = HardwareSpace([Knob("batch", (1, 2, 4), 2)])
    st = LoopState(step=7, stage_i=1, warm_done=True, L_ema=0.5, evals_since_best=2, stop_detail="x")
    st.track(0.8, 0.01)
    st.best = ((False, 0.0, 0.5), 6, {"L0": "conv3x3"}, HWConfig.from_dict({"batch": 4}, hw), {"val_accuracy": 0.9})
    back = LoopState.from_dict(st.as_dict(done=False, elapsed_s=12.5), hw)
    assert back == LoopState(step=7, stage_i=1, warm_done=True, done=False, elapsed_s=12.5, L_ema=0.5,
                             S_ema=0.8, S_best=0.8, S_since=0, evals_since_best=2, stop_detail="x", best=st.best)
    assert back.best[3]["batch"] == 4
