"""The `cnnlab` command as a user meets it: named configs resolved from the installed package, `--set`
overrides, `cnnlab configs`, one-line errors (status 2, no traceback) and `cnnlab eval facedet`."""

import dataclasses
import importlib
import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import cli, configs
from cnnlab.errors import CnnlabError
from cnnlab.tcn.config import SeqMnistConfig
from cnnlab.train import TrainConfig

PACKAGE = Path(cli.__file__).parent

# Every experiment row of the paper (Tables 3-7, §4.3's CPU runs, the original TCN), by task.
PAPER_ROWS = {
    "mnist": ["table3_cnn", "table3_mlp", "paper_cpu_cnn", "paper_cpu_mlp"],
    "seqmnist": ["single_seqmnist", "double_seqmnist", "radical_seqmnist", "single_pmnist", "double_pmnist",
                 "radical_pmnist", "original_tcn_seqmnist"],
    "facedet": [f"v{major}_{minor}" for major, minor in [(1, i) for i in range(10)] + [(2, i) for i in range(6)]],
    "caption": ["table7_tcn", "table7_gru", "table7_tcn_concat"],
}


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnlab: error: ") and "Traceback" not in err, err
    return lines[0]


def test_configs_lists_every_paper_row_with_its_table(capsys):
    assert cli.main(["configs"]) == 0
    rows = {tuple(line.split()[:2]): line for line in capsys.readouterr().out.splitlines()}
    for task, names in PAPER_ROWS.items():
        for name in names:
            assert (task, name) in rows, (task, name)
    for task, table in (("mnist", "Table 3"), ("seqmnist", "Table 5"), ("facedet", "Table 4"),
                        ("caption", "Table 7")):
        assert table in rows[(task, PAPER_ROWS[task][0])]
    assert "Table 6" in rows[("seqmnist", "single_pmnist")] and "v2.4" in rows[("facedet", "v2_4")]
    assert cli.main(["configs", "facedet"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 16
    assert cli.main(["configs", "sequence"]) == 0  # not a paper task, but loaded the same way
    assert capsys.readouterr().out.split()[:2] == ["sequence", "default"]


def test_set_types_values_from_the_dataclass_fields():
    base = configs.load("facedet", "v2.4")  # "v2.4" names v2_4
    assert base == configs.load("facedet", "v2_4") and base.name == "v2.4"
    cfg = configs.override(base, ["steps=3", "learning_rate=1e-3", "fpn=false", "ohem=batch", "levels=conv4,conv5",
                                  "aspect_ratios=(1, 0.5)", "lr_boundaries=", "lr_scales=()", "grad_clip_norm=none"])
    assert (cfg.steps, cfg.learning_rate, cfg.fpn, cfg.ohem) == (3, 1e-3, False, "batch")
    assert cfg.levels == ("conv4", "conv5") and cfg.aspect_ratios == (1.0, 0.5) and cfg.lr_boundaries == ()
    assert cfg.grad_clip_norm is None and type(cfg.aspect_ratios[0]) is float
    tcn = configs.override(SeqMnistConfig(), ["dilation=1,4,16", "num_blocks=3", "train_examples=None"])
    assert tcn.dilation == (1, 4, 16) and tcn.num_blocks == 3 and tcn.train_examples is None
    assert configs.override(tcn, ["dilation=exponential"]).dilation == "exponential"


@pytest.mark.parametrize("assignment,message", [
    ("stpes=3", r"FaceNetConfig has no field 'stpes'; known: steps, batch_size, .*, name, depth, levels"),
    ("steps=3.5", r"--set steps=3.5: steps is int, cannot read '3.5'"),
    ("fpn=maybe", r"--set fpn=maybe: fpn is bool"),
    ("ohem=sometimes", r"ohem must be one of \(None, 'image', 'batch'\), got 'sometimes'"),
    ("lr_scales=0.1", r"lr_boundaries \(50000, 60000\) and lr_scales \(0.1,\) must have the same length"),
    ("steps", r"--set 'steps': expected key=value"),
])
def test_set_rejects_unknown_keys_and_bad_values(assignment, message):
    with pytest.raises(CnnlabError, match=message):
        configs.override(configs.load("facedet", "v1_0"), [assignment])


def test_config_file_returns_the_task_dataclass(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("import dataclasses\nfrom cnnlab.facedet.config import v2_4\n\n"
                    "def get_config():\n    return dataclasses.replace(v2_4(), image_size=256)\n")
    assert configs.load("facedet", str(path)) == dataclasses.replace(configs.load("facedet", "v2_4"), image_size=256)
    (tmp_path / "other.py").write_text("from cnnlab.tcn.config import SeqMnistConfig\n"
                                       "def get_config():\n    return SeqMnistConfig()\n")
    with pytest.raises(CnnlabError, match="returned SeqMnistConfig, not FaceNetConfig"):
        configs.load("facedet", str(tmp_path / "other.py"))


def _truncated_mnist(tmp_path):
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(PACKAGE / "mnist" / "data" / name, tmp_path / name)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    return ["train", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]


def _malformed_wider_prediction(tmp_path):
    from test_facedet_evaluation import HAND_GT, _write_ground_truth
    (tmp_path / "gt").mkdir()
    _write_ground_truth(tmp_path / "gt", HAND_GT)
    (tmp_path / "pred" / "0--Test").mkdir(parents=True)
    (tmp_path / "pred" / "0--Test" / "img_a.txt").write_text("img_a.jpg\ntwo\n")
    return ["eval", "widerface", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(tmp_path / "gt")]


def _run_of_another_configuration(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"train": {"steps": 2}, "task": {"task": "mnist"}}))
    return ["train", "mnist", "--model", "mlp", "--steps", "2", "--out", str(tmp_path / "run")]


@pytest.mark.parametrize("make_argv,message", [
    (lambda p: ["train", "facedet", "--config", "v9_9", "--out", str(p)], r"no facedet config 'v9_9'; known: v1_0"),
    (lambda p: ["train", "seqmnist", "--set", "blocks=3", "--out", str(p)], r"has no field 'blocks'; known: steps"),
    (lambda p: ["train", "sequence", "--data", str(p / "x.npz"), "--out", str(p), "--set", "channels=3.5"],
     r"--set channels=3.5: channels is int, cannot read '3.5'"),
    (_truncated_mnist, r"read_idx: .*t10k-labels-idx1-ubyte\.gz"),
    (lambda p: ["eval", "mnist", "--checkpoint", str(p / "none")], r"none is not a training run folder"),
    (lambda p: ["eval", "seqmnist", "--checkpoint", str(p)], r"is not a training run folder"),
    (lambda p: ["eval", "facedet", "--checkpoint", str(p)], r"is not a training run folder"),
    (lambda p: ["eval", "caption", "--checkpoint", str(p)], r"is not a training run folder"),
    (_malformed_wider_prediction, r"img_a\.txt:2: box count must be an integer, got 'two'"),
    (_run_of_another_configuration, r"holds a run with another configuration"),
    (lambda p: ["train", "seqmnist", "--time-budget", "30", "--out", str(p)], r"time_budget needs schedule='cosine'"),
    (lambda p: ["train", "mnist", "--set", "schedule=cosine", "--set", "warmup_steps=10", "--time-budget", "-1",
                "--out", str(p)], r"time_budget must be a positive number of minutes"),
], ids=["unknown-config", "unknown-key", "sequence-bad-value", "truncated-idx", "missing-checkpoint",
        "seqmnist-checkpoint", "facedet-checkpoint", "caption-checkpoint", "malformed-wider-line",
        "other-configuration", "budget-without-cosine", "negative-budget"])
def test_expected_failures_print_one_error_line_and_exit_2(make_argv, message, tmp_path, capsys):
    argv = make_argv(tmp_path)
    assert cli.main(argv) == 2
    assert re.search(message, _one_error_line(capsys.readouterr().err))
    with pytest.raises(CnnlabError, match=message):  # --debug: the traceback instead
        cli.main(["--debug", *argv])


def test_debug_env_and_unexpected_errors_keep_their_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DEBUG", "1")
    with pytest.raises(CnnlabError, match="is not a training run folder"):
        cli.main(["eval", "mnist", "--checkpoint", str(tmp_path)])
    monkeypatch.delenv("CNNLAB_DEBUG")

    def bug(*args, **kwargs):
        raise KeyError("a bug")
    monkeypatch.setattr("cnnlab.mnist.train.evaluate", bug)
    with pytest.raises(KeyError, match="a bug"):
        cli.main(["eval", "mnist", "--checkpoint", str(tmp_path)])


def _python(args, cwd, pythonpath):
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A copy of the cnnlab package alone (as `pip install .` puts it), and an empty working folder."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(PACKAGE, site / "cnnlab", ignore=shutil.ignore_patterns("__pycache__"))
    return site, tmp_path_factory.mktemp("cwd")


def test_error_line_from_the_installed_command_has_no_traceback(installed):
    site, cwd = installed
    done = _python(["-m", "cnnlab", "train", "caption", "--config", "table7_lstm", "--out", "x"], cwd, site)
    assert done.returncode == 2
    assert "no caption config 'table7_lstm'; known: default, table7_tcn" in _one_error_line(done.stderr)


# One process: training, `cnnlab eval facedet` and `cnnlab detect` share the compiled detector.
FACEDET_SCRIPT = """
import importlib.util, json, sys
import cnnlab
assert cnnlab.__file__.startswith(sys.argv[1]), cnnlab.__file__
assert importlib.util.find_spec("experiments") is None
from cnnlab.cli import main
codes = [main(["train", "facedet", "--config", "v2_4", "--set", "image_size=64", "--set", "channels=8",
               "--set", "levels=conv5,conv6", "--steps", "2",
               "--batch-size", "2", "--num-images", "4", "--from-scratch", "--no-progress", "--out", "run"])]
print("EVAL", flush=True)
codes.append(main(["eval", "facedet", "--checkpoint", "run"]))
sys.modules["av"] = None  # a missing optional dependency
open("clip.mp4", "wb").close()
codes.append(main(["detect", "--checkpoint", "run", "clip.mp4", "--out", "detections"]))
print("CODES", json.dumps(codes))
"""


@pytest.fixture(scope="module")
def facedet_run(installed):
    """`cnnlab train facedet --config v2_4` (tiny), `cnnlab eval facedet` and `cnnlab detect` run from the package
    copy in an empty folder, with experiments/ not importable."""
    site, cwd = installed
    done = _python(["-c", FACEDET_SCRIPT, str(site)], cwd, site)
    assert done.returncode == 0, done.stderr[-3000:]
    trained, _, evaluated = done.stdout.partition("EVAL")
    evaluated, _, codes = evaluated.partition("CODES")
    return (cwd / "run", json.loads(trained[trained.index("{"):]), json.loads(evaluated), json.loads(codes),
            done.stderr)


def test_named_config_trains_from_the_installed_package_alone(facedet_run):
    run, results, _, codes, _ = facedet_run
    assert codes[0] == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["task"]["name"] == "v2.4" and saved["task"]["image_size"] == 64 and saved["task"]["channels"] == 8
    assert saved["task"]["levels"] == ["conv5", "conv6"]  # --set of a tuple field
    assert saved["task"]["min_anchor_size"] == 8 and saved["task"]["upsample"]  # v2.4's own settings
    assert saved["train"]["steps"] == 2 and results["steps"] == 2 and 0.0 <= results["val_ap"] <= 1.0


def test_eval_facedet_rescores_the_best_weights(facedet_run):
    _, results, evaluated, codes, _ = facedet_run
    assert codes[1] == 0 and evaluated["name"] == "v2.4"
    assert evaluated["val_ap"] == pytest.approx(results["val_ap"], abs=1e-6)


def test_missing_optional_dependency_is_one_error_line(facedet_run):
    _, _, _, codes, stderr = facedet_run
    assert codes[2] == 2
    errors = [line for line in stderr.splitlines() if line.startswith("cnnlab: error:")]
    assert len(errors) == 1 and 'pip install "cnnlab[facedet]"' in errors[0] and "Traceback" not in stderr


@pytest.mark.parametrize("task,package", [("mnist", "mnist"), ("seqmnist", "tcn"), ("facedet", "facedet"),
                                          ("caption", "caption")])
def test_every_task_package_has_the_same_shape(task, package):
    modules = {name: importlib.import_module(f"cnnlab.{package}.{name}")
               for name in ("config", "model", "data", "train", "cli")}
    assert configs.TASKS[task] == f"cnnlab.{package}.config"
    for function in ("train", "load_trained", "evaluate"):
        assert callable(getattr(modules["train"], function)), (package, function)
    assert issubclass(modules["config"].CONFIG_CLASS, TrainConfig)
    for name in ("add_train_parser", "add_eval_parser"):
        assert callable(getattr(modules["cli"], name)), (package, name)
    assert "grad" in {f.name for f in dataclasses.fields(modules["config"].CONFIG_CLASS)}


def test_train_then_eval_caption_cli(coco_dir, tmp_path, capsys, monkeypatch):
    from cnnlab.caption import data
    scored = {}

    def score_captions(predictions, references):  # the official metrics have their own tests (Java, slow)
        scored.update(predictions=predictions, references=references)
        return {"bleu_1": 0.5, "bleu_2": 0.0, "bleu_3": 0.0, "bleu_4": 0.0, "meteor": 0.0, "rouge_l": 0.0,
                "cider": 0.0}
    monkeypatch.setattr("cnnlab.caption.metrics.score_captions", score_captions)
    out = tmp_path / "run"
    assert cli.main(["train", "caption", "--set", "image_size=32", "--set", "score_images=0", "--steps", "2",
                     "--set", "tcn_blocks=2", "--set", "tcn_channels=8",
                     "--batch-size", "2", "--train-images", "4", "--val-images", "2", "--set", "eval_batch_size=2",
                     "--from-scratch", "--no-progress", "--out", str(out)]) == 0
    capsys.readouterr()
    saved = json.loads((out / "config.json").read_text())["task"]
    assert (saved["tcn_blocks"], saved["tcn_channels"]) == (2, 8)
    assert cli.main(["eval", "caption", "--checkpoint", str(out), "--limit", "2", "--out", str(tmp_path / "eval")]) == 0
    scores = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert scores["images"] == 2 and scores["decoder"] == "tcn" and scores["bleu_1"] == 0.5
    _, ids, captions = data.load_split(coco_dir / "mini", "val")  # the first two validation images, all references
    assert list(scored["predictions"]) == ids[:2] and scored["references"] == dict(zip(ids[:2], captions[:2]))
    predictions = json.loads((tmp_path / "eval" / "predictions.json").read_text())
    assert [p["image_id"] for p in predictions] == ids[:2] and all(isinstance(p["caption"], str) for p in predictions)
    assert (tmp_path / "eval" / "captions.html").stat().st_size > 0


def test_task_flags_are_shorthands_on_the_config_and_set_comes_last():
    def config(*argv):
        args = cli.build_parser().parse_args(["train", *argv, "--out", "unused"])
        package = {"seqmnist": "tcn"}.get(argv[0], argv[0])
        return importlib.import_module(f"cnnlab.{package}.cli").config_from_args(args)
    table3 = config("mnist", "--config", "table3_cnn", "--steps", "1000", "--model", "mlp", "--lr", "0.05")
    # Table 3's /10 at 70 000 and 90 000 of 100 000 and validation every 5 000, at the same fractions of 1 000.
    assert (table3.steps, table3.lr_boundaries, table3.eval_every, table3.model) == (1000, (700, 900), 50, "mlp")
    assert table3.learning_rate == 0.05
    assert config("mnist", "--steps", "10", "--set", "steps=20", "--set", "model=mlp").steps == 20
    short = config("facedet", "--config", "v2_4", "--steps", "100", "--learning-rate", "0.01", "--grad", "autodiff")
    assert (short.lr_boundaries, short.learning_rate, short.grad) == ((), 0.01, "autodiff")  # constant rate
    tcn = config("seqmnist", "--config", "radical_pmnist", "--steps", "400", "--schedule", "scaled", "--no-progress")
    assert tcn.lr_boundaries == (40, 200, 260, 360) and tcn.block == "radical" and tcn.permuted and not tcn.progress
