"""Buffers, calls, check data and rank agreement for the collectives benchmark.

Check data: rank r holds f(r, i) = (i mod 13) + r + 1 at element i of what it sends, so every
expected value is a small integer known in closed form (module docs of collectives.py):
    all_reduce       out[i]           = n (i mod 13) + n(n+1)/2
    all_gather       out[q c + j]     = (j mod 13) + q + 1                  (c = count / n)
    reduce_scatter   out[j] on rank r = n ((r c + j) mod 13) + n(n+1)/2
    all_to_all       out[q c + j]     = ((r c + j) mod 13) + q + 1
    broadcast        buf[i]           = (i mod 13) + 1                      (root 0)
    send_recv        recv[i]          = (i mod 13) + prev + 1               (prev = rank - 1 mod n)
Patterns are written and compared in chunks so the check needs at most CHUNK extra elements.
"""

from __future__ import annotations

from typing import Callable

import torch

from aifbench.benchmarks._shared import torch_dtype
from aifbench.benchmarks.configs import COLLECTIVE_DTYPES as DTYPES  # noqa: F401 (ops.DTYPES)
from aifbench.benchmarks.configs import COLLECTIVE_OPS as OPS  # noqa: F401 (ops.OPS)

PERIOD = 13
CHUNK = 1 << 24  # elements per pattern chunk (64 MiB in fp32)
_CHUNKED = ("all_gather", "reduce_scatter", "all_to_all")




