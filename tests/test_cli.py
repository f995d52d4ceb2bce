"""The CLI as a user meets it: a fresh process, exit codes and the one-line messages."""


import pytest

from tests.conftest import run_cli as run


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--space", "resnet"], "unknown search space 'resnet'; valid: chain, nb201"),
        (["search", "--target", "tpu"], "unknown target 'tpu'; valid: cpu, cuda, vta"),
        (["search", "--dataset", "cifar-11"], "unknown dataset 'cifar-11'"),
        (["search", "--dataset", "digits", "--latency-ms", "0.000001"], "impossible limits: latency_ms"),
        (["search", "--dataset", "digits", "--area-mm2", "0.01"], "impossible limits: area_mm2"),
    ],
)
def test_bad_input_one_message_exit_2(tmp_path, args, message):
    r = run(*args, "--out", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("[search\nsteps = 3", "malformed TOML"),
        ("bogus = 1", "unknown key(s) ['bogus']"),
        ("[search]\nsteps = 'many'", "steps: expected int"),
        ("[search]\nrelax = 'hard'", "relax must be"),
        ("[limits]\nlatency_ms = -1", "latency_ms must be a positive number"),
        ("[limits]\nwatts = 1", "unknown limit 'watts'"),
        ("[space_options]\nstages = [[8, 0, 1]]", "space.chain.stages"),
        ("[search]\nstages = [['a', 2]]", "search.stages must be"),
        ("[search]\nselect_proxy_seeds = 0", "select_proxy_seeds must be"),
        ("[search]\nselect_loss_tie = -1", "select_loss_tie must be"),
        ("[retrain]\nseeds = 0", "retrain.seeds must be"),
    ],
)
def test_malformed_config_exit_2(tmp_path, capsys, text, message):
    from explorer.cli import main  # in-process: the same path as a fresh process (checked above), faster

    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert main(["search", "--config", str(cfg), "--dataset", "digits", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explorer: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_missing_config_file(tmp_path, capsys):
    from explorer.cli import main

    assert main(["search", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_list():
    r = run("list")
    assert r.returncode == 0 and "mnist5k" in r.stdout and "nb201" in r.stdout and "vta" in r.stdout


@pytest.mark.slow  # 16 s: the CLI's search is also run by the bad-input tests of the fast tier
def test_search_end_to_end_on_digits(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[space_options]\nstem_channels = 8\nstages = [[8, 1, 2], [16, 1, 1]]\n"
                   "[search]\nwarmup_steps = 4\neval_every = 5\n")
    r = run("search", "--config", str(cfg), "--dataset", "digits", "--steps", "15", "--epochs", "1",
            "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "results in" in r.stdout and (tmp_path / "run" / "summary.json").is_file()
    # a second run to the same folder is refused and leaves the first intact
    before = (tmp_path / "run" / "summary.json").read_text()
    r2 = run("search", "--config", str(cfg), "--dataset", "digits", "--steps", "3", "--out", str(tmp_path / "run"))
    assert r2.returncode == 2 and "already holds a run" in r2.stderr
    assert (tmp_path / "run" / "summary.json").read_text() == before


def test_limit_the_target_does_not_price(tmp_path):
    r = run("search", "--target", "cpu", "--dataset", "digits", "--area-mm2", "1", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "has no area_mm2 limit" in r.stderr, r.stderr


def test_out_that_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("keep me")
    r = run("search", "--dataset", "digits", "--out", str(f))
    assert r.returncode == 2 and "is a file" in r.stderr and f.read_text() == "keep me"


@pytest.mark.slow  # a random search to the end (~9 s): the slow tier
def test_random_baseline_run_folder(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[space_options]\nstem_channels = 8\nstages = [[8, 1, 2], [16, 1, 1]]\n")
    r = run("search", "--config", str(cfg), "--dataset", "digits", "--method", "random", "--steps", "2",
            "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    import json

    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    # its samples, not steps: no search.png and no plot error (explorer report draws the samples)
    assert s["method"] == "random" and "plot_error" not in s and not (tmp_path / "run" / "search.png").exists()
