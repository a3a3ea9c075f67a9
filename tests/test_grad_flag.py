"""``--grad custom|autodiff`` of ``cnnlab train facedet`` and ``cnnlab train caption`` reaches the task's config
(saved in the run's config.json and results.json by the training functions), default ``custom``. The training
functions are replaced by stubs that record the config they were given: this checks the CLI's plumbing only."""

import pytest

from cnnlab import cli


@pytest.fixture
def captured(monkeypatch):
    import cnnlab.caption.train as caption_train
    import cnnlab.facedet.train as facedet_train

    seen = {}
    monkeypatch.setattr(facedet_train, "train_facedet", lambda cfg, out, **kw: seen.setdefault("cfg", cfg) and {})
    monkeypatch.setattr(caption_train, "train_and_evaluate",
                        lambda config, train_config, out, root, **kw: seen.setdefault("cfg", config) and {})
    return seen


@pytest.mark.parametrize("flag,expected", [([], "custom"), (["--grad", "autodiff"], "autodiff")])
@pytest.mark.parametrize("task", ["facedet", "caption"])
def test_train_grad_flag_sets_the_task_config(task, flag, expected, captured, tmp_path):
    args = (["train", "facedet", "--config", "v2_4"] if task == "facedet" else
            ["train", "caption", "--data-dir", str(tmp_path)])
    cli.main(args + ["--out", str(tmp_path / "run"), "--from-scratch", *flag])
    assert captured["cfg"].grad == expected


def test_train_grad_flag_rejects_unknown_mode():
    with pytest.raises(SystemExit):
        cli.main(["train", "facedet", "--config", "v2_4", "--out", "x", "--grad", "manual"])