def element_count(op: str, size_bytes: int, n: int, dtype: torch.dtype) -> int:
    """Elements of the message S: whole elements, a multiple of n where the op splits by rank."""
    count = size_bytes // dtype.itemsize
    if op in _CHUNKED:
        return max(n, count // n * n)
    return max(1, count)


def memory_factor(op: str, n: int) -> float:
    """Buffer bytes per rank in units of S."""
    return {"all_reduce": 1.0, "broadcast": 1.0, "all_gather": 1 + 1 / n, "reduce_scatter": 1 + 1 / n,
            "all_to_all": 2.0, "send_recv": 2.0}[op]


# --- rank agreement -----------------------------------------------------------------------------

def ranks_flagging(flag: bool, ctx) -> list[int]:
    """Ranks whose `flag` is set, known to every rank (one all_reduce of an n-vector). Before the
    run (no process group yet, `aifbench run --dry-run`) only this rank's flag is known."""
    import torch.distributed as dist

    if not ctx.distributed or not dist.is_initialized():
        return [ctx.rank] if flag else []
    t = torch.zeros(ctx.world_size, dtype=torch.float32, device=ctx.device)
    t[ctx.rank] = 1.0 if flag else 0.0
    dist.all_reduce(t)
    return [i for i, v in enumerate(t.tolist()) if v > 0]


def gather_floats(value: float, ctx) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    out = [torch.empty_like(t) for _ in range(ctx.world_size)]
    dist.all_gather(out, t)
    return [float(x.item()) for x in out]


def gather_hostnames(name: str) -> list[str]:
    import torch.distributed as dist

    out: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(out, name)
    return [str(x) for x in out]


def barrier(ctx) -> None:
    import torch.distributed as dist

    if ctx.is_cuda:
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


# --- buffers and calls ----------------------------------------------------------------------------

def allocate(op: str, count: int, dtype: str, ctx) -> dict[str, torch.Tensor]:
    n, dt, dev = ctx.world_size, torch_dtype(dtype), ctx.device
    c = count // n
    shapes = {"all_reduce": {"buf": count}, "broadcast": {"buf": count},
              "all_gather": {"inp": c, "out": count}, "reduce_scatter": {"inp": count, "out": c},
              "all_to_all": {"inp": count, "out": count}, "send_recv": {"send": count, "recv": count}}[op]
    return {name: torch.empty(size, dtype=dt, device=dev) for name, size in shapes.items()}


def _first(*names: str) -> Callable:
    """The first torch.distributed function of these names (newer torch renames some)."""
    import torch.distributed as dist

    for name in names:
        fn = getattr(dist, name, None)
        if fn is not None:
            return fn
    raise AttributeError(f"torch.distributed has none of {names}")


def make_call(op: str, bufs: dict[str, torch.Tensor], ctx) -> Callable[[], object]:
    """The collective as a no-argument call (synchronous for the host on gloo, stream-ordered on NCCL)."""
    import torch.distributed as dist

    if op == "all_reduce":
        return lambda: dist.all_reduce(bufs["buf"])
    if op == "broadcast":
        return lambda: dist.broadcast(bufs["buf"], src=0)
    if op == "all_gather":
        fn = _first("all_gather_single", "all_gather_into_tensor")
        return lambda: fn(bufs["out"], bufs["inp"])
    if op == "reduce_scatter":
        fn = _first("reduce_scatter_single", "reduce_scatter_tensor")
        return lambda: fn(bufs["out"], bufs["inp"])
    if op == "all_to_all":
        return lambda: dist.all_to_all_single(bufs["out"], bufs["inp"])
    nxt, prev = (ctx.rank + 1) % ctx.world_size, (ctx.rank - 1) % ctx.world_size

    def send_recv() -> None:
        works = dist.batch_isend_irecv([dist.P2POp(dist.isend, bufs["send"], nxt),
                                        dist.P2POp(dist.irecv, bufs["recv"], prev)])
        for w in works:
            w.wait()
    return send_recv


# --- check data -------------------------------------------------------------------------------------

def periodic(length: int, offset: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """((offset + i) mod 13) for i < length, exact in any float dtype."""
    base = torch.roll(torch.arange(PERIOD, dtype=dtype, device=device), -(offset % PERIOD))
    return base.repeat(length // PERIOD + 1)[:length]


def _write(t: torch.Tensor, offset: int, add: float) -> None:
    for start in range(0, t.numel(), CHUNK):
        part = t[start:start + CHUNK]
        part.copy_(periodic(part.numel(), offset + start, t.dtype, str(t.device)) + add)


def fill_for_check(op: str, bufs: dict[str, torch.Tensor], ctx) -> None:
    r = ctx.rank
    for name, t in bufs.items():
        if name in ("out", "recv") or (op == "broadcast" and r != 0):
            t.zero_()
        else:
            _write(t, 0, r + 1)


def fill_for_timing(op: str, bufs: dict[str, torch.Tensor]) -> None:
    if op == "all_reduce":  # repeated in-place sums of the check data would overflow fp16/bf16
        bufs["buf"].zero_()


def expectations(op: str, bufs: dict[str, torch.Tensor], ctx) -> list[tuple[torch.Tensor, int, float, float]]:
    """(segment, pattern offset, scale, add): segment should equal periodic(offset) * scale + add."""
    n, r = ctx.world_size, ctx.rank
    tri = n * (n + 1) / 2
    if op == "all_reduce":
        return [(bufs["buf"], 0, n, tri)]
    if op == "broadcast":
        return [(bufs["buf"], 0, 1, 1)]
    if op == "send_recv":
        return [(bufs["recv"], 0, 1, (r - 1) % n + 1)]
    out = bufs["out"]
    if op == "reduce_scatter":
        return [(out, r * out.numel(), n, tri)]
    c = out.numel() // n
    if op == "all_gather":
        return [(out[q * c:(q + 1) * c], 0, 1, q + 1) for q in range(n)]
    return [(out[q * c:(q + 1) * c], r * c, 1, q + 1) for q in range(n)]  # all_to_all


def verify(op: str, bufs: dict[str, torch.Tensor], dtype: str, ctx) -> str | None:
    """None when every received/reduced element is right, else what is wrong (first mismatch)."""
    if ctx.is_cuda:
        torch.cuda.synchronize(ctx.device)
    rtol = 0.0 if dtype == "fp32" else ctx.world_size * torch.finfo(torch_dtype(dtype)).eps
    for seg, offset, scale, add in expectations(op, bufs, ctx):
        for start in range(0, seg.numel(), CHUNK):
            got = seg[start:start + CHUNK].float()
            want = periodic(got.numel(), offset + start, torch.float32, str(got.device)) * scale + add
            bad = (got - want).abs() > rtol * want.abs()
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                return f"element {start + i} is {got[i].item()}, expected {want[i].item()}"
    return None
