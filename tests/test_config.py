"""Config schema, loaders, precedence and the one-line errors of bad input (exit code 2)."""

from __future__ import annotations

import json

import pytest

from trainkit import cli, config
from trainkit.tasks import get_task


def resolve_text(tmp_path, text: str, name: str = "cfg.yaml", **kw) -> config.TrainConfig:
    """As the train session does: the config, then model/data checked by the task's schemas."""
    p = tmp_path / name
    p.write_text(text)
    cfg = config.resolve(config.load_file(p), source=str(p), **kw)
    task = get_task(cfg.task)
    return config.resolve_sections(cfg, model_schema=task.model_config, data_schema=task.data_config, source=str(p))


def test_task_only_config_is_valid_and_filled_with_defaults(tmp_path):
    cfg = resolve_text(tmp_path, "task: burgers\n")
    assert cfg.task == "burgers" and cfg.epochs == 30 and cfg.lr == 2e-3 and cfg.early_stopping is None  # its own
    assert cfg.checkpoint.every_steps == 0
    assert cfg.model == {"width": 256, "depth": 3, "dropout": 0.0}  # the task's schema fills model/data
    assert cfg.data["nx"] == 64


@pytest.mark.parametrize("name,text", [
    ("c.yaml", "task: burgers\nepochs: 7\nlr: 1e-3\nearly_stopping: {patience: 2}\n"),
    ("c.yml", "task: burgers\nepochs: 7\nlr: 0.001\nearly_stopping:\n  patience: 2\n"),
    ("c.json", json.dumps({"task": "burgers", "epochs": 7, "lr": 0.001, "early_stopping": {"patience": 2}})),
    ("c.toml", 'task = "burgers"\nepochs = 7\nlr = 0.001\n[early_stopping]\npatience = 2\n'),
    ("c.py", "config = {'task': 'burgers', 'epochs': 7, 'lr': 1e-3, 'early_stopping': {'patience': 2}}\n"),
])
def test_every_file_format_gives_the_same_config(tmp_path, name, text):
    cfg = resolve_text(tmp_path, text, name)
    assert (cfg.epochs, cfg.lr, cfg.early_stopping.patience, cfg.early_stopping.metric) == (7, 0.001, 2, "val_loss")


def test_precedence_cli_over_file_over_defaults(tmp_path):
    cfg = resolve_text(tmp_path, "task: burgers\nepochs: 5\nlr: 0.01\nbatch_size: 8\n", epochs=9,
                       sets=["lr=3e-4", "model.width=32", "early_stopping.patience=4", "checkpoint.every_steps=7"])
    assert cfg.epochs == 9 and cfg.lr == 3e-4 and cfg.batch_size == 8 and cfg.seed == 0
    assert cfg.model["width"] == 32 and isinstance(cfg.model["width"], int)
    assert cfg.early_stopping.patience == 4 and cfg.early_stopping.mode == "min"
    assert cfg.checkpoint.every_steps == 7


def test_set_null_disables_early_stopping(tmp_path):
    cfg = resolve_text(tmp_path, "task: burgers\nearly_stopping: {patience: 3}\n", sets=["early_stopping=null"])
    assert cfg.early_stopping is None


def test_set_typed_by_schema(tmp_path):
    cfg = resolve_text(tmp_path, "task: burgers\n", sets=["deterministic=false", "device=cpu", "seed=12"])
    assert cfg.deterministic is False and cfg.device == "cpu" and cfg.seed == 12


BAD = [
    # (config text, --set items, expected fragments of the one-line message)
    ("task: burgers\nepoch: 3\n", [], ["unknown key 'epoch'", "did you mean 'epochs'"]),
    ("task: burgers\nearly_stopping: {patiense: 3}\n", [], ["unknown key early_stopping.'patiense'", "patience"]),
    ("task: burgers\nmodel: {widht: 3}\n", [], ["unknown key model.'widht'", "width"]),
    ("task: burgers\nepochs: ten\n", [], ["epochs: expected an integer", "'ten'", "cfg.yaml"]),
    ("task: burgers\nlr: [1]\n", [], ["lr: expected a number", "cfg.yaml"]),
    ("task: burgers\nearly_stopping: {mode: maximum}\n", [],
     ["early_stopping.mode", "'min' | 'max'", "did you mean 'max'"]),
    ("task: burgers\n", ["epochs=abc"], ["epochs: expected an integer", "'abc'", "command-line"]),
    ("task: burgers\n", ["lr"], ["expected key=value"]),
    ("task: burgers\n", ["nosuch=1"], ["unknown key 'nosuch'"]),
    ("task: burger\n", [], ["unknown task 'burger'", "did you mean 'burgers'"]),
    ("task: nosuchmodule_xyz:make\n", [], ["cannot import module 'nosuchmodule_xyz'"]),
    ("epochs: 3\n", [], ["missing required key 'task'"]),
    ("task: burgers\nepochs: 0\n", [], ["epochs: 0 must be >= 1"]),
    ("", [], ["config is empty"]),
    ("- just\n- a list\n", [], ["must be a mapping"]),
    ("task: [unclosed\n", [], ["cannot parse config"]),
]


