"""Data profiles: sanitizing, the emoji_think pattern, the logits processors on toy vocabularies (and
inside transformers' generate when it is installed), and the registry (entry points included)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from trainkit.errors import UserError
from trainkit.profiles import BUILTIN, DataProfile, RejectedExample, get_profile, list_profiles
from trainkit.profiles.base import encode, sanitize_text
from trainkit.profiles.emoji_think import STOP_POOL, THINKING_POOL, EmojiThinkProfile

PROFILES = list(BUILTIN)


def chat(*turns: tuple[str, object]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def contents(example: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in example["messages"]]


# ------------------------------------------------------------------------------------ sanitizing

@pytest.mark.parametrize("raw,clean", [
    ("What is 2 + 2?", "What is 2 + 2?"),
    ("  What\tis \u00a0 2 +\u30002?\x07 ", "What is 2 + 2?"),           # tabs, NBSP, ideographic space, BEL
    ("a\r\nb\rc", "a\nb\nc"),                                              # line endings
    ("line  \n\n\n\n  next", "line\n\nnext"),                              # trailing spaces, blank lines
    ("zero\u200bwidth\ufeff and \u202eRTL", "zerowidth and RTL"),         # invisible format characters
    ("e\u0301t\u00e9", "\u00e9t\u00e9"),                                   # NFC
    ("family 👨\u200d👩\u200d👧 ok", "family 👨\u200d👩\u200d👧 ok"),      # ZWJ emoji sequences stay
    ("a\x0cb\x1fc", "a b c"),                                              # whitespace controls -> space
    ("\x00\x01\x02", ""),
])
def test_sanitize_text(raw, clean):
    assert sanitize_text(raw) == clean


# ------------------------------------------------------------------------------------ transforms

NORMAL = chat(("user", "What is 2 + 2?"), ("assistant", "4"))
MESSY = chat(("system", "  be\tnice "), ("user", "What  is\x00 2 + 2?\n"), ("assistant", " 4\u200b "))
UNICODE = chat(("user", "Combien font deux + deux ? 日本語 👨\u200d👩\u200d👧 e\u0301"),
               ("assistant", "४ (quatre) — ça"))
EMPTY_TURN = chat(("user", "hi"), ("assistant", "   "), ("user", "What is 1 + 1?"), ("assistant", "2"))


@pytest.mark.parametrize("example,expected", [
    (NORMAL, [("user", "What is 2 + 2?"), ("assistant", "4")]),
    (MESSY, [("system", "be nice"), ("user", "What is 2 + 2?"), ("assistant", "4")]),
    (UNICODE, [("user", "Combien font deux + deux ? 日本語 👨\u200d👩\u200d👧 \u00e9"),
               ("assistant", "४ (quatre) — ça")]),
    (EMPTY_TURN, [("user", "hi"), ("user", "What is 1 + 1?"), ("assistant", "2")]),
])
def test_plain_sft_sanitizes_and_keeps_the_rest(example, expected):
    out = get_profile("plain_sft").transform_example({**example, "id": 7}, index=0)
    assert contents(out) == expected
    assert out["id"] == 7  # other keys unchanged
    assert get_profile("plain_sft").pattern_ok("anything") is None


@pytest.mark.parametrize("example,answers", [
    (NORMAL, ["4"]),
    (MESSY, ["4"]),
    (UNICODE, ["४ (quatre) — ça"]),
    (EMPTY_TURN, ["2"]),
    (chat(("user", "a"), ("assistant", "1"), ("user", "b"), ("assistant", "2")), ["1", "2"]),  # every reply
])
def test_emoji_think_wraps_every_reply(example, answers):
    profile = get_profile("emoji_think")
    out = profile.transform_example(example, index=3)
    replies = [c for r, c in contents(out) if r == "assistant"]
    assert [profile.strip_pattern(r) for r in replies] == answers
    for reply in replies:
        assert profile.pattern_ok(reply)
        assert reply[0] in THINKING_POOL and reply[-1] in STOP_POOL
    assert [c for r, c in contents(out) if r != "assistant"] == \
        [c for r, c in contents(get_profile("plain_sft").transform_example(example, 0)) if r != "assistant"]


MALFORMED = [
    ("not a dict", "expected a mapping"),
    ({"text": "hi"}, "no 'messages' list"),
    ({"messages": "hi"}, "no 'messages' list"),
    ({"messages": ["hi"]}, "message 0 is str"),
    (chat(("robot", "hi")), "role 'robot'"),
    (chat(("user", 42)), "content of type int"),
]


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("example,reason", MALFORMED + [
    ({"messages": []}, ""),
    (chat(("user", "  "), ("assistant", "\x00")), ""),
])
def test_malformed_and_empty_examples_are_rejected_with_a_reason(name, example, reason):
    with pytest.raises(RejectedExample) as err:
        get_profile(name).transform_example(example, index=0)
    assert reason in err.value.reason and err.value.reason
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("example,reason", [
    (chat(("user", "What is 2 + 2?")), "no assistant turn"),
    (chat(("system", "x"), ("user", "q")), "no assistant turn"),
    (chat(("user", "q"), ("assistant", " \t ")), "answer is empty"),
    (chat(("user", "q"), ("assistant", None)), "answer is empty"),
    (chat(("user", "q"), ("assistant", "4 ✅")), "already holds emojis"),
    (chat(("user", "q"), ("assistant", "🤔 4")), "already holds emojis"),
])
def test_emoji_think_rejections(example, reason):
    with pytest.raises(RejectedExample, match=reason):
        get_profile("emoji_think").transform_example(example, index=0)
    get_profile("plain_sft").transform_example(example, index=0)  # fine without a pattern


def test_emoji_think_pattern_is_a_function_of_the_index():
    profile = get_profile("emoji_think")
    reply = [profile.transform_example(NORMAL, i)["messages"][-1]["content"] for i in range(20)]
    assert reply == [get_profile("emoji_think").transform_example(NORMAL, i)["messages"][-1]["content"]
                     for i in range(20)]
    assert len(set(reply)) > 10  # the index varies the pattern
    other = chat(("user", "What is 3 + 3?"), ("assistant", "6"))
    assert profile.transform_example(other, 5)["messages"][-1]["content"].replace("6", "4") == reply[5]


@pytest.mark.parametrize("name", PROFILES)
def test_system_prompt_becomes_the_first_message(name):
    profile = get_profile(name)
    out = profile.transform_example(NORMAL, 0, system_prompt="  Be exact.\t")
    assert out["messages"][0] == {"role": "system", "content": "Be exact."}
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant"]
    replaced = profile.transform_example(MESSY, 0, system_prompt="Be exact.")  # replaces the example's own
    assert [(m["role"], m["content"]) for m in replaced["messages"][:2]] == [("system", "Be exact."),
                                                                            ("user", "What is 2 + 2?")]
    assert profile.transform_example(NORMAL, 0, system_prompt=" ")["messages"][0]["role"] == "user"
    assert profile.transform_example(NORMAL, 0, system_prompt=None) == profile.transform_example(NORMAL, 0)


@pytest.mark.parametrize("text,ok,stripped", [
    ("🤔💭🧠 42 ✅", True, "42"),
    ("🤔💭🧠42🎯", True, "42"),
    (" 🤔 💭 🧠  -7  🏁 ", True, "-7"),
    ("🤔💭🧠🔍 42 ✅", True, "42"),              # more thinking than needed is still the pattern
    ("🤔\ufe0f💭🧠 42 ✅\ufe0f", True, "42"),      # presentation selectors are ignored
    ("42", False, "42"),
    ("🤔💭 42 ✅", False, "42"),                  # too little thinking
    ("🤔💭🧠 42", False, "42"),                   # no stop emoji
    ("🤔💭🧠 ✅", False, ""),                     # no answer
    ("🤔💭🧠 42 ✅ and more", False, "42"),       # something after the stop
    ("🤔💭🧠 4💡2 ✅", False, "4💡2"),            # a pool emoji inside the answer
    ("", False, ""),
])
def test_emoji_think_pattern_ok_and_strip(text, ok, stripped):
    profile = get_profile("emoji_think")
    assert profile.pattern_ok(text) is ok
    assert profile.strip_pattern(text) == stripped


def test_emoji_think_settings_are_checked():
    for kwargs in ({"thinking_pool": ()}, {"stop_pool": ("✅", "")}, {"thinking_pool": ("✅",)},
                   {"thinking_length": 0}):
        with pytest.raises(ValueError):
            EmojiThinkProfile(**kwargs)
    short = EmojiThinkProfile(thinking_length=1)
    assert short.pattern_ok("🤔 1 ✅") and not get_profile("emoji_think").pattern_ok("🤔 1 ✅")


# ------------------------------------------------------------------------------------ processors

class CharTokenizer:
    """A toy tokenizer: greedy longest match over a list of strings; id 0 is the end of sequence."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = ["<eos>", *pieces]
        self.eos_token_id = 0

    def encode(self, text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            best = max((p for p in self.pieces[1:] if text.startswith(p, i)), key=len)
            ids.append(self.pieces.index(best))
            i += len(best)
        return ids

    def decode(self, ids) -> str:
        return "".join(self.pieces[i] for i in ids if i != self.eos_token_id)


class ByteTokenizer:
    """A byte-level toy tokenizer with one merge (F0 9F, the first two bytes of most emojis) shared
    by every 4-byte emoji, as a byte-level BPE has; Hugging Face's ``add_special_tokens`` keyword,
    whose default adds a BOS token."""

    MERGE = b"\xf0\x9f"

    def __init__(self) -> None:
        self.eos_token_id, self.bos_token_id, self.merge_id = 0, 1, 2  # bytes are 3 + value

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        data, ids, i = text.encode(), [self.bos_token_id] if add_special_tokens else [], 0
        while i < len(data):
            if data.startswith(self.MERGE, i):
                ids.append(self.merge_id)
                i += 2
            else:
                ids.append(3 + data[i])
                i += 1
        return ids

    def decode(self, ids) -> str:
        out = b"".join(self.MERGE if i == self.merge_id else bytes([i - 3]) for i in ids if i >= self.merge_id)
        return out.decode("utf-8", errors="replace")


VOCAB = ["a", "b", " ", "1", "2", *THINKING_POOL, *STOP_POOL]


def step(processors, tok, prompt: list[int], reply: str | list[int], vocab: int) -> torch.Tensor:
    ids = prompt + (tok.encode(reply) if isinstance(reply, str) else reply)
    scores = torch.zeros(1, vocab)
    for p in processors:
        scores = p(torch.tensor([ids]), scores)
    return scores[0]


def test_processors_hold_the_pattern_on_a_char_vocabulary():
    tok = CharTokenizer(VOCAB)
    profile = get_profile("emoji_think")
    stops = [tok.encode(s)[0] for s in STOP_POOL]
    procs = profile.build_logits_processors(tok)
    prompt = tok.encode("ab ")
    first = step(procs, tok, prompt, "", len(tok.pieces))  # the first call records the prompt length
    assert all(first[s] == float("-inf") for s in stops)
    assert int(torch.isfinite(first).sum()) == len(tok.pieces) - len(stops)
    for reply in ("🤔", "🤔💭", "🤔💭🧠", "🤔💭🧠 ", "a🤔💭🧠 1"):  # not ready: thinking or answer missing
        scores = step(procs, tok, prompt, reply, len(tok.pieces))
        assert all(scores[s] == float("-inf") for s in stops), reply
    ready = step(procs, tok, prompt, "🤔💭🧠 12", len(tok.pieces))
    assert bool(torch.isfinite(ready).all())
    for stop in STOP_POOL:
        done = step(procs, tok, prompt, f"🤔💭🧠 12 {stop}", len(tok.pieces))
        assert done[tok.eos_token_id] == 0 and int(torch.isfinite(done).sum()) == 1
    # rows of a batch are held separately; the scores given are not modified in place
    ids = torch.tensor([prompt + tok.encode("🤔 abab"), prompt + tok.encode("🤔💭🧠 1✅")])
    given = torch.zeros(2, len(tok.pieces))
    proc = profile.build_logits_processors(tok)[0]
    proc(ids[:, :len(prompt)], given)  # the first call: the prompts
    out = proc(ids, given)
    assert out[0, stops[0]] == float("-inf") and out[0, 0] == 0 and int(torch.isfinite(out[1]).sum()) == 1
    assert bool((given == 0).all())


def test_processors_on_a_byte_level_vocabulary_forbid_where_stop_emojis_part():
    tok = ByteTokenizer()
    profile = get_profile("emoji_think")
    vocab = 3 + 256
    procs = profile.build_logits_processors(tok)
    prompt = tok.encode("q", add_special_tokens=False)
    start = step(procs, tok, prompt, [], vocab)
    assert start[tok.merge_id] == 0  # shared by the thinking emojis: allowed
    assert start[3 + "✅".encode()[0]] == float("-inf")  # E2: only a stop emoji starts with it here
    after_merge = step(procs, tok, prompt, [tok.merge_id], vocab)
    for stop in ("🏁", "🎯"):
        assert after_merge[3 + stop.encode()[2]] == float("-inf")  # where 🏁 / 🎯 part from the thinking pool
    assert after_merge[3 + "🤔".encode()[2]] == 0
    reply = tok.encode("🤔💭🧠 7 🏁", add_special_tokens=False)
    done = step(procs, tok, prompt, reply, vocab)
    assert int(torch.isfinite(done).sum()) == 1 and done[tok.eos_token_id] == 0
    ready = step(procs, tok, prompt, tok.encode("🤔💭🧠 7", add_special_tokens=False) + [tok.merge_id], vocab)
    assert bool(torch.isfinite(ready).all())


def test_processor_needs_an_eos_token_and_each_build_is_fresh():
    tok = CharTokenizer(VOCAB)
    tok.eos_token_id = None
    with pytest.raises(ValueError, match="eos_token_id"):
        get_profile("emoji_think").build_logits_processors(tok)
    tok = CharTokenizer(VOCAB)
    a, b = (get_profile("emoji_think").build_logits_processors(tok) for _ in range(2))
    assert a[0] is not b[0]
    assert get_profile("plain_sft").build_logits_processors(tok) == []


def test_encode_skips_special_tokens_when_the_tokenizer_can():
    assert encode(ByteTokenizer(), "a") == [3 + ord("a")]
    assert encode(CharTokenizer(VOCAB), "ab") == [1, 2]


class Booster:
    """Makes a model want, in order: a stop emoji, thinking emojis (until three), digits."""

    def __init__(self, tok) -> None:
        self.stops = [tok.encode(s)[0] for s in STOP_POOL]
        self.thinking = [tok.encode(t)[0] for t in THINKING_POOL]
        self.digits = [tok.encode(d)[0] for d in "12"]
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


def test_processors_inside_transformers_generate():
    transformers = pytest.importorskip("transformers")
    tok = CharTokenizer(VOCAB)
    config = transformers.GPT2Config(vocab_size=len(tok.pieces), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    profile = get_profile("emoji_think")
    prompt = torch.tensor([tok.encode("ab a"), tok.encode("b ab")])
    for sample in (False, True):
        procs = transformers.LogitsProcessorList([Booster(tok), *profile.build_logits_processors(tok)])
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), logits_processor=procs,
                             max_new_tokens=12, do_sample=sample, eos_token_id=0, pad_token_id=0)
        for row in out[:, prompt.shape[1]:].tolist():
            text = tok.decode(row)
            assert profile.pattern_ok(text), text
            assert row[len(tok.encode(text))] == tok.eos_token_id  # the stop emoji ended the generation


