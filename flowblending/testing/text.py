"""The offline T5 tokenizer and the tiny text-encoder config shared by the tiny pairs and the demo pair."""

from __future__ import annotations

from typing import Any

TEXT_DIM = 32
"""Text encoder width; the transformers' ``text_dim`` / ``caption_channels`` must equal it."""

# Whole-word pieces; any other ASCII word is spelled from the single-character pieces.
_WORDS_TEXT = (
    "a an the and or of in on at to from with without into over under near by for is are "
    "while as its their his her one two three four many some few small large big little tall "
    "long short old young new red orange yellow green blue purple pink white black gray grey brown "
    "golden silver bright dark light soft slow fast quiet loud warm cold wet dry happy sad calm "
    "cat cats dog dogs bird birds fish horse cow fox bear lion tiger monkey rabbit deer wolf owl "
    "man woman men women child children boy girl person people player dancer chef "
    "car cars bus train boat ship plane bike bicycle road street city town village house "
    "building bridge tower room kitchen window door table chair cup book ball kite "
    "tree trees forest flower flowers grass field garden park mountain mountains hill river lake "
    "sea ocean beach wave waves water rain snow sky cloud clouds sun moon star stars night day "
    "morning evening sunset sunrise fire smoke light shadow wind storm "
    "walks walking runs running jumps jumping flies flying swims swimming dances dancing "
    "plays playing sits sitting stands standing rolls rolling falls falling moves moving "
    "drives driving rides riding eats eating looks looking turns turning spins spinning "
    "camera view close up shot slow motion video scene background foreground "
    "blurry low quality static noise distorted worst"
)
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()[]/&%+=*#@_"


def tiny_umt5_config(vocab_size: int, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of the tiny ``UMT5Config`` (or ``T5Config``: same fields), updated with ``overrides``."""
    return {
        "vocab_size": vocab_size,
        "d_model": TEXT_DIM,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 1,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "relative_attention_max_distance": 32,
        "dropout_rate": 0.0,
        "feed_forward_proj": "gated-gelu",
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        **overrides,
    }


def tiny_tokenizer(model_max_length: int = 512) -> Any:
    """A small T5 (Unigram) tokenizer built offline: common words, ASCII characters, ``<unk>``."""
    from transformers import T5Tokenizer

    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    seen = {piece for piece, _ in vocab}
    for word in _WORDS_TEXT.split():
        piece = "\u2581" + word
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, -4.0))
    for char in _CHARS:
        if char not in seen:
            seen.add(char)
            vocab.append((char, -8.0))
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)
