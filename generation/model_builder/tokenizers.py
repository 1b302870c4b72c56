"""CLIP tokenizers for the random-weight folders: a byte-level BPE vocabulary, written offline.

Written in the original vocab.json/merges.txt format that SDXL's repository holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


# A few merges so the BPE path runs, not just single characters.
_MERGES = ["t h", "th e</w>", "o n", "a n", "i n", "e r", "p h", "o t", "e n", "a r"]


def write_tokenizer(target: Path, *, pad_token: str) -> Any:
    """Write vocab.json, merges.txt, special_tokens_map.json and tokenizer_config.json as in SDXL's repo."""
    from transformers import CLIPTokenizer

    target.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    for merge in _MERGES:
        merged = merge.replace(" ", "")
        if merged not in tokens:
            tokens.append(merged)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (target / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}, ensure_ascii=False))
    (target / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    (target / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {
        **special,
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
    }
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return CLIPTokenizer.from_pretrained(target)


def check_tokenizer_loads(folder: Path, tokenizer_class: Any) -> None:
    tokenizer = tokenizer_class.from_pretrained(folder)
    ids = tokenizer("a photo of the person").input_ids
    if ids[0] != tokenizer.bos_token_id or ids[-1] != tokenizer.eos_token_id:
        raise RuntimeError(f"tokenizer written to {folder} does not round-trip")
