"""The built-in arith-chat task: held-out questions, data shaped by the profile with the loss on the
reply only, generation that honours the logits processors, a model that learns, and an evaluation
that writes conversations with roles."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch
import yaml
from helpers import eval_env, read_json, records, trainkit

from trainkit.errors import UserError
from trainkit.profiles import get_profile
from trainkit.profiles.emoji_think import STOP_POOL, THINKING_POOL
from trainkit.tasks import get_task
from trainkit.tasks.arith_chat import (
    ArithChatTask,
    ArithData,
    CharTokenizer,
    eval_questions,
    eval_seed,
    question,
    train_val,
)

# one-digit sums: learnable in a few seconds
TINY = {"digits": 1, "operations": "+", "n_train": 60, "n_val": 15, "system_prompt": ""}
SMALL_MODEL = {"width": 32, "depth": 1, "heads": 2, "block_size": 64}


def defaults(**over) -> dict:
    return dataclasses.asdict(ArithData(**over))


def emoji_task() -> ArithChatTask:
    """``task: test_arith_chat:emoji_task``: arith-chat through emoji_think."""
    task = ArithChatTask()
    task.profile = get_profile("emoji_think")
    return task


def solve(text: str) -> str:
    a, op, b = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", text).groups()
    return str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])


# ------------------------------------------------------------------------------------ questions

def test_default_questions_are_deterministic_correct_and_held_out():
    task = get_task("arith-chat")
    assert task.name == "arith-chat" and task.metric == "accuracy"
    data = defaults()
    qs = task.default_questions(data)
    assert len(qs) >= 100 and qs == ArithChatTask().default_questions(data)
    assert len({q["id"] for q in qs}) == len(qs) == len({q["question"] for q in qs})
    assert all(solve(q["question"]) == q["answer"] for q in qs)
    cfg = ArithData(**data)
    train, val = train_val(cfg)
    assert len(train) == cfg.n_train and len(val) == cfg.n_val and not set(train) & set(val)
    seen = {question(cfg, q)[0] for q in train + val}
    assert not seen & {q["question"] for q in qs}
    assert eval_seed(cfg.seed) != cfg.seed
    assert task.default_questions(defaults(seed=1)) != qs


def test_small_universes_hold_out_a_quarter_and_bad_settings_are_refused():
    assert len(eval_questions(ArithData(**TINY))) == 25
    for bad in ({"operations": "/"}, {"operations": "++"}, {"operations": ""}, {"digits": 0},
                {"n_train": 0}, {"digits": 1, "n_val": 30}):
        with pytest.raises(UserError):
            ArithData(**bad)
    with pytest.raises(UserError, match="multiple of 2 x heads"):
        ArithChatTask()._model({"width": 30, "heads": 4})


# ------------------------------------------------------------------------------------ data

@pytest.mark.parametrize("profile", [None, "plain_sft", "emoji_think"])
def test_data_masks_the_reply_only(profile):
    task = ArithChatTask()
    task.profile = get_profile(profile) if profile else None
    data = defaults(**{**TINY, "system_prompt": "Be exact."})
    built = task.build_data(data, None)
    tokens, targets, mask, places = built.train
    assert tokens.shape == targets.shape == mask.shape == places.shape
    assert tokens.shape[0] == 60 and built.val[0].shape[0] == 15
    tok = task.tokenizer
    shaped = task.active_profile()
    for r in range(5):
        reply = tok.decode(targets[r][mask[r]].tolist())
        text = tok.decode(tokens[r].tolist())
        assert text.startswith("Be exact.What is ")
        assert solve(text[9:text.index("?") + 1]) == shaped.strip_pattern(reply)
        end = int(mask[r].nonzero()[-1, 0])
        assert targets[r, end] == tok.eos_token_id and not mask[r, end + 1:].any()  # the end marker is learned
        if profile == "emoji_think":
            assert shaped.pattern_ok(reply)
        digits = [i for i, t in enumerate(tokens[r].tolist()) if tok.itos[t].isdigit()]
        assert [int(places[r, i]) for i in digits if not mask[r, i - 1]] == [1, 1]  # one-digit operands
        assert all(places[r, i] == 0 for i in digits if mask[r, i - 1])  # the reply's digits: no place
    again = task.build_data(data, None)
    assert all(torch.equal(a, b) for a, b in zip(built.train + built.val, again.train + again.val, strict=True))


@pytest.mark.parametrize("text,learned_from,places", [
    ("What is 27 + 5?", None, [2, 1, 1]),
    ("12345678901 - 0?", None, [8, 8, 8, 8, 7, 6, 5, 4, 3, 2, 1, 1]),
    ("x7y 42", 4, [1, 0, 0]),  # from position 4 on the text is learned (a reply): no places
])
def test_digit_places_count_from_the_end_of_each_number(text, learned_from, places):
    tok = CharTokenizer()
    ids = tok.encode(text)
    learned = None if learned_from is None else [i >= learned_from for i in range(len(ids))]
    got = tok.places(ids, learned)
    assert [p for p, c in zip(got, text, strict=True) if c.isdigit()] == places
    assert all(p == 0 for p, c in zip(got, text, strict=True) if not c.isdigit())


def test_vocabulary_is_fixed_by_the_config():
    tok = CharTokenizer()
    text = "What is 12 - 7? " + "".join(THINKING_POOL + STOP_POOL)
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("é")) == "\ufffd"
    assert CharTokenizer("é").decode(CharTokenizer("é").encode("é")) == "é"
    task = ArithChatTask()
    fresh = task.build_eval_model(SMALL_MODEL, defaults(**TINY), None)
    trained = emoji_task().build_model(SMALL_MODEL, emoji_task().build_data(defaults(**TINY), None))
    assert {k: v.shape for k, v in fresh.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}
    with pytest.raises(UserError, match="block_size"):
        task.build_model({**SMALL_MODEL, "block_size": 8}, task.build_data(defaults(**TINY), None))


# ------------------------------------------------------------------------------------ generation

class Booster:
    """Makes the model want, in order: a stop emoji, thinking emojis (until three), digits."""

    def __init__(self, tok: CharTokenizer) -> None:
        self.stops = [tok.stoi[s] for s in STOP_POOL]
        self.thinking = [tok.stoi[t] for t in THINKING_POOL]
        self.digits = [tok.stoi[d] for d in "0123456789"]
        self.prompt_len = None

    def __call__(self, input_ids, scores):
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        scores = scores.clone()
        for row in range(input_ids.shape[0]):
            made = input_ids[row, self.prompt_len:].tolist()
            scores[row, self.stops] += 1000
            if sum(t in self.thinking for t in made) < 3:
                scores[row, self.thinking] += 500
            scores[row, self.digits] += 200
        return scores


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_respects_the_processors(temperature):
    task = emoji_task()
    task.build_data(defaults(**TINY), None)
    torch.manual_seed(0)
    model = task.build_eval_model(SMALL_MODEL, defaults(**TINY), None).train()
    prompts = ["What is 1 + 2?", "What is 3 + 4?", "What is 10 + 20?"]
    rng = torch.get_rng_state()
    gen = torch.Generator().manual_seed(3)
    out = task.generate(model, prompts, device="cpu", max_new_tokens=12, temperature=temperature, generator=gen,
                        processors_factory=lambda: [Booster(task.tokenizer), *task.logits_processors()])
    assert model.training and torch.equal(rng, torch.get_rng_state())  # mode and global RNG untouched
    profile = task.active_profile()
    for text in out:
        assert profile.pattern_ok(text), text
        assert all(c in THINKING_POOL for c in text[:3]) and text[-1] in STOP_POOL
    # without the profile's processors the booster alone stops at once
    bare = task.generate(model.eval(), prompts, device="cpu", max_new_tokens=12,
                         processors_factory=lambda: [Booster(task.tokenizer)])
    assert all(text[0] in STOP_POOL for text in bare)
    assert not model.training


def test_prompts_for_the_monitor():
    task = ArithChatTask()
    task.build_data(defaults(**TINY), None)
    prompts = task.sample_prompts()
    assert 1 <= len(prompts) <= 8 and all(solve(p["prompt"]) == p["expected"] for p in prompts)
    held = {q["question"] for q in task.default_questions(defaults(**TINY))}
    assert {p["prompt"] for p in prompts} <= held


# ------------------------------------------------------------------------------------ learning

@pytest.mark.slow
def test_a_short_run_fits_its_training_conversations():
    """300 steps in-process on 60 one-digit sums: the loss on them falls below a fifth and the model
    answers most of them by generation (the model, its place embedding, the loss mask and greedy
    generation work together; learning to add unseen sums is the slow test's job: 60 examples
    cannot teach it)."""
    task = ArithChatTask()
    torch.manual_seed(0)
    data = task.build_data(defaults(**TINY), None)
    model = task.build_model({}, data)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    model.eval()
    before = task.validate(model, data.train, 64)
    model.train()
    for _ in range(300):
        idx = torch.randint(0, data.train[0].shape[0], (32,), generator=order)
        loss = task.loss(model, tuple(t[idx] for t in data.train))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = task.validate(model, data.train, 64)  # answers its training questions by generation
    assert after["val_loss"] < 0.2 * before["val_loss"]
    assert after["val_accuracy"] >= 0.6 > before["val_accuracy"]
    answer = task.predictor(model, torch.device("cpu"))(task.default_questions(defaults(**TINY))[0])
    assert [m["role"] for m in answer["messages"]] == ["user", "assistant"]


@pytest.mark.slow
def test_the_example_config_passes_its_gate(tmp_path, env):
    """`trainkit run examples/arith_chat.yaml` (train, eval, report) end to end: the loss falls, the
    held-out accuracy passes the 80 % gate, and the conversations have their roles. About 1.5 min."""
    example = Path(__file__).resolve().parents[1] / "examples" / "arith_chat.yaml"
    run = tmp_path / "run"
    r = trainkit("run", example, "--run-dir", run, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    losses = [e["train_loss"] for e in records(run, "epoch")]
    assert losses[-1] < 0.1 * losses[0]
    report = read_json(run / "reports" / "default.json")
    assert report["gates_passed"] is True and report["accuracy"] >= 0.8
    conv = read_json(next((run / "evals" / "default" / "conversations").glob("q*_s0.json")))
    assert [m["role"] for m in conv["messages"]] == ["system", "user", "assistant"]


# ------------------------------------------------------------------------------------ the commands

@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["arith-chat", "test_arith_chat:emoji_task"])
def test_train_then_eval_writes_conversations_with_roles(tmp_path, env, task_name):
    env = eval_env(env)
    cfg = tmp_path / "arith.yaml"
    cfg.write_text(yaml.safe_dump({"task": task_name, "epochs": 2, "batch_size": 32, "lr": 3e-3, "heartbeat_s": 0.5,
                                   "model": SMALL_MODEL, "data": {**TINY, "system_prompt": "Be exact."}}))
    run = tmp_path / "run"
    done = trainkit("train", cfg, "--run-dir", run, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "val_accuracy" in read_json(run / "epochs" / "epoch_0001" / "validation_scores.json")
    done = trainkit("eval", run, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    summary = read_json(run / "evals" / "default" / "test_summary.json")
    assert summary["planned"] == summary["ok"] == 25 and summary["accuracy"] is not None
    files = sorted((run / "evals" / "default" / "conversations").glob("q*_s0.json"))
    assert len(files) == 25
    profile = emoji_task().active_profile() if "emoji" in task_name else ArithChatTask().active_profile()
    for f in files:
        conv = read_json(f)
        roles = [m["role"] for m in conv["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert conv["messages"][0]["content"] == "Be exact."
        assert conv["response"] == profile.strip_pattern(conv["messages"][2]["content"]).strip()
