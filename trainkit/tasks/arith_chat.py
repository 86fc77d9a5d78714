"""Built-in task ``arith-chat``: a tiny character-level transformer that answers arithmetic questions
in a chat.

Data: conversations ``user: "What is 27 + 15?"  assistant: "42"`` (optionally after a system
message), operands in ``0 .. 10**digits - 1`` and an operation of ``operations``, drawn
deterministically from ``data.seed`` (see :func:`train_val`), then shaped by the run's data profile
(``task.profile``, set by the engine before :meth:`ArithChatTask.build_data`; ``plain_sft`` when
none), e.g. ``emoji_think`` turns the reply into ``"🤔🧮💭 42 ✅"``. Data is generated in well under
a second and is not cached.

Template: each message is its role marker, its text and an end marker (single control characters,
which sanitized text never holds); the assistant's marker is followed by ``data.pause_tokens`` pause
markers, positions where the model computes before its first character (Goyal et al., "Think before
you speak: training language models with pause tokens", 2023). The model learns the assistant's
characters and end marker only (the loss mask). Generation starts after the pause markers and stops
at the end marker.

Vocabulary: the markers, printable ASCII, the built-in profiles' emojis and ``data.extra_chars``,
fixed by the config alone, so the model is rebuilt for evaluation without building data and any
built-in profile fits the same vocabulary. A character outside it reads as an unknown token.

Model: nanoGPT's shape (token embeddings, pre-norm blocks of causal self-attention and an MLP, a
final layer norm, the head tied to the token embedding), with two changes for numbers whose layout
shifts with their lengths ("7 + 15" and "27 + 15" put the digits to add in different places):
rotary position embeddings in the attention (Su et al., "RoFormer", 2021) instead of a learned table
of absolute positions, so relative positions carry over from one layout to another; and a place
embedding added to each digit of the prompt, its place value counted from the end of its number
(1: ones, 2: tens, ...; McLeish et al., "Transformers can do arithmetic with the right embeddings",
2024), so the digits to add find each other whatever the layout (the reply's digits get none: their
numbers' lengths are not known while they are written). Measured on the demo config (2-digit sums,
2 CPU threads): with learned positions it stalled near 77 % held-out accuracy, failing mostly on
questions with a one-digit operand; with rotary positions alone the plateau before the model learns
the carry lasted from 700 to over 3,000 steps depending on the seed (several runs missed 80 % in
the time budget); with both, seven seeds out of seven reached 99 % within 2,500 steps.

Evaluation: ``EVAL_QUESTIONS`` questions drawn with a seed derived from ``data.seed`` (never equal to
it), excluded from the training and validation draws; the predictor answers greedily through the
profile's logits processors and returns the answer without the profile's pattern, with the whole
conversation (system, user, assistant) as its messages. The metric is exact-match accuracy.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainkit.config import setting
from trainkit.errors import UserError
from trainkit.profiles import DataProfile, RejectedExample
from trainkit.profiles.base import sanitize_text, with_system_prompt
from trainkit.profiles.emoji_think import STOP_POOL, THINKING_POOL
from trainkit.profiles.plain_sft import PlainSFTProfile
from trainkit.tasks.base import Task, TaskData
from trainkit.tasks.defaults import ARITH_CHAT

log = logging.getLogger("trainkit")

EVAL_QUESTIONS = 200  # the default held-out question set (a quarter of the questions, if fewer)
SAMPLE_PROMPTS = 8  # prompts for the training monitor's inference samples
VAL_GENERATE = 128  # validation questions answered by generation at each epoch end (val_accuracy)
OPERATIONS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}

PAD, SYSTEM, USER, ASSISTANT, END, UNK, PAUSE = "\x00", "\x01", "\x02", "\x03", "\x04", "\x05", "\x06"
MARKERS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}
SPECIALS = (PAD, SYSTEM, USER, ASSISTANT, END, UNK, PAUSE)
PLACES = 8  # place values told apart by the place embedding (ones .. 10**7; longer numbers share the last)


@dataclass
class ArithData:
    seed: int = setting(0, "seed of the generated questions (the held-out set uses one derived from it)")
    n_train: int = setting(8000, "training conversations (questions may repeat)")
    n_val: int = setting(512, "validation conversations (distinct questions)")
    digits: int = setting(2, "operands are 0 .. 10**digits - 1")
    operations: str = setting("+", "operations asked, any of + - * (e.g. \"+-\")")
    system_prompt: str = setting("Be exact.", "system message of every conversation ('' = none)")
    extra_chars: str = setting("", "characters added to the vocabulary (printable ASCII and the built-in "
                                   "profiles' emojis are in it)")
    pause_tokens: int = setting(4, "pause markers after the assistant marker, where the model computes before "
                                   "its first character")

    def __post_init__(self) -> None:
        if not self.operations or any(op not in OPERATIONS for op in self.operations) \
                or len(set(self.operations)) != len(self.operations):
            raise UserError(f"data.operations: {self.operations!r}: give distinct operations among + - *")
        if not 0 <= self.pause_tokens <= 32:
            raise UserError(f"data.pause_tokens: {self.pause_tokens} must be between 0 and 32")
        if not 1 <= self.digits <= 9:
            raise UserError(f"data.digits: {self.digits} must be between 1 and 9")
        if self.n_train < 1 or self.n_val < 1:
            raise UserError("data.n_train and data.n_val must be >= 1")
        universe = self.universe()
        if 2 * (self.n_val + self.n_eval()) > universe:
            raise UserError(f"data: n_val ({self.n_val}) plus the {self.n_eval()} held-out questions are more than "
                            f"half of the {universe} questions of digits={self.digits}, "
                            f"operations={self.operations!r} (training needs the rest)")

    def universe(self) -> int:
        """How many distinct questions there are."""
        return len(self.operations) * 100 ** self.digits

    def n_eval(self) -> int:
        """How many questions are held out for the evaluation."""
        return min(EVAL_QUESTIONS, self.universe() // 4)


@dataclass
class ArithModel:
    width: int = setting(64, "embedding width")
    depth: int = setting(3, "transformer blocks")
    heads: int = setting(8, "attention heads (2 x heads must divide width)")
    dropout: float = setting(0.0, "dropout in the blocks")
    block_size: int = setting(96, "longest conversation in characters (system + question + reply); generation "
                                  "stops there")

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1 or self.heads < 1 or self.width % (2 * self.heads):
            raise UserError(f"model: width ({self.width}) must be a positive multiple of 2 x heads ({self.heads}; "
                            "rotary embeddings turn pairs of a head's dimensions), depth >= 1")
        if self.block_size < 8:
            raise UserError(f"model.block_size: {self.block_size} must be >= 8")


# ---------------------------------------------------------------------------------------------
# questions


def eval_seed(seed: int) -> int:
    """The seed of the held-out questions: a hash of ``data.seed``, never ``data.seed`` itself."""
    derived = int.from_bytes(hashlib.sha256(f"arith-chat-eval-{seed}".encode()).digest()[:7], "big")
    return derived if derived != seed else derived + 1


def question(cfg: ArithData, q: int) -> tuple[str, str]:
    """Question number ``q`` of the ``len(operations) * 100**digits`` possible: (text, answer)."""
    base = 10 ** cfg.digits
    op = cfg.operations[q // (base * base)]
    a, b = divmod(q % (base * base), base)
    return f"What is {a} {op} {b}?", str(OPERATIONS[op](a, b))


def held_out(cfg: ArithData) -> list[int]:
    return random.Random(eval_seed(cfg.seed)).sample(range(cfg.universe()), cfg.n_eval())


def train_val(cfg: ArithData) -> tuple[list[int], list[int]]:
    """Question numbers for training and validation, none of them held out. Validation questions
    are distinct, drawn uniformly from the rest; training questions are drawn from what is left,
    with repeats, each operand half of the time uniformly and half of the time with a length drawn
    uniformly from 1..digits first: short operands are rare among all questions, and their layouts
    are learned from them (uniform draws alone left questions with a one-digit operand near 50 %
    held-out accuracy, all-balanced draws starved the common two-digit case)."""
    excluded = set(held_out(cfg))
    rng = random.Random(cfg.seed)
    drawn = rng.sample(range(cfg.universe()), min(cfg.universe(), cfg.n_val + len(excluded)))
    val = [q for q in drawn if q not in excluded][:cfg.n_val]
    excluded.update(val)
    base = 10 ** cfg.digits

    def operand() -> int:
        if rng.random() < 0.5:
            return rng.randrange(base)
        n = rng.randint(1, cfg.digits)
        return rng.randrange(0 if n == 1 else 10 ** (n - 1), 10 ** n)

    train: list[int] = []
    while len(train) < cfg.n_train:
        q = rng.randrange(len(cfg.operations)) * base * base + operand() * base + operand()
        if q not in excluded:
            train.append(q)
    return train, val


def eval_questions(cfg: ArithData) -> list[dict]:
    return [{"id": i, "question": text, "answer": answer}
            for i, (text, answer) in enumerate(question(cfg, q) for q in held_out(cfg))]


# ---------------------------------------------------------------------------------------------
# characters


class CharTokenizer:
    """One token per character (code point). Has what profiles' logits processors use:
    ``encode(text, add_special_tokens=False)``, ``decode(ids)`` and ``eos_token_id`` (the end marker)."""

    def __init__(self, extra_chars: str = "", pause_tokens: int = 0) -> None:
        chars = set(string.printable) - set("\t\r\x0b\x0c") | set("".join(THINKING_POOL + STOP_POOL)) | set(extra_chars)
        self.itos = list(SPECIALS) + sorted(chars - set(SPECIALS))
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        self.pad_token_id = self.stoi[PAD]
        self.eos_token_id = self.stoi[END]
        self.unk_token_id = self.stoi[UNK]
        self.digit_ids = frozenset(self.stoi[d] for d in string.digits)
        #: what starts a reply: the assistant marker and the pause markers
        self.reply_header = [self.stoi[ASSISTANT]] + [self.stoi[PAUSE]] * pause_tokens

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.stoi.get(c, self.unk_token_id) for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """The text of ``ids``; markers and padding are left out (``skip_special_tokens``), an
        unknown character reads as U+FFFD."""
        chars = ("\ufffd" if c == UNK else c for c in (self.itos[i] for i in ids))
        if skip_special_tokens:
            return "".join(c for c in chars if c not in SPECIALS)
        return "".join(chars)

    def chat(self, messages: list[dict]) -> tuple[list[int], list[bool]]:
        """(ids, learned): each message as its header (the role's marker; for the assistant the
        reply header) + text + end marker; ``learned`` marks the assistant's text and end marker."""
        ids: list[int] = []
        learned: list[bool] = []
        for m in messages:
            head = self.reply_header if m["role"] == "assistant" else [self.stoi[MARKERS[m["role"]]]]
            body = self.encode(m["content"]) + [self.eos_token_id]
            ids += [*head, *body]
            learned += [False] * len(head) + [m["role"] == "assistant"] * len(body)
        return ids, learned

    def prompt(self, messages: list[dict]) -> list[int]:
        """The ids of a conversation so far, ending where the assistant's reply starts."""
        return self.chat(messages)[0] + self.reply_header

    def places(self, ids: list[int], learned: list[bool] | None = None) -> list[int]:
        """The place value of each digit of the given text, counted from the end of its number
        (1: ones, 2: tens, ..., at most ``PLACES``), 0 for other tokens and for the learned ones
        (a reply is written left to right: its numbers' lengths are not known while it is)."""
        out = [0] * len(ids)
        run = 0
        for i in range(len(ids) - 1, -1, -1):
            if ids[i] in self.digit_ids and not (learned and learned[i]):
                run += 1
                out[i] = min(run, PLACES)
            else:
                run = 0
        return out


