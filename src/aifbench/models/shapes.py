"""Llama-3 model shapes: the public configurations by name, or read from a local HF config.json.

Named shapes copy the `config.json` files Meta published on the Hugging Face hub (fields
hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
vocab_size, max_position_embeddings, rope_theta, rope_scaling, rms_norm_eps, tie_word_embeddings):
  llama3-1b   meta-llama/Llama-3.2-1B      llama3-3b   meta-llama/Llama-3.2-3B
  llama3-8b   meta-llama/Llama-3.1-8B      llama3-70b  meta-llama/Llama-3.1-70B
  llama3-405b meta-llama/Llama-3.1-405B
8B/70B/405B are the 3.1 releases (131072 positions, llama3 rope scaling factor 8); 405B only
exists as 3.1, and using 3.1 for all three keeps long-context sweeps possible.
No weights are ever read: a shape is only numbers.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from aifbench.errors import ConfigError, one_of


@dataclass(frozen=True, kw_only=True, slots=True)
class RopeScaling:
    """Llama 3 frequency-dependent RoPE scaling (rope_type 'llama3' in HF configs)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True, kw_only=True, slots=True)
class LlamaShape:
    """Architecture numbers of a Llama-3-style decoder (no weights)."""

    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rope_theta: float
    rms_norm_eps: float = 1e-5
    tie_word_embeddings: bool = False
    rope_scaling: RopeScaling | None = None
    source: str = ""
    """where the numbers come from (hub repository or file path)"""

    @property
    def q_dim(self) -> int:
        """width of all query heads together (d_attn in PaLM's FLOP formula)"""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def validate(self) -> "LlamaShape":
        """Raise ConfigError when the numbers cannot describe a working model."""
        for field in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                      "num_kv_heads", "head_dim", "max_position_embeddings"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"shape {self.name}: {field} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"shape {self.name}: num_heads {self.num_heads} does not divide "
                              f"hidden_size {self.hidden_size}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"shape {self.name}: num_kv_heads {self.num_kv_heads} does not divide "
                              f"num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"shape {self.name}: head_dim {self.head_dim} must be even for RoPE")
        if not self.rope_theta > 0 or not self.rms_norm_eps > 0:
            raise ConfigError(f"shape {self.name}: rope_theta and rms_norm_eps must be > 0")
        return self

    def check_positions(self, positions: int, what: str = "sequence length") -> None:
        """ConfigError when `positions` tokens exceed the model's max_position_embeddings."""
        if positions > self.max_position_embeddings:
            raise ConfigError(f"{what} {positions} exceeds {self.name}'s max_position_embeddings "
                              f"{self.max_position_embeddings}")


_HUB = "https://huggingface.co/meta-llama/{}/blob/main/config.json"
_L32 = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
_L31 = RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
_COMMON = dict(vocab_size=128256, num_kv_heads=8, rope_theta=500000.0, rms_norm_eps=1e-5,
               max_position_embeddings=131072)

SHAPES: dict[str, LlamaShape] = {s.name: s for s in (
    # tiny: for CPU tests only; keeps llama3 rope scaling, GQA (2 query heads per KV head) and
    # untied embeddings so every code path of the big shapes runs.
    LlamaShape(name="tiny", vocab_size=256, hidden_size=64, intermediate_size=160, num_layers=2,
               num_heads=4, num_kv_heads=2, head_dim=16, max_position_embeddings=512,
               rope_theta=500000.0, rope_scaling=RopeScaling(factor=8.0, low_freq_factor=1.0,
               high_freq_factor=4.0, original_max_position_embeddings=64), source="aifbench test shape"),
    LlamaShape(name="llama3-1b", hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32,
               head_dim=64, tie_word_embeddings=True, rope_scaling=_L32,
               source=_HUB.format("Llama-3.2-1B"), **_COMMON),
    LlamaShape(name="llama3-3b", hidden_size=3072, intermediate_size=8192, num_layers=28, num_heads=24,
               head_dim=128, tie_word_embeddings=True, rope_scaling=_L32,
               source=_HUB.format("Llama-3.2-3B"), **_COMMON),
    LlamaShape(name="llama3-8b", hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32,
               head_dim=128, rope_scaling=_L31, source=_HUB.format("Llama-3.1-8B"), **_COMMON),
    LlamaShape(name="llama3-70b", hidden_size=8192, intermediate_size=28672, num_layers=80, num_heads=64,
               head_dim=128, rope_scaling=_L31, source=_HUB.format("Llama-3.1-70B"), **_COMMON),
    LlamaShape(name="llama3-405b", hidden_size=16384, intermediate_size=53248, num_layers=126,
               num_heads=128, head_dim=128, rope_scaling=_L31, source=_HUB.format("Llama-3.1-405B"),
               **_COMMON),
)}


