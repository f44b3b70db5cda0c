"""The training loop every family shares: budgets, schedule, early stopping, checkpoints.

Why one loop: the stopping rules (steps, wall-clock minutes, a held-out proxy), the learning-rate
schedule, AMP, progress callbacks and checkpoint/resume are product behaviour, not modelling, and
must act the same whatever the family. A family supplies only ``step_fn`` (one optimisation step's
loss) and ``eval_fn`` (a cheap distance between generated and held-out rows).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pfcore.errors import ModelError
from pfcore.models.progress import Progress, ProgressCallback

__all__ = [
    "LoopSpec",
    "SlicedDistance",
    "Checkpointer",
    "amp_enabled",
    "autocast",
    "cpu_has_bf16_matmul",
    "available_cores",
    "data_fingerprint",
    "resume_key",
    "resolve_device",
    "thread_scope",
    "train_loop",
]


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` -> CUDA when present else CPU; an explicit CUDA request without CUDA fails."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"config.device={spec!r} but CUDA is not available; use 'auto' or 'cpu'")
    return dev


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Half the cores we own (at least 1, at most 8) when the config does not say.

    Measured on a 2-core machine with one other busy process (e.g. the Prefect server beside a
    flow run): with 2 threads a 512x256 matmul took 13.5 ms and an elementwise sqrt 8 ms, against
    0.7 ms and 0.03 ms with 1 thread — OpenMP threads spin-waiting for a descheduled sibling. A
    training step went from ~15 ms to ~500 ms and time-budgeted runs stopped after 90 steps.
    These MLPs gain little from more threads, so leaving cores to the rest of the pipeline
    costs little when the machine is idle and avoids the cliff when it is not.
    """
    return max(1, min(8, available_cores() // 2))


@contextlib.contextmanager
def thread_scope(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op threads for the duration, then restore.

    Oversubscribed threads slowed a training step 35x (14 ms to 490 ms) on a shared 2-core
    machine, so the count is always set explicitly: the config's value or the cores we own.
    """
    before = torch.get_num_threads()
    n = threads if threads is not None else default_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX tiles).

    Why it decides: on a CPU with AMX one training step of a 3-layer 384-wide MLP on a 1,024-row
    batch took 7.6 ms under bf16 autocast against 21.3 ms in fp32 (one thread; 512-wide: 12.2
    against 36.7 ms), so a time-budgeted fit trains about three times as many steps. Where bf16 is
    not native it is converted in software, and earlier CPUs ran bf16 slower than fp32.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # noqa: BLE001 - a private probe; no answer means no fast path
        return False


def amp_enabled(amp: bool, device: torch.device) -> bool:
    """Whether training and pair generation run under bf16 autocast: the config's ``amp`` on
    CUDA, and on a CPU only where :func:`cpu_has_bf16_matmul` (elsewhere it is slower). Sampling
    for users stays fp32 either way, so rows do not depend on the machine's matrix units."""
    if not amp:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_bf16_matmul()


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast when ``enabled`` (decided by :func:`amp_enabled`), else a no-op."""
    if enabled and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# Settings that change how long or where a run goes, not what it computes: a resumed run may
# change them (e.g. a larger max_minutes after a time-budget stop).
_RUN_ONLY = ("device", "threads", "amp", "max_minutes", "log_every", "checkpoint_every")


def resume_key(config: Any, *arrays: torch.Tensor | None) -> str:
    """Checkpoint identity: the training-relevant config plus the data's fingerprint."""
    cfg = {k: v for k, v in sorted(config.to_dict().items()) if k not in _RUN_ONLY}
    return f"{data_fingerprint(*arrays)}:{json.dumps(cfg, sort_keys=True, default=str)}"


def data_fingerprint(*arrays: torch.Tensor | None) -> str:
    """Short hash of the training data, so a checkpoint is never resumed on other data."""
    h = hashlib.blake2b(digest_size=12)
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        arr = a.detach().to("cpu").contiguous().numpy()
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class SlicedDistance:
    """Sliced Wasserstein-1 distance from generated rows to a fixed reference sample.

    The early-stopping proxy: cheap (one matmul and a sort), sensitive to every marginal (the
    axis directions) and to dependencies (random directions), and deterministic given the seed.
    Generated rows are snapped like ``push`` output, so categorical frequencies count too.
    """

    def __init__(
        self, reference: torch.Tensor, *, n: int, n_random: int = 64, seed: int = 0
    ) -> None:
        gen = torch.Generator().manual_seed(seed + 7919)
        d = reference.shape[1]
        if len(reference) > n:
            idx = torch.randperm(len(reference), generator=gen)[:n]
            reference = reference[idx.to(reference.device)]
        self.n = len(reference)
        rand = torch.randn(d, n_random, generator=gen)
        rand = rand / rand.norm(dim=0, keepdim=True)
        self.proj = torch.cat([torch.eye(d), rand], dim=1).to(reference.device)
        self.ref_sorted = (reference.float() @ self.proj).sort(dim=0).values

    def __call__(self, generated: torch.Tensor) -> float:
        if len(generated) != self.n:
            raise ModelError(f"proxy needs {self.n} generated rows, got {len(generated)}")
        gen_sorted = (generated.float() @ self.proj).sort(dim=0).values
        return float((gen_sorted - self.ref_sorted).abs().mean())


class Checkpointer:
    """Periodic training state in ``directory/<phase>.pt`` (tensors and plain values only).

    Saved with ``torch.save`` and read back with ``weights_only=True``, so loading a checkpoint
    cannot execute code. A checkpoint carries a key (config + data fingerprint); a mismatch is
    ignored rather than resumed, so changing the config or data restarts cleanly.
    """

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = Path(directory)
        self.key = key
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, phase: str) -> Path:
        return self.directory / f"{phase}.pt"

    def save(self, phase: str, state: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{phase}.", dir=self.directory)
        os.close(fd)
        try:
            torch.save({"key": self.key, **state}, tmp)
            os.replace(tmp, self.path(phase))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, phase: str) -> dict[str, Any] | None:
        p = self.path(phase)
        if not p.exists():
            return None
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file: start over rather than fail the run
            return None
        if state.get("key") != self.key:
            return None
        return state


@dataclass
class LoopSpec:
    """Stopping rules and schedule for one training phase."""

    phase: str
    max_steps: int
    budget_s: float  # wall-clock seconds this phase may use
    lr: float
    warmup_steps: int = 100
    final_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 250
    patience: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    # Keep the final weights unless their proxy is worse than the best by more than this
    # fraction: the proxy is noisy (2k rows), and an early "best" is usually undertrained.
    select_tolerance: float = 0.1
    ema_decay: float = 0.0  # 0 = the raw weights; else their Polyak average (ModelConfig)

    @classmethod
    def for_phase(
        cls, cfg: Any, *, phase: str, max_steps: int, budget_s: float, lr: float
    ) -> LoopSpec:
        """A phase's spec: its own steps, budget and rate; the shared rules from the config."""
        return cls(
            phase=phase,
            max_steps=max_steps,
            budget_s=budget_s,
            lr=lr,
            warmup_steps=cfg.warmup_steps,
            grad_clip=cfg.grad_clip,
            eval_every=cfg.eval_every,
            patience=cfg.patience,
            log_every=cfg.log_every,
            checkpoint_every=cfg.checkpoint_every,
            ema_decay=cfg.ema_decay,
        )


class WeightAverage:
    """Polyak (exponential moving) average of a phase's parameters.

    Why: the raw weights at any step carry the last minibatches' noise; their average is a
    smoother map from noise to rows. It is what the held-out proxy scores, what the loop keeps,
    and so what is saved and sampled. ``swap`` exchanges raw and averaged values in place (a
    pointer swap per tensor), so the optimiser and its state never see the average.
    """

    def __init__(self, params: Sequence[nn.Parameter], decay: float) -> None:
        self.params = list(params)
        self.decay = decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold the weights after ``step`` optimiser steps in; short runs ramp the decay up."""
        weight = 1.0 - min(self.decay, (1.0 + step) / (10.0 + step))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p.detach(), weight)

    def swap(self) -> None:
        for i, p in enumerate(self.params):
            raw = p.data
            p.data = self.shadow[i]
            self.shadow[i] = raw

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the modules for the duration of the block."""
        self.swap()
        try:
            yield
        finally:
            self.swap()


def _lr_factor(progress: float, step: int, warmup: int, final: float) -> float:
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    cos = final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return warm * cos


def train_loop(
    *,
    spec: LoopSpec,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], torch.Tensor],
    eval_fn: Callable[[], float] | None,
    generator: torch.Generator,
    callbacks: Sequence[ProgressCallback] = (),
    checkpointer: Checkpointer | None = None,
) -> dict[str, Any]:
    """Run one phase; on return the modules hold the best evaluated weights.

    The learning rate follows warm-up then cosine decay over ``progress = max(step / max_steps,
    elapsed / budget)``: when the step limit binds (an idle or GPU machine) the run is exactly
    reproducible; when the time budget binds (a busy CPU) the schedule still anneals before the
    deadline instead of stopping at a high learning rate.
    """
    params = [p for m in modules.values() for p in m.parameters()]
    average = WeightAverage(params, spec.ema_decay) if spec.ema_decay > 0 else None

    def averaged() -> contextlib.AbstractContextManager[None]:
        return average.applied() if average is not None else contextlib.nullcontext()

    step, elapsed_before = 0, 0.0
    best_score, best_step, bad_evals = math.inf, -1, 0
    best_state: dict[str, dict[str, torch.Tensor]] | None = None
    history: list[dict[str, float]] = []
    resumed_from = None

    if checkpointer is not None:
        state = checkpointer.load(spec.phase)
        if state is not None:
            for name, m in modules.items():
                m.load_state_dict(state["modules"][name])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])  # a CPU byte tensor for every device
            step = int(state["step"])
            elapsed_before = float(state["elapsed_s"])
            best_score = float(state["best_score"])
            best_step = int(state["best_step"])
            bad_evals = int(state["bad_evals"])
            best_state = state.get("best_state") or None
            history = list(state.get("history", []))
            if average is not None and state.get("average"):
                saved = zip(state["average"], params, strict=True)
                average.shadow = [t.to(p.device) for t, p in saved]
            resumed_from = step
            if state.get("done"):
                _load_best(modules, best_state)
                return dict(state["summary"], resumed_from=resumed_from)

    def snapshot() -> dict[str, dict[str, torch.Tensor]]:
        return {
            n: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for n, m in modules.items()
        }

    def save_ckpt(done: bool = False, summary: dict[str, Any] | None = None) -> None:
        if checkpointer is None:
            return
        checkpointer.save(
            spec.phase,
            {
                "modules": {n: m.state_dict() for n, m in modules.items()},
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state().cpu(),
                "step": step,
                "elapsed_s": elapsed_before + (time.perf_counter() - t0),
                "best_score": best_score,
                "best_step": best_step,
                "bad_evals": bad_evals,
                "best_state": best_state or {},
                "history": history,
                "average": average.shadow if average is not None and not done else [],
                "done": done,
                "summary": summary or {},
            },
        )

    t0 = time.perf_counter()
    stop_reason = "max_steps"
    loss_ema: float | None = None
    for m in modules.values():
        m.train()
    while step < spec.max_steps:
        elapsed = elapsed_before + (time.perf_counter() - t0)
        if elapsed >= spec.budget_s:
            stop_reason = "time_budget"
            break
        progress = step / spec.max_steps
        if elapsed / spec.budget_s > progress + 0.02:  # margin: step-bound runs stay exact
            progress = elapsed / spec.budget_s
        factor = _lr_factor(progress, step, spec.warmup_steps, spec.final_lr_fraction)
        for group in optimizer.param_groups:  # a group may scale the schedule ("lr_scale")
            group["lr"] = spec.lr * factor * group.get("lr_scale", 1.0)
        loss = step_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if spec.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
        optimizer.step()
        step += 1
        if average is not None:
            average.update(step)
        loss_val = float(loss.detach())
        if not math.isfinite(loss_val):
            raise ModelError(
                f"{spec.phase}: training diverged (loss {loss_val}) at step {step}; lower config.lr"
            )
        loss_ema = loss_val if loss_ema is None else 0.95 * loss_ema + 0.05 * loss_val
        metrics: dict[str, float] = {}
        stop_early = False
        if eval_fn is not None and (step % spec.eval_every == 0 or step == spec.max_steps):
            for m in modules.values():
                m.eval()
            with averaged():
                score = eval_fn()
                improved = score < best_score
                if improved:
                    best_state = snapshot()
            for m in modules.values():
                m.train()
            metrics["proxy"] = score
            history.append({"step": step, "proxy": score, "loss": loss_ema})
            if improved:
                best_score, best_step, bad_evals = score, step, 0
            else:
                bad_evals += 1
                if spec.patience and bad_evals >= spec.patience:
                    stop_early = True
        if checkpointer is not None and step % spec.checkpoint_every == 0:
            save_ckpt()
        if step % spec.log_every == 0 or metrics or step == spec.max_steps:
            elapsed = elapsed_before + (time.perf_counter() - t0)
            report = Progress(spec.phase, step, spec.max_steps, elapsed, float(loss_ema), metrics)
            for cb in callbacks:
                cb(report)
        if stop_early:
            stop_reason = "early_stopping"
            break

    # A final evaluation so a time-stopped run still compares its last weights with the best.
    if eval_fn is not None and (not history or history[-1]["step"] != step):
        for m in modules.values():
            m.eval()
        with averaged():
            score = eval_fn()
            if score < best_score:
                best_score, best_step, best_state = score, step, snapshot()
        history.append({"step": step, "proxy": score, "loss": float(loss_ema or 0.0)})
    final_proxy = history[-1]["proxy"] if history else math.inf
    kept_step = best_step
    if stop_reason != "early_stopping" and final_proxy <= best_score * (1 + spec.select_tolerance):
        kept_step, best_state = step, None  # the annealed final weights: keep them
    if average is not None:
        average.swap()  # the final weights are the average (what the proxy scored)
    _load_best(modules, best_state)
    for m in modules.values():
        m.eval()
    elapsed = elapsed_before + (time.perf_counter() - t0)
    summary = {
        "phase": spec.phase,
        "steps": step,
        "max_steps": spec.max_steps,
        "seconds": round(elapsed, 3),
        "stop_reason": stop_reason,
        "best_step": best_step,
        "best_proxy": None if not math.isfinite(best_score) else round(best_score, 6),
        "final_proxy": None if not math.isfinite(final_proxy) else round(final_proxy, 6),
        "kept_step": kept_step,
        "final_loss": None if loss_ema is None else round(float(loss_ema), 6),
        "history": history[-50:],
    }
    if resumed_from is not None:
        summary["resumed_from"] = resumed_from
    save_ckpt(done=True, summary=summary)
    return summary


def _load_best(
    modules: dict[str, nn.Module], best: dict[str, dict[str, torch.Tensor]] | None
) -> None:
    if best:
        for name, m in modules.items():
            m.load_state_dict(best[name])


def batch_index(
    n: int, batch: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Uniform minibatch indices drawn from the run's own generator (reproducible, resumable)."""
    return torch.randint(0, n, (batch,), generator=generator, device=device)


def seeded_generator(seed: int, device: torch.device, salt: int) -> torch.Generator:
    """A generator on ``device`` seeded from (seed, salt): one independent stream per phase."""
    mixed = int(np.random.SeedSequence([seed, salt]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(mixed)
