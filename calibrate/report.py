"""The calibration report (issue 3, part 6): PNG plots of the three curves, side-by-side sample GIFs, report.md.

Plots follow the paper: the DINO-similarity curve of the early sweep with the chosen point (sec 4.2, Fig. 4,
App. B Fig. A2), the FID V-curve of the late sweep (sec 4.3, Fig. 5) and the velocity-divergence U-curve with
every boundary marked (sec 5.1, Fig. 6). ``report.md`` embeds them with relative links and tabulates the numbers;
when the premise check failed it says so first ("the premise is checked, not assumed").

matplotlib is an optional dependency (extra ``[calibrate]``) and is imported only when a report is written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = 'pip install "flowblending[calibrate]"'

# Samples are upscaled (nearest neighbour, integer factor) to at least this height so tiny videos are visible.
MIN_SAMPLE_HEIGHT = 128
SAMPLE_GAP = 2  # pixels between side-by-side videos (not scaled)

_COLORS = {"mean": "C0", "cond": "C1", "uncond": "C2", "proxy": "0.35", "early": "C3", "late": "C4", "emit": "k"}


# -- formatting ------------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".4f") -> str:
    """A number for a table: ``n/a`` for None or NaN, ``inf`` for infinities, else ``format(value, spec)``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if spec == "d":
            return str(int(v)) if v.is_integer() else format(v, "g")
        return format(v, spec)
    return str(value)


def _pct(fraction: Any) -> str:
    """A fraction of the denoising process in percent (``n/a`` when missing)."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "n/a"
    return f"{100 * float(fraction):.1f}%"


def _value(value: Any) -> str:
    """Any setting/provenance value as one table cell."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return _fmt(value, "g")
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return _cell(str(value))


def _cell(text: str) -> str:
    """Text that is safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _arr(values: Sequence[Any] | None, n: int | None = None) -> np.ndarray:
    """A float array with None as NaN (optionally padded/cut to ``n``)."""
    vals = [np.nan if v is None else float(v) for v in (values or [])]
    if n is not None:
        vals = (vals + [np.nan] * n)[:n]
    return np.asarray(vals, dtype=np.float64)


def _at(values: Sequence[Any] | None, i: int) -> Any:
    return values[i] if values is not None and i < len(values) else None


def _stat(block: Mapping | None, key: str) -> tuple[list, list] | None:
    """(mean, std) lists of ``block[key]`` or None when that metric is absent."""
    s = (block or {}).get(key)
    if not isinstance(s, Mapping) or s.get("mean") is None:
        return None
    mean = list(s["mean"])
    std = list(s.get("std") or [None] * len(mean))
    return mean, std


def _segments(schedule: Sequence[Mapping] | None) -> str:
    if not schedule:
        return "n/a"
    return " → ".join(f"{s['model']} [{s['start']:g}, {s['end']:g})" for s in schedule)


def _pattern(schedule: Sequence[Mapping] | None) -> str:
    letters = {"large": "L", "small": "S"}
    return "".join(letters.get(str(s["model"]), f"[{s['model']}]") for s in schedule or [])


# -- plots -----------------------------------------------------------------------------------------------------


def _matplotlib() -> Any:
    """matplotlib with the non-interactive Agg backend, or ImportError with the install hint."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"writing a calibration report needs matplotlib: {INSTALL_HINT}") from exc
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def _band(ax: Any, x: np.ndarray, mean: Sequence, std: Sequence, color: str, label: str, lw: float = 1.8) -> None:
    """Mean line with a shaded mean ± std band."""
    m, s = _arr(mean, len(x)), _arr(std, len(x))
    ax.plot(x, m, color=color, lw=lw, marker="o", ms=3, label=label)
    ok = np.isfinite(m) & np.isfinite(s)
    if ok.any():
        ax.fill_between(x, m - s, m + s, where=ok, color=color, alpha=0.2, lw=0, label=f"{label} ± std")