@pytest.mark.parametrize("text,sets,fragments", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, text, sets, fragments):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    argv = ["train", str(p), "--run-dir", str(tmp_path / "run")]
    for s in sets:
        argv += ["--set", s]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for frag in fragments:
        assert frag in err, (frag, err)
    assert not (tmp_path / "run").exists()  # nothing written for bad input


@pytest.mark.parametrize("make,fragment", [
    (lambda d: d / "missing.yaml", "no such config file"),
    (lambda d: (d / "c.ini").write_text("x") and d / "c.ini", "unsupported config type '.ini'"),
    (lambda d: (d / "c.json").write_bytes(b"\xff\xfe\x00garbage") and d / "c.json", "cannot"),
    (lambda d: (d / "c.py").write_text("x = 1\n") and d / "c.py", "must define a variable named 'config'"),
    (lambda d: (d / "c.py").write_text("raise RuntimeError('boom')\n") and d / "c.py", "RuntimeError: boom"),
])
def test_unreadable_files(tmp_path, capsys, make, fragment):
    path = make(tmp_path)
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err


def test_device_cuda_without_cuda_is_refused(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = tmp_path / "c.yaml"
    p.write_text("task: burgers\ndevice: cuda\n")
    assert cli.main(["train", str(p), "--run-dir", str(tmp_path / "r")]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_locked_and_changed_fields():
    old = {"task": "burgers", "epochs": 4, "lr": 0.001, "model": {"width": 64}, "data": {"nx": 32},
           "early_stopping": None, "_meta": {"x": 1}}
    new = {"task": "burgers", "epochs": 10, "lr": 0.002, "model": {"width": 128}, "data": {"nx": 32},
           "early_stopping": {"patience": 2}}
    assert config.locked_differences(old, new) == ["model.width: 64 (run) vs 128 (requested)"]
    changed = dict((f, (a, b)) for f, a, b in config.changed_fields(old, new))
    assert changed == {"epochs": (4, 10), "lr": (0.001, 0.002), "early_stopping": (None, {"patience": 2})}


def test_schema_help_lists_every_key_with_help():
    text = "\n".join(config.schema_help())
    for key in ("task", "epochs", "seed", "batch_size", "lr", "device", "early_stopping.patience",
                "early_stopping.min_delta", "checkpoint.every_steps", "log_every_steps", "model", "data"):
        assert f"  {key} " in text, key


# --- the eval section (gates) -----------------------------------------------------------------


def test_eval_gates_section_typed_and_overridable(tmp_path):
    cfg = resolve_text(tmp_path, "task: burgers\neval: {gates: {nrmse: {max: 0.10}}}\n",
                       sets=["eval.gates.accuracy.min=0.8"])
    assert cfg.eval.gates.nrmse.max == 0.1 and cfg.eval.gates.nrmse.min is None
    assert cfg.eval.gates.accuracy.min == 0.8 and isinstance(cfg.eval.gates.accuracy.min, float)
    plain = resolve_text(tmp_path, "task: burgers\n")
    assert plain.eval.gates.nrmse is None and plain.eval.gates.accuracy is None
    assert config.to_dict(plain)["eval"] == {"gates": {"nrmse": None, "accuracy": None}, "min_ok_fraction": 1.0}
    part = resolve_text(tmp_path, "task: burgers\n", sets=["eval.min_ok_fraction=0.9"])
    assert part.eval.min_ok_fraction == 0.9


@pytest.mark.parametrize("text,fragment", [
    ("task: burgers\neval: {gatez: {}}\n", "unknown key eval.'gatez' (did you mean eval.'gates'?)"),
    ("task: burgers\neval: {gates: {acuracy: {min: 1}}}\n", "did you mean eval.gates.'accuracy'"),
    ("task: burgers\neval: {gates: {nrmse: {maximum: 1}}}\n", "unknown key eval.gates.nrmse.'maximum'"),
    ("task: burgers\neval: {gates: {nrmse: {max: low}}}\n", "eval.gates.nrmse.max: expected a number, got 'low'"),
    ("task: burgers\neval: [1]\n", "eval: expected a mapping"),
    ("task: burgers\neval: {min_ok_fraction: 1.5}\n", "eval.min_ok_fraction: 1.5 must be between 0 and 1"),
])
def test_bad_eval_section_is_one_line_and_exit_2(tmp_path, capsys, text, fragment):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    assert cli.main(["train", str(p), "--run-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "run").exists()


def test_eval_section_is_not_locked():
    old = {"task": "burgers", "model": {}, "data": {}, "eval": {"gates": {"nrmse": None, "accuracy": None}}}
    new = {"task": "burgers", "model": {}, "data": {},
           "eval": {"gates": {"nrmse": {"min": None, "max": 0.1}, "accuracy": None}}}
    assert "eval" not in config.LOCKED_FIELDS and config.locked_differences(old, new) == []
    assert config.changed_fields(old, new) == [("eval.gates.nrmse", None, {"min": None, "max": 0.1})]


def test_describe_lists_the_gates():
    text = "\n".join(config.schema_help())
    for key in ("eval.gates.nrmse.max", "eval.gates.accuracy.min"):
        assert f"  {key} " in text, key