# ---------------------------------------------------------------------------------------------
# the model


def rotary_tables(t: int, dim: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[t, dim]`` of rotary position embeddings (RoPE: Su et al., "RoFormer", 2021);
    the ``dim // 2`` frequencies repeated, for :func:`rotate`."""
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))
    angles = torch.arange(t, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x`` (``[..., t, dim]``) rotated by its position: pairs (i, i + dim/2) turn by their angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
        q, k = rotate(q, *rope), rotate(k, *rope)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), rope)
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, width: int, depth: int, heads: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab_size, width)
        self.place = nn.Embedding(PLACES + 1, width)
        self.head_dim = width // heads
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tok.weight  # tied
        for name, p in self.named_parameters():
            if p.dim() > 1:  # GPT-2's init; the residual projections scaled by depth
                std = 0.02 / math.sqrt(2 * depth) if name.endswith(("proj.weight", "mlp.2.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, select: torch.Tensor | None = None,
                places: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[batch, seq, vocab]`` of the tokens ``idx`` with their digits' ``places``
        (:meth:`CharTokenizer.places`; None: none); with a boolean ``select`` of ``idx``'s shape,
        only those positions' logits ``[n, vocab]`` (the head is the costly part at a small width)."""
        t = idx.shape[1]
        x = self.tok(idx)
        if places is not None:
            x = x + self.place(places)
        x = self.drop(x)
        rope = rotary_tables(t, self.head_dim, idx.device)
        for block in self.blocks:
            x = block(x, rope)
        x = self.ln_f(x)
        return self.head(x if select is None else x[select])


@torch.no_grad()
def generate_ids(model: nn.Module, prompts: list[list[int]], *, eos: int, max_new_tokens: int,
                 device: torch.device | str, places: list[list[int]] | None = None,
                 processors_factory: Callable[[], list] | None = None, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> list[list[int]]:
    """The reply ids (without the end marker) of each prompt: greedy when ``temperature`` is 0, else
    sampled from ``softmax(scores / temperature)`` with ``generator``. Prompts of one length form a
    batch (no padding, which the model never saw in front of a conversation), with a fresh list
    from ``processors_factory()``. ``places``: the prompts' digit places (the new tokens' are 0). A
    reply ends at the end marker, at ``max_new_tokens`` or at the model's block size. The model runs
    in the mode it is in; the global RNG is not used."""
    block_size = getattr(model, "block_size", None) or getattr(getattr(model, "module", None), "block_size", 10**9)
    replies: list[list[int]] = [[] for _ in prompts]
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    for length in sorted(groups):
        rows = groups[length]
        x = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=device)
        pl = torch.tensor([places[i] for i in rows], dtype=torch.long, device=device) if places else None
        processors = processors_factory() if processors_factory is not None else []
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        last = torch.zeros_like(x, dtype=torch.bool)
        for _ in range(max_new_tokens):
            if x.shape[1] >= block_size:
                break
            last = torch.zeros_like(x, dtype=torch.bool)
            last[:, -1] = True
            scores = model(x, last, pl).float()
            for proc in processors:
                scores = proc(x, scores)
            blocked = torch.isneginf(scores).all(dim=-1)  # processors left nothing: end the reply
            if temperature > 0:
                probs = torch.softmax(torch.where(blocked[:, None], 0.0, scores) / temperature, dim=-1)
                if generator is not None:
                    probs = probs.to(generator.device)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)
            else:
                nxt = scores.argmax(dim=-1)
            nxt = torch.where(done | blocked, eos, nxt)
            x = torch.cat([x, nxt[:, None]], dim=1)
            if pl is not None:
                pl = torch.cat([pl, torch.zeros_like(nxt)[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
        for r, i in enumerate(rows):
            out = x[r, length:].tolist()
            replies[i] = out[:out.index(eos)] if eos in out else out
    return replies


# ---------------------------------------------------------------------------------------------
# the task


class ArithChatTask(Task):
    name = "arith-chat"
    model_config = ArithModel
    data_config = ArithData
    metric = "accuracy"
    defaults = ARITH_CHAT
    #: the run's data profile, set by the engine before build_data (None: plain_sft)
    profile: DataProfile | None = None

    def __init__(self) -> None:
        self.data_cfg = ArithData()  # replaced by build_data / build_eval_model
        self.tokenizer = CharTokenizer(self.data_cfg.extra_chars, self.data_cfg.pause_tokens)
        self._plain = PlainSFTProfile()

    # ---------------------------------------------------------------- helpers
    def active_profile(self) -> DataProfile:
        return self.profile if self.profile is not None else self._plain

    def _use(self, data: dict) -> ArithData:
        cfg = ArithData(**data)
        self.tokenizer = CharTokenizer(cfg.extra_chars, cfg.pause_tokens)
        self.data_cfg = cfg
        return cfg

    def logits_processors(self) -> list:
        """A fresh list of the profile's logits processors (for one generation)."""
        return self.active_profile().build_logits_processors(self.tokenizer)

    def prompt_messages(self, text: str) -> list[dict]:
        """The conversation before the reply: the system prompt (if any) and the user's question."""
        return with_system_prompt([{"role": "user", "content": sanitize_text(text)}],
                                  self.data_cfg.system_prompt or None)

    def max_reply_chars(self) -> int:
        """Enough new tokens for any answer, a pattern and some slack."""
        return 2 * self.data_cfg.digits + 2 + 24

    # ---------------------------------------------------------------- data and model
    def build_data(self, data: dict, cache_dir: Path | None) -> TaskData:
        cfg = self._use(data)
        profile = self.active_profile()
        train_q, val_q = train_val(cfg)
        splits: list[list[tuple[list[int], list[bool]]]] = [[], []]
        rejected: dict[str, int] = {}
        for index, q in enumerate(train_q + val_q):
            text, answer = question(cfg, q)
            example = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]}
            try:
                shaped = profile.transform_example(example, index, system_prompt=cfg.system_prompt or None)
            except RejectedExample as e:
                rejected[e.reason] = rejected.get(e.reason, 0) + 1
                continue
            splits[index >= len(train_q)].append(self.tokenizer.chat(shaped["messages"]))
        if rejected:
            log.warning("profile %s rejected %d example(s): %s", getattr(profile, "name", profile),
                        sum(rejected.values()), "; ".join(f"{n} x {r}" for r, n in rejected.items()))
        if not splits[0] or not splits[1]:
            raise ValueError(f"profile {getattr(profile, 'name', profile)!r} rejected every training or "
                             "validation example")
        width = max(len(ids) for split in splits for ids, _ in split) - 1
        return TaskData(train=self._tensors(splits[0], width), val=self._tensors(splits[1], width))

    def _tensors(self, convs: list[tuple[list[int], list[bool]]], width: int) -> tuple[torch.Tensor, ...]:
        """(tokens, targets, mask, places), padded to ``width``: targets are the tokens shifted by
        one; the mask marks the targets that are learned (the assistant's); places are the tokens'
        digit places (:meth:`CharTokenizer.places`)."""
        pad = self.tokenizer.pad_token_id
        ids_rows, learned_rows, place_rows = [], [], []
        for ids, learned in convs:
            fill = width + 1 - len(ids)
            ids_rows.append(ids + [pad] * fill)
            learned_rows.append(learned + [False] * fill)
            place_rows.append(self.tokenizer.places(ids, learned) + [0] * fill)
        ids = torch.tensor(ids_rows, dtype=torch.long)
        learned = torch.tensor(learned_rows, dtype=torch.bool)
        places = torch.tensor(place_rows, dtype=torch.long)
        return (ids[:, :-1].contiguous(), ids[:, 1:].contiguous(), learned[:, 1:].contiguous(),
                places[:, :-1].contiguous())

    def _model(self, model: dict) -> CharTransformer:
        cfg = ArithModel(**model)
        return CharTransformer(len(self.tokenizer), cfg.block_size, cfg.width, cfg.depth, cfg.heads, cfg.dropout)

    def build_model(self, model: dict, data: TaskData) -> nn.Module:
        net = self._model(model)
        longest = data.train[0].shape[1] + 1
        if longest > net.block_size:
            raise UserError(f"model.block_size {net.block_size} is shorter than the longest conversation "
                            f"({longest} characters): raise it")
        return net

    def build_eval_model(self, model: dict, data: dict, cache_dir: Path | None) -> nn.Module:
        self._use(data)
        return self._model(model)

    # ---------------------------------------------------------------- training
    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        tokens, targets, mask, places = batch[:4]
        return F.cross_entropy(model(tokens, mask, places), targets[mask])

    @torch.no_grad()
    def validate(self, model: nn.Module, val: tuple[torch.Tensor, ...], batch_size: int) -> dict[str, float]:
        tokens, targets, mask, places = val[:4]
        total, count = 0.0, 0
        step = max(batch_size, 256)
        for i in range(0, tokens.shape[0], step):
            m = mask[i:i + step]
            logits = model(tokens[i:i + step], m, places[i:i + step])
            total += float(F.cross_entropy(logits, targets[i:i + step][m], reduction="sum"))
            count += int(m.sum())
        scores = {"val_loss": total / max(count, 1)}
        # answer the first questions by generation, as the evaluation does
        n = min(VAL_GENERATE, tokens.shape[0])
        prompts, prompt_places, expected = [], [], []
        for r in range(n):
            row_mask = mask[r]
            start = int(row_mask.nonzero()[0, 0])  # tokens[start] ends the reply header
            prompts.append(tokens[r, :start + 1].tolist())
            prompt_places.append(places[r, :start + 1].tolist())
            expected.append(self.tokenizer.decode(targets[r][row_mask].tolist()))
        profile = self.active_profile()
        replies = [self.tokenizer.decode(ids) for ids in generate_ids(
            model, prompts, eos=self.tokenizer.eos_token_id, max_new_tokens=self.max_reply_chars(),
            device=tokens.device, places=prompt_places, processors_factory=self.logits_processors)]
        scores["val_accuracy"] = sum(profile.strip_pattern(out).strip() == profile.strip_pattern(want).strip()
                                     for out, want in zip(replies, expected, strict=True)) / max(n, 1)
        patterns = [profile.pattern_ok(out) for out in replies]
        if n and patterns[0] is not None:
            scores["val_pattern_ok"] = sum(bool(p) for p in patterns) / n
        return scores

    def validation_metrics(self) -> tuple[str, ...]:
        has_pattern = self.active_profile().pattern_ok("") is not None
        return ("val_loss", "val_accuracy", *(("val_pattern_ok",) if has_pattern else ()))

    # ---------------------------------------------------------------- generation
    def generate(self, model: nn.Module, prompts: list[str], *, device: torch.device | str, max_new_tokens: int,
                 processors_factory: Callable[[], list] | None = None, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> list[str]:
        """The assistant's replies (pattern included) to the user's questions ``prompts``, each in
        a conversation with the data's system prompt. ``processors_factory()`` gives a fresh list
        of logits processors per batch; None: the profile's (:meth:`logits_processors`; pass
        ``lambda: []`` for none). Greedy when ``temperature`` is 0. The model runs in the mode it is
        in (callers put it in eval mode) and the global RNG is not used."""
        ids = [self.tokenizer.prompt(self.prompt_messages(p)) for p in prompts]
        out = generate_ids(model, ids, eos=self.tokenizer.eos_token_id, max_new_tokens=max_new_tokens,
                           device=device, places=[self.tokenizer.places(i) for i in ids],
                           processors_factory=processors_factory or self.logits_processors,
                           temperature=temperature, generator=generator)
        return [self.tokenizer.decode(r) for r in out]

    def sample_prompts(self) -> list[dict]:
        """Prompts for the training monitor: the profile's when it has some, else the first
        held-out questions (``{"prompt", "expected"}``)."""
        own = self.active_profile().sample_prompts()
        if own:
            return own
        return [{"prompt": q["question"], "expected": q["answer"]}
                for q in eval_questions(self.data_cfg)[:SAMPLE_PROMPTS]]

    # ---------------------------------------------------------------- evaluation
    def default_questions(self, data: dict) -> list[dict]:
        return eval_questions(ArithData(**data))

    def validation_questions(self, data: dict) -> list[dict]:
        """The ``VAL_GENERATE`` validation questions whose generated answers give ``val_accuracy``,
        shaped by the profile as :meth:`build_data` shapes them (rejected ones skipped), with the
        expected answer without the profile's pattern."""
        cfg = ArithData(**data)
        profile = self.active_profile()
        _, val_q = train_val(cfg)
        out: list[dict] = []
        for k, q in enumerate(val_q):
            text, answer = question(cfg, q)
            example = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]}
            try:
                shaped = profile.transform_example(example, cfg.n_train + k, system_prompt=cfg.system_prompt or None)
            except RejectedExample:
                continue
            reply = shaped["messages"][-1]["content"]
            out.append({"id": len(out), "question": text, "answer": profile.strip_pattern(reply).strip()})
            if len(out) == VAL_GENERATE:
                break
        return out

    def predictor(self, model: nn.Module, device: torch.device) -> Callable[[dict], Any]:
        profile = self.active_profile()

        def predict(item: dict) -> dict:
            text = item.get("question")
            if not isinstance(text, str):
                raise ValueError(f"question must be text, got {type(text).__name__}")
            messages = self.prompt_messages(text)
            raw = self.generate(model, [text], device=device, max_new_tokens=self.max_reply_chars())[0]
            return {"answer": profile.strip_pattern(raw).strip(),
                    "messages": [*messages, {"role": "assistant", "content": raw}]}

        return predict