@functools.lru_cache(maxsize=64)
def resolve_shape(spec: str) -> LlamaShape:
    """A shape by name (SHAPES) or from a local HF config.json (a file, or a folder holding one).
    Cached per spec (shapes are frozen): a config.json is read once per process."""
    if spec in SHAPES:
        return SHAPES[spec]
    path = Path(spec)
    if spec.strip() and (spec.endswith(".json") or "/" in spec or path.exists()):
        if path.is_dir():
            path = path / "config.json"
        return shape_from_hf_config(path)
    raise one_of("model shape (or a path to a config.json)", spec, SHAPES)


def shape_from_hf_config(path: str | Path) -> LlamaShape:
    """Read a Hugging Face Llama config.json (numbers only, no weights); ConfigError when malformed."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read model config {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return shape_from_dict(raw, name=path.parent.name or path.stem, source=str(path))


_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def shape_from_dict(raw: Mapping[str, Any], *, name: str, source: str) -> LlamaShape:
    """Map HF LlamaConfig fields onto a LlamaShape; errors name the file and the field."""
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ConfigError(f"{source}: missing field(s) {', '.join(missing)}; a Llama config.json needs "
                          f"{', '.join(_REQUIRED)}")
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise ConfigError(f"{source}: hidden_act {act!r} not supported; allowed: silu")
    if isinstance(raw.get("rope_parameters"), dict):  # transformers >= 5 writes RoPE settings here
        rope = raw["rope_parameters"]
        raw = {**raw, "rope_theta": rope.get("rope_theta", raw.get("rope_theta", 10000.0)), "rope_scaling": rope}
    heads = _int(raw, "num_attention_heads", source)
    hidden = _int(raw, "hidden_size", source)
    shape = LlamaShape(
        name=name, source=source,
        vocab_size=_int(raw, "vocab_size", source), hidden_size=hidden,
        intermediate_size=_int(raw, "intermediate_size", source),
        num_layers=_int(raw, "num_hidden_layers", source), num_heads=heads,
        num_kv_heads=_int(raw, "num_key_value_heads", source, default=heads),
        head_dim=_int(raw, "head_dim", source, default=hidden // heads if heads > 0 else 0),
        max_position_embeddings=_int(raw, "max_position_embeddings", source, default=2048),
        rope_theta=_float(raw, "rope_theta", source, 10000.0),
        rms_norm_eps=_float(raw, "rms_norm_eps", source, 1e-6),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        rope_scaling=_rope_scaling(raw.get("rope_scaling"), source),
    )
    return shape.validate()


def _int(raw: Mapping[str, Any], key: str, source: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
    return value


def _float(raw: Mapping[str, Any], key: str, source: str, default: float) -> float:
    value = raw.get(key, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
    return float(value)


def _rope_scaling(raw: Any, source: str) -> RopeScaling | None:
    """None, or Llama 3 scaling; other rope types (linear, dynamic, yarn) are refused."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: rope_scaling must be an object or null, got {raw!r}")
    kind = raw.get("rope_type", raw.get("type"))
    if kind == "default":
        return None
    if kind != "llama3":
        raise ConfigError(f"{source}: rope_scaling type {kind!r} not supported; allowed: llama3, default")
    try:
        s = RopeScaling(factor=float(raw["factor"]), low_freq_factor=float(raw["low_freq_factor"]),
                        high_freq_factor=float(raw["high_freq_factor"]),
                        original_max_position_embeddings=int(raw["original_max_position_embeddings"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: rope_scaling llama3 needs factor, low_freq_factor, high_freq_factor, "
                          f"original_max_position_embeddings ({exc})") from None
    if not s.factor >= 1:
        raise ConfigError(f"{source}: rope_scaling factor must be >= 1, got {s.factor:g}")
    if not 0 < s.low_freq_factor < s.high_freq_factor or s.original_max_position_embeddings < 1:
        raise ConfigError(f"{source}: rope_scaling needs 0 < low_freq_factor < high_freq_factor and "
                          f"original_max_position_embeddings >= 1, got {s}")
    return s


def with_layers(shape: LlamaShape, num_layers: int) -> LlamaShape:
    """The same shape with a different depth (quick runs of a big shape's layer)."""
    return replace(shape, name=f"{shape.name}-L{num_layers}", num_layers=num_layers)