def _boundary_lines(calibration: Mapping, profile: Mapping | None) -> list[tuple[float, str, str, str]]:
    """(percent, label, color, linestyle) of every boundary to mark on the divergence plot."""
    lines: list[tuple[float, str, str, str]] = []
    div = calibration.get("divergence") or {}
    proxy = div.get("proxy_boundaries") or []
    for name, f in zip(("early", "late"), proxy[:2], strict=False):
        if f is not None:
            lines.append((100 * float(f), f"divergence proxy {name} ({_pct(f)})", _COLORS["proxy"], ":"))
    early = calibration.get("early") or {}
    ce = (early.get("chosen") or {}).get("x")
    if ce is not None:
        lines.append((float(ce), f"early, DINO / Alg. 1 ({float(ce):.1f}%)", _COLORS["early"], "--"))
    late = calibration.get("late") or {}
    cl = (late.get("chosen") or {}).get("x")
    if cl is not None:
        src = "FID min" if late.get("source") == "fid" else "divergence"
        lines.append((float(cl), f"late, {src} ({float(cl):.1f}%)", _COLORS["late"], "--"))
    drawn = [x for x, *_ in lines]
    for b in (profile or {}).get("boundaries") or []:
        x = 100 * float(b["fraction"])
        if not any(abs(x - d) < 1e-6 for d in drawn):
            lines.append((x, f"emitted {b.get('from', '?')}→{b.get('to', '?')} ({x:.1f}%)", _COLORS["emit"], "-"))
            drawn.append(x)
    return lines