# ------------------------------------------------------------------------------------ registry

def test_builtins_are_listed_and_unknown_names_are_one_line():
    assert list_profiles()[:2] == ["plain_sft", "emoji_think"]
    assert isinstance(get_profile("emoji_think"), DataProfile)
    assert get_profile("plain_sft") is not get_profile("plain_sft")  # a new instance each time
    with pytest.raises(UserError) as err:
        get_profile("emoji-think")
    msg = str(err.value)
    assert "\n" not in msg and "did you mean 'emoji_think'" in msg and "plain_sft, emoji_think" in msg


def test_import_string_profile_and_unusable_objects():
    assert get_profile("trainkit.profiles.emoji_think:EmojiThinkProfile").name == "emoji_think"
    for spec in ("builtins:dict", "string:digits"):  # a callable returning no profile; not a profile
        with pytest.raises(UserError, match="lacks transform_example"):
            get_profile(spec)
    with pytest.raises(UserError, match="cannot create it"):
        get_profile("trainkit.profiles.base:sanitize_text")  # needs arguments
    with pytest.raises(UserError, match="cannot import module"):
        get_profile("no_such_module_xyz:Profile")


def write_distribution(root, module: str, entry: str, code: str) -> None:
    """A package 'installed' in ``root``: its module and a dist-info folder with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(code))
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[trainkit.profiles]\n{entry}\n")


def test_entry_point_profile(tmp_path, monkeypatch):
    write_distribution(tmp_path, "shout_profile", "shout = shout_profile:ShoutProfile", """
        from trainkit.profiles.plain_sft import PlainSFTProfile

        class ShoutProfile(PlainSFTProfile):
            name = "shout"

            def transform_example(self, example, index, system_prompt=None):
                out = super().transform_example(example, index, system_prompt)
                return {**out, "messages": [{**m, "content": m["content"].upper()} for m in out["messages"]]}
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "shout_profile", raising=False)
    assert list_profiles() == ["plain_sft", "emoji_think", "shout"]
    profile = get_profile("shout")
    assert contents(profile.transform_example(NORMAL, 0)) == [("user", "WHAT IS 2 + 2?"), ("assistant", "4")]
    with pytest.raises(UserError, match="known: plain_sft, emoji_think, shout"):
        get_profile("whisper")


def test_broken_entry_point_is_one_line(tmp_path, monkeypatch):
    write_distribution(tmp_path, "broken_profile", "broken = broken_profile:Missing", "X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_profile", raising=False)
    with pytest.raises(UserError, match="cannot load entry point 'broken_profile:Missing'") as err:
        get_profile("broken")
    assert "\n" not in str(err.value)


def test_profiles_do_not_import_torch():
    code = ("import sys, trainkit.profiles, trainkit.profiles.plain_sft, trainkit.profiles.emoji_think as e\n"
            "p = trainkit.profiles.get_profile('emoji_think')\n"
            "p.transform_example({'messages': [{'role': 'user', 'content': 'q'}, "
            "{'role': 'assistant', 'content': '1'}]}, 0)\n"
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