def _plot_divergence(figure_cls: Any, calibration: Mapping, profile: Mapping | None, path: Path) -> Path:
    """Velocity divergence between large and small along the large trajectory (sec 5.1, Fig. 6)."""
    div = calibration["divergence"]
    n = int(calibration.get("num_steps") or len(div.get("fraction") or []))
    x = 100 * _arr(div.get("fraction") or [i / max(n, 1) for i in range(n)])
    fig = figure_cls(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    titles = {"cosine": "cosine distance 1 − cos(v_L, v_S)", "l2": "L2 distance ‖v_L − v_S‖"}
    per_call = div.get("per_call") or {}
    bounds = _boundary_lines(calibration, profile)
    for ax, metric in zip(axes, ("cosine", "l2"), strict=True):
        stat = _stat(div, metric)
        if stat is not None:
            _band(ax, x, *stat, color=_COLORS["mean"], label="all calls")
        for i, (label, block) in enumerate(per_call.items()):
            s = _stat(block, metric)
            if s is not None:
                color = _COLORS.get(str(label), f"C{5 + i}")
                ax.plot(x, _arr(s[0], len(x)), color=color, lw=0.8, alpha=0.9, label=f"{label} mean")
        for pos, label, color, style in bounds:
            ax.axvline(pos, color=color, ls=style, lw=1.2, label=label)
        ax.set_title(titles[metric])
        ax.set_xlabel("denoising process (%), step i of N at 100·i/N")
        ax.set_xlim(0, 100)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("divergence (mean ± std over prompts)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Velocity divergence between large and small model (paper sec 5.1, Fig. 6)")
    fig.savefig(path, dpi=110)
    return path


def _plot_early(figure_cls: Any, early: Mapping, path: Path) -> Path:
    """DINO similarity to large-only vs small-model introduction point (sec 4.2, Fig. 4; App. B Fig. A2)."""
    x = _arr(early["x"])
    extra = [(k, _stat(early, k)) for k in ("clip", "psnr", "ssim")]
    extra = [(k, s) for k, s in extra if s is not None]
    fig = figure_cls(figsize=(10 if extra else 6.5, 4.5), layout="constrained")
    if extra:
        grid = fig.add_gridspec(len(extra), 2, width_ratios=[2.2, 1])
        ax = fig.add_subplot(grid[:, 0])
        small_axes = [fig.add_subplot(grid[i, 1]) for i in range(len(extra))]
    else:
        ax, small_axes = fig.add_subplot(1, 1, 1), []
    dino = _stat(early, "dino")
    if dino is not None:
        _band(ax, x, *dino, color=_COLORS["mean"], label="DINO similarity")
    floor = early.get("floor")
    if floor is not None:
        ax.axhline(float(floor), color="0.4", ls="--", lw=1, label=f"similarity floor {float(floor):g}")
    chosen = early.get("chosen") or {}
    if chosen.get("x") is not None and chosen.get("y") is not None:
        ax.plot(
            [chosen["x"]], [chosen["y"]], marker="*", ms=16, color=_COLORS["early"], ls="none",
            label=f"chosen {float(chosen['x']):.1f}% (alpha {early.get('alpha', 'n/a')})",
        )  # fmt: skip
    ax.set_xlabel("small-model introduction point (%)  [0 = small-only, 100 = large-only]")
    ax.set_ylabel("similarity to large-only (mean ± std)")
    ax.set_title("Early boundary: DINO similarity (paper sec 4.2, Fig. 4)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    names = {"clip": "CLIP similarity", "psnr": "PSNR (dB)", "ssim": "SSIM"}
    for sax, (key, (mean, std)) in zip(small_axes, extra, strict=True):
        _band(sax, x, mean, std, color="C1", label=names[key], lw=1.2)
        if chosen.get("x") is not None:
            sax.axvline(float(chosen["x"]), color=_COLORS["early"], ls="--", lw=1)
        sax.set_title(names[key], fontsize=9)
        sax.tick_params(labelsize=7)
        sax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def _plot_late(figure_cls: Any, late: Mapping, path: Path) -> Path:
    """FID vs large-model re-entry point: the V-curve and its minimum (sec 4.3, Fig. 5)."""
    x, fid = _arr(late["x"]), _arr(late["fid"], len(late["x"]))
    fig = figure_cls(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, fid, color=_COLORS["mean"], marker="o", lw=1.8, label="FID")
    chosen = late.get("chosen") or {}
    if chosen.get("x") is not None and chosen.get("fid") is not None:
        ax.plot(
            [chosen["x"]], [chosen["fid"]], marker="*", ms=16, color=_COLORS["late"], ls="none",
            label=f"minimum {float(chosen['x']):.1f}% (FID {float(chosen['fid']):.4g})",
        )  # fmt: skip
    feature = late.get("feature")
    ax.set_xlabel("large-model re-entry point (% of the process)  [100 = no re-entry, L-S-S]")
    ax.set_ylabel("FID" + (f" ({feature} features)" if feature else ""))
    ax.set_title("Late boundary: FID V-curve (paper sec 4.3, Fig. 5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _plot_front(figure_cls: Any, block: Mapping, path: Path) -> Path:
    """Quality against FLOPs of every swept schedule with its Pareto front (sec 5.2, Fig. 7)."""
    patterns = list(block["patterns"])
    k = len(patterns[0])
    flops = _arr(block["flops"]) / 1e9
    use_fid = block.get("fid") is not None
    quality = _arr(block["fid"] if use_fid else block["dino"], len(patterns))
    front = block.get("front_fid") if use_fid else block.get("front_dino")
    fig = figure_cls(figsize=(7.5, 5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    starts_small = np.array([p.startswith("S") for p in patterns])
    ax.scatter(flops[~starts_small], quality[~starts_small], s=14, color=_COLORS["mean"], alpha=0.6, label="L...")
    ax.scatter(flops[starts_small], quality[starts_small], s=14, color="tab:orange", alpha=0.6, label="S...")
    if front:
        order = sorted(front, key=lambda i: flops[i])
        ax.plot(flops[order], quality[order], color="black", lw=1.2, label="Pareto front")
    third = max(1, round(k * 0.375)), max(1, round(k * 0.875))
    marks = {
        "large-only": "L" * k,
        "small-only": "S" * k,
        "L-S-S": "L" * third[0] + "S" * (k - third[0]),
        "L-S-L": "L" * third[0] + "S" * (third[1] - third[0]) + "L" * (k - third[1]),
    }
    chosen = (block.get("chosen") or {}).get("pattern")
    if chosen:
        marks[f"chosen {chosen}"] = chosen
    for label, pattern in marks.items():
        if pattern in patterns:
            i = patterns.index(pattern)
            ax.annotate(label, (flops[i], quality[i]), textcoords="offset points", xytext=(5, 5), fontsize=8)
            ax.plot(
                [flops[i]],
                [quality[i]],
                marker="*" if label.startswith("chosen") else "o",
                ms=10,
                color=_COLORS["late"] if label.startswith("chosen") else "black",
                ls="none",
            )
    ax.set_xlabel("GFLOPs per video (cost model)")
    ax.set_ylabel("FID (lower is better)" if use_fid else "DINO similarity to large-only (higher is better)")
    ax.set_title(f"All {len(patterns)} schedules of {k} segments (paper sec 5.2, Fig. 7)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _write_schedule_table(block: Mapping, out: Path) -> None:
    """Every evaluated schedule with its FLOPs, FID and DINO similarity (CSV and JSON)."""
    patterns = list(block.get("patterns") or [c["pattern"] for c in block.get("candidates", [])])
    fid = block.get("fid") or [None] * len(patterns)
    dino = block.get("dino") or [None] * len(patterns)
    flops = block.get("flops") or [c.get("flops") for c in block.get("candidates", [])]
    rows = [
        {"pattern": p, "flops": f, "fid": q, "dino": d} for p, f, q, d in zip(patterns, flops, fid, dino, strict=True)
    ]
    (out / "schedules.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    lines = ["pattern,flops,fid,dino"] + [
        f"{r['pattern']},{r['flops']},{'' if r['fid'] is None else r['fid']},{'' if r['dino'] is None else r['dino']}"
        for r in rows
    ]
    (out / "schedules.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _search_section(calibration: Mapping, plotted: bool) -> list[str]:
    block = calibration.get("sweep") or calibration.get("search")
    if not block:
        return []
    name = "sweep" if calibration.get("sweep") else "search"
    lines = [f"## Schedule {name}: every segment pattern (paper sec 5.2)", ""]
    if plotted:
        lines += ["![front](front.png)", ""]
    chosen = block.get("chosen") or {}
    lines.append(
        f"- Chosen: `{chosen.get('pattern')}` ({block.get('rule', 'beam search, ' + str(block.get('score')))})"
    )
    cost = block.get("cost") or {}
    lines += [f"- {line}" for line in cost.get("summary", [])]
    lines += ["- All schedules: [schedules.csv](schedules.csv), [schedules.json](schedules.json)", ""]
    return lines


# -- samples ---------------------------------------------------------------------------------------------------


def _check_video(frames: Any, name: str) -> None:
    """Reject a sample that is not a (F, H, W, 3) video (also (F, H, W) or (F, H, W, 1) grey), naming its label."""
    shape = np.shape(frames)
    if not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))) or 0 in shape:
        raise ValueError(f"sample {name!r} must have shape (F, H, W, 3), got {shape}: pass frames-last RGB video")


def _uint8_video(frames: Any, name: str) -> np.ndarray:
    """(F, H, W, 3) uint8 of a float [0, 1] (or uint8) video; (F, H, W) and (F, H, W, 1) are made grey RGB."""
    _check_video(frames, name)
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    arr = np.nan_to_num(arr.astype(np.float32), nan=0.0)
    return (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)


def side_by_side(videos: Sequence[np.ndarray], *, min_height: int = MIN_SAMPLE_HEIGHT, gap: int = SAMPLE_GAP):
    """(F, H', W', 3) uint8 of uint8 videos placed left to right, upscaled by one integer nearest-neighbour factor.

    The factor makes the tallest video at least ``min_height`` px tall; shorter videos hold their last frame,
    lower ones are padded at the bottom; the ``gap`` px columns between videos are white.
    """
    height = max(v.shape[1] for v in videos)
    scale = max(1, math.ceil(min_height / height))
    big = [v.repeat(scale, axis=1).repeat(scale, axis=2) for v in videos]
    frames = max(v.shape[0] for v in big)
    width = sum(v.shape[2] for v in big) + gap * (len(big) - 1)
    out = np.full((frames, height * scale, width, 3), 255, dtype=np.uint8)
    col = 0
    for v in big:
        held = np.concatenate([v, np.repeat(v[-1:], frames - v.shape[0], axis=0)]) if v.shape[0] < frames else v
        out[:, : v.shape[1], col : col + v.shape[2]] = held
        col += v.shape[2] + gap
    return out


def _write_gif(video: np.ndarray, path: Path, fps: int) -> Path:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in video]
    tmp = path.with_name(path.name + ".tmp")
    images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0
    )
    os.replace(tmp, path)
    return path


def _check_samples(samples: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Check every sample's shape before anything is written."""
    for videos in (samples or {}).values():
        for label, frames in (videos or {}).items():
            _check_video(frames, label)


def _write_samples(samples: Mapping[str, Mapping[str, Any]] | None, out: Path, fps: int) -> list[tuple]:
    """Write ``sample-<i>.gif`` per prompt (one prompt in memory at a time); returns (prompt, labels, file) rows."""
    rows = []
    for i, (prompt, videos) in enumerate((samples or {}).items()):
        if not videos:
            continue
        labels = list(videos)
        video = side_by_side([_uint8_video(videos[label], label) for label in labels])
        name = f"sample-{i}.gif"
        _write_gif(video, out / name, fps)
        rows.append((prompt, labels, name))
    return rows


# -- report.md -------------------------------------------------------------------------------------------------


def _summary(calibration: Mapping, profile: Mapping) -> list[str]:
    lines = ["## Summary", ""]
    schedule = profile.get("schedule")
    if schedule:
        lines.append(f"- **Schedule {_pattern(schedule)}**: {_segments(schedule)}")
    cost = profile.get("cost") or {}
    if cost:
        ratio = cost.get("flops_ratio")
        share = f" ({100 * ratio:.1f}% of large-only FLOPs)" if isinstance(ratio, (int, float)) else ""
        lines.append(f"- **Predicted speed-up**: {_fmt(cost.get('predicted_speedup'), '.2f')}x{share}")
    for b in profile.get("boundaries") or []:
        lines.append(
            f"- Boundary at {_pct(b.get('fraction'))} (step {_fmt(b.get('step'), 'd')}, "
            f"sigma {_fmt(b.get('sigma'))}): {b.get('from', '?')} → {b.get('to', '?')}"
        )
    method = calibration.get("method", "n/a")
    how = {"full": "DINO early sweep, FID late sweep", "divergence": "velocity divergence only, no sweeps"}
    lines.append(f"- Method: `{method}` ({how.get(method, 'n/a')})")
    early, late = calibration.get("early"), calibration.get("late")
    if early:
        c = early.get("chosen") or {}
        floor, y = early.get("floor"), c.get("y")
        clears = ""
        if floor is not None and y is not None:
            clears = "clears" if float(y) >= float(floor) else "**misses**"
            clears = f"; {clears} the similarity floor {_fmt(floor, 'g')}"
        lines.append(
            f"- Early boundary (Algorithm 1, alpha {_fmt(early.get('alpha'), 'g')}): small model from "
            f"{_fmt(c.get('x'), '.1f')}% (DINO similarity {_fmt(y)}{clears})"
        )
    if late:
        c = late.get("chosen") or {}
        src = "FID minimum" if late.get("source") == "fid" else "divergence curve (no FID)"
        lines.append(
            f"- Late boundary ({src}): large model again from {_fmt(c.get('x'), '.1f')}% (FID {_fmt(c.get('fid'))})"
        )
    div = calibration.get("divergence") or {}
    proxy = list(div.get("proxy_boundaries") or [])
    if proxy:
        lines.append(f"- Divergence proxy boundaries (sec 5.1): {' / '.join(_pct(p) for p in proxy)}")
        gaps = []
        for name, block, key in (("early", early, "x"), ("late", late, "x")):
            idx = 0 if name == "early" else 1
            chosen = ((block or {}).get("chosen") or {}).get(key)
            if chosen is not None and idx < len(proxy) and proxy[idx] is not None:
                if name == "late" and (block or {}).get("source") != "fid":
                    continue
                gaps.append(f"{name} {100 * float(proxy[idx]) - float(chosen):+.1f} points")
        if gaps:
            lines.append(f"- Proxy minus DINO/FID boundary: {', '.join(gaps)}")
    seeds = calibration.get("seeds")
    lines.append(
        f"- Data: {_fmt(calibration.get('num_prompts'), 'd')} prompts x seeds {_value(seeds)}, "
        f"{_fmt(calibration.get('num_steps'), 'd')} steps"
    )
    premise = calibration.get("premise") or {}
    if premise.get("holds") is True:
        lines.append("- Premise: **holds** (the paper's early / middle / late stage structure was found for this pair)")
    elif premise.get("holds") is False:
        lines.append("- Premise: **does not hold** for this pair (see below)")
    else:
        lines.append("- Premise: n/a (not checked)")
    return [*lines, ""]


def _premise_warning(calibration: Mapping, profile: Mapping) -> list[str]:
    premise = calibration.get("premise") or {}
    if premise.get("holds") is not False:
        return []
    lines = [
        "## ⚠ The paper's stage structure does not hold for this pair",
        "",
        "The paper's finding (large model early for structure, small model in the middle, large model late for "
        "detail) is empirical. For this pair the calibrator's checks failed:",
        "",
    ]
    lines += [f"- {_cell(str(f))}" for f in premise.get("failed") or ["(no reason recorded)"]]
    schedule = profile.get("schedule")
    lines.append("")
    if schedule:
        single = len(schedule) == 1
        what = (
            f"a single-model schedule ({_segments(schedule)})"
            if single
            else f"schedule {_pattern(schedule)}: {_segments(schedule)}"
        )
        speed = _fmt((profile.get("cost") or {}).get("predicted_speedup"), ".2f")
        lines.append(
            f"**Emitted instead**: {what}, predicted speed-up {speed}x. This is the honest result of the "
            "measurements, not a default L-S-L pretending to be calibrated."
        )
    else:
        lines.append("**Emitted instead**: see the profile's schedule; no calibrated L-S-L is claimed.")
    return [*lines, ""]


def _calls(calibration: Mapping) -> list[str]:
    calls = calibration.get("calls") or {}
    computed, naive = calls.get("computed") or {}, calls.get("naive") or {}
    if not computed and not naive:
        return []
    roles = [r for r in ("large", "small") if r in computed or r in naive]
    roles += sorted((set(computed) | set(naive)) - set(roles))
    rows = []
    for role in [*roles, "total"]:
        done = sum(computed.values()) if role == "total" else computed.get(role, 0)
        todo = sum(naive.values()) if role == "total" else naive.get(role, 0)
        ratio = f"{todo / done:.2f}x" if done else "n/a"
        name = "**total**" if role == "total" else role
        rows.append([name, str(done), str(todo), ratio])
    return [
        "## Transformer calls",
        "",
        "Forward calls computed with prefix sharing (record and replay) against the paper's protocol run naively "
        "(every schedule from scratch, divergence in a separate pass).",
        "",
        *_table(["role", "computed", "naive sweep", "naive / computed"], rows),
        "",
    ]


def _divergence_section(calibration: Mapping, plotted: bool) -> list[str]:
    div = calibration.get("divergence")
    if not div:
        return []
    lines = ["## Velocity divergence (paper sec 5.1)", ""]
    if plotted:
        lines += ["![velocity divergence U-curve](divergence.png)", ""]
    proxy = div.get("proxy_boundaries") or []
    if proxy:
        lines += [f"Proxy boundaries from the divergence curve: {' / '.join(_pct(p) for p in proxy)}.", ""]
    if div.get("premise"):
        lines += ["Divergence checks that failed:", "", *[f"- {_cell(str(p))}" for p in div["premise"]], ""]
    frac = list(div.get("fraction") or [])
    cos, l2 = _stat(div, "cosine") or ([], []), _stat(div, "l2") or ([], [])
    sigma = div.get("sigma")
    rows = [
        [str(i), _fmt(f, ".3f"), _fmt(_at(sigma, i)), _fmt(_at(cos[0], i), ".4g"), _fmt(_at(cos[1], i), ".4g"),
         _fmt(_at(l2[0], i), ".4g"), _fmt(_at(l2[1], i), ".4g")]
        for i, f in enumerate(frac)
    ]  # fmt: skip
    lines += _table(["step", "fraction", "sigma", "cos mean", "cos std", "l2 mean", "l2 std"], rows)
    per_call = div.get("per_call") or {}
    if per_call:
        header, cols = ["step"], []
        for label, block in per_call.items():
            for metric in ("cosine", "l2"):
                s = _stat(block, metric)
                if s is not None:
                    header.append(f"{_cell(str(label))} {'cos' if metric == 'cosine' else 'l2'} mean")
                    cols.append(s[0])
        if cols:
            rows = [[str(i), *[_fmt(_at(c, i), ".4g") for c in cols]] for i in range(len(frac))]
            lines += ["", "Per call (mean over prompts):", "", *_table(header, rows)]
    return [*lines, ""]


def _early_section(calibration: Mapping, plotted: bool) -> list[str]:
    early = calibration.get("early")
    if not early:
        return []
    lines = ["## Early boundary: similarity sweep (paper sec 4.2, App. B Algorithm 1)", ""]
    if plotted:
        lines += ["![DINO similarity vs small-model introduction point](early.png)", ""]
    c = early.get("chosen") or {}
    lines += [
        f"Algorithm 1 with alpha {_fmt(early.get('alpha'), 'g')} chooses {_fmt(c.get('x'), '.1f')}% "
        f"(DINO similarity {_fmt(c.get('y'))}; similarity floor {_fmt(early.get('floor'), 'g')}). "
        "x is the small-model introduction point: 0 = small-only, 100 = large-only.",
        "",
    ]
    if early.get("premise"):
        lines += ["Early-curve checks that failed:", "", *[f"- {_cell(str(p))}" for p in early["premise"]], ""]
    metrics = [(k, s) for k in ("dino", "clip", "psnr", "ssim") if (s := _stat(early, k)) is not None]
    header = ["x (%)", *[f"{k.upper()} {part}" for k, _ in metrics for part in ("mean", "std")], "chosen"]
    rows = []
    for i, x in enumerate(early.get("x") or []):
        row = [_fmt(x, ".1f")]
        for _, (mean, std) in metrics:
            row += [_fmt(_at(mean, i)), _fmt(_at(std, i))]
        row.append("★" if c.get("index") == i else "")
        rows.append(row)
    return [*lines, *_table(header, rows), ""]


def _late_section(calibration: Mapping, plotted: bool) -> list[str]:
    late = calibration.get("late")
    if not late:
        return []
    lines = ["## Late boundary: FID sweep (paper sec 4.3)", ""]
    c = late.get("chosen") or {}
    if late.get("source") != "fid" or not late.get("fid"):
        lines += [
            f"No FID sweep (no reference set): the late boundary comes from the divergence curve, "
            f"{_fmt(c.get('x'), '.1f')}%.",
            "",
        ]
        return lines
    if plotted:
        lines += ["![FID vs large-model re-entry point](late.png)", ""]
    ref = late.get("reference_frames")
    lines += [
        f"FID on `{late.get('feature') or 'n/a'}` features against {_fmt(ref, 'd')} reference frames; minimum at "
        f"{_fmt(c.get('x'), '.1f')}% (FID {_fmt(c.get('fid'))}). x is where the large model takes over again: "
        "80 means the last 20% of the process runs on the large model; 100 means L-S-S; x at the early boundary "
        "means no small-model steps (large-only).",
        "",
    ]
    if late.get("premise"):
        lines += ["Late-curve checks that failed:", "", *[f"- {_cell(str(p))}" for p in late["premise"]], ""]
    fid = late.get("fid") or []
    rows = [
        [_fmt(x, ".1f"), _fmt(_at(late.get("steps"), i), "d"), _fmt(_at(fid, i)), "★" if c.get("index") == i else ""]
        for i, x in enumerate(late.get("x") or [])
    ]
    return [*lines, *_table(["x (%)", "step", "FID", "chosen"], rows), ""]


def _samples_section(rows: list[tuple], fps: int) -> list[str]:
    if not rows:
        return []
    lines = ["## Samples", "", f"Side by side, left to right, at {fps} fps (upscaled with nearest neighbour).", ""]
    same = all(labels == rows[0][1] for _, labels, *_ in rows)
    if same:
        header = ["#", "prompt", " · ".join(_cell(str(label)) for label in rows[0][1])]
        body = [[str(i), _cell(str(p)), f"![sample {i}]({name})"] for i, (p, _, name) in enumerate(rows)]
    else:
        header = ["#", "prompt", "left to right", "videos"]
        body = [
            [str(i), _cell(str(p)), " · ".join(_cell(str(label)) for label in labels), f"![sample {i}]({name})"]
            for i, (p, labels, name) in enumerate(rows)
        ]
    return [*lines, *_table(header, body), ""]


def _key_values(title: str, data: Mapping | None, skip: Sequence[str] = ()) -> list[str]:
    if not data:
        return []
    rows = []
    for key, value in data.items():
        if key in skip:
            continue
        if key == "scheduler" and isinstance(value, Mapping):
            value = f"{value.get('class', 'n/a')} (flow_shift {_value(value.get('flow_shift'))})"
        rows.append([_cell(str(key)), _value(value)])
    return [f"## {title}", "", *_table(["", "value"], rows), ""]


def _models(profile: Mapping) -> list[str]:
    models = profile.get("models") or {}
    if not models:
        return []
    rows = [
        [_cell(str(role)), f"`{m.get('id', 'n/a')}`", _value(m.get("revision")), _value(m.get("subfolder")),
         _fmt(m.get("parameters"), ",.0f")]
        for role, m in models.items()
    ]  # fmt: skip
    return ["### Models", "", *_table(["role", "id", "revision", "subfolder", "parameters"], rows), ""]


def _markdown(
    calibration: Mapping, profile: Mapping, plotted: Mapping[str, bool], samples: list[tuple], fps: int
) -> str:
    name = profile.get("name") or "unnamed profile"
    lines = [f"# FlowBlending calibration report: {_cell(str(name))}", ""]
    if profile.get("description"):
        lines += [_cell(str(profile["description"])), ""]
    lines += _summary(calibration, profile)
    lines += _premise_warning(calibration, profile)
    lines += _calls(calibration)
    lines += _divergence_section(calibration, plotted.get("divergence", False))
    lines += _early_section(calibration, plotted.get("early", False))
    lines += _late_section(calibration, plotted.get("late", False))
    lines += _search_section(calibration, plotted.get("front", False))
    lines += _samples_section(samples, fps)
    notes = calibration.get("notes") or []
    if notes:
        lines += ["## Notes", "", *[f"- {_cell(str(n))}" for n in notes], ""]
    lines += _key_values("Setting", profile.get("setting"))
    prov = _key_values("Provenance", profile.get("provenance"))
    if prov or profile.get("models"):
        lines += prov or ["## Provenance", ""]
        lines += _models(profile)
    return "\n".join(lines).rstrip() + "\n"


# -- entry point -----------------------------------------------------------------------------------------------


def write_report(
    calibration: dict,
    out_dir: str | os.PathLike,
    *,
    profile: dict | None = None,
    samples: dict[str, dict[str, np.ndarray]] | None = None,
    fps: int = 8,
) -> Path:
    """Write plots (Figs. 4-6 of the paper), sample GIFs and ``report.md`` into ``out_dir``; return report.md's path.

    ``calibration``: the calibration block (divergence, early, late, premise, calls, notes); parts that are
    missing (``method="divergence"`` has no early/late) are left out. ``profile``: the profile as a dict (name,
    schedule, boundaries, cost, setting, provenance, models). ``samples``: prompt -> {schedule label -> frames
    (F, H, W, 3) float in [0, 1]}, one side-by-side GIF per prompt at ``fps``.
    """
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}: pass e.g. fps=8")
    figure_cls = _matplotlib()
    _check_samples(samples)  # bad sample shapes fail before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile = profile or {}
    plotted: dict[str, bool] = {}
    if calibration.get("divergence"):
        _plot_divergence(figure_cls, calibration, profile, out / "divergence.png")
        plotted["divergence"] = True
    early = calibration.get("early")
    if early and early.get("x"):
        _plot_early(figure_cls, early, out / "early.png")
        plotted["early"] = True
    late = calibration.get("late")
    if late and late.get("x") and late.get("fid"):
        _plot_late(figure_cls, late, out / "late.png")
        plotted["late"] = True
    search = calibration.get("sweep") or calibration.get("search")
    if search:
        _write_schedule_table(search, out)
        if calibration.get("sweep"):
            _plot_front(figure_cls, search, out / "front.png")
            plotted["front"] = True
    for stale in {"divergence", "early", "late", "front"} - set(plotted):  # a plot of an earlier report in this folder
        (out / f"{stale}.png").unlink(missing_ok=True)
    sample_rows = _write_samples(samples, out, fps)
    path = out / "report.md"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_markdown(calibration, profile, plotted, sample_rows, fps), encoding="utf-8")
    os.replace(tmp, path)
    return path
