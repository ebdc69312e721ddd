"""The calibration report: PNG plots of the three curves, a contact sheet and side-by-side GIFs, and report.md.

Plots follow the paper: the DINO-similarity curve of the early sweep with the chosen point (sec 4.2, Fig. 4,
App. B Fig. A2), the late re-entry V-curve of the distribution metric (FID or KID, sec 4.3, Fig. 5) and the
velocity-divergence U-curve with every boundary marked (sec 5.1, Fig. 6), and with ``--compare`` the compared
schedules' similarity and late metric against their FLOPs ratio. ``report.md`` embeds them with relative
links and tabulates the numbers; when the premise check failed it says so first ("the premise is checked, not
assumed"). Everything is read from a typed ``CalibrationRecord``.

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

from flowblending.atomic import atomic_write, atomic_write_text

from .record import CalibrationRecord, CompareRecord, EarlyRecord, LateRecord, Stat, SweepRecord

__all__ = ["contact_sheet", "side_by_side", "write_contact_sheet", "write_report"]

INSTALL_HINT = 'pip install "flowblending[calibrate]"'

# Samples are upscaled (nearest neighbour, integer factor) to at least this height so tiny videos are visible.
MIN_SAMPLE_HEIGHT = 128
SAMPLE_GAP = 2  # pixels between side-by-side videos (not scaled)

# Contact sheet layout, in pixels of the sheet (not scaled with the frames).
CONTACT_MIN_CELL = 96  # frames are enlarged until the tallest is at least this tall
CONTACT_LABEL_WIDTH = 120  # the column at the left that holds each row's schedule label
CONTACT_TITLE_HEIGHT = 20  # the line above each prompt's rows that holds the prompt
CONTACT_BLOCK_GAP = 8  # white space between one prompt's rows and the next prompt's title
CONTACT_SHEET = "contact-sheet.png"

_COLORS = {"mean": "C0", "cond": "C1", "uncond": "C2", "proxy": "0.35", "early": "C3", "late": "C4", "emit": "k"}
_EARLY_METRICS = ("dino", "clip", "psnr", "ssim")  # table and plot order of the early curve's metrics
_EARLY_NAMES = {"dino": "DINO similarity", "clip": "CLIP similarity", "psnr": "PSNR (dB)", "ssim": "SSIM"}


# -- formatting ------------------------------------------------------------------------------------------------


def _fmt(value: Any, spec: str = ".4f") -> str:
    """A number for a table: ``n/a`` for None or NaN, ``inf`` for infinities, else ``format(value, spec)``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float | np.integer | np.floating):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if spec == "d":
            return str(int(v)) if v.is_integer() else format(v, "g")
        return format(v, spec)
    return str(value)


def _pct(fraction: float | None) -> str:
    """A fraction of the denoising process in percent (``n/a`` when missing)."""
    if fraction is None or math.isnan(fraction):
        return "n/a"
    return f"{100 * float(fraction):.1f}%"


def _value(value: Any) -> str:
    """Any setting/provenance value as one table cell."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return _fmt(value, "g")
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return _cell(str(value))


def _cell(text: str) -> str:
    """Text that is safe inside a markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _bullets(items: Sequence[str]) -> list[str]:
    return [f"- {_cell(str(item))}" for item in items]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _arr(values: Sequence[float | None] | None, n: int | None = None) -> np.ndarray:
    """A float array with None as NaN (optionally padded/cut to ``n``)."""
    vals = [np.nan if v is None else float(v) for v in (values or [])]
    if n is not None:
        vals = (vals + [np.nan] * n)[:n]
    return np.asarray(vals, dtype=np.float64)


def _at(values: Sequence[Any] | None, i: int) -> Any:
    return values[i] if values is not None and i < len(values) else None


def _segments(schedule: Sequence[Mapping] | None) -> str:
    if not schedule:
        return "n/a"
    return " → ".join(f"{s['model']} [{s['start']:g}, {s['end']:g})" for s in schedule)


def _pattern(schedule: Sequence[Mapping] | None) -> str:
    letters = {"large": "L", "small": "S"}
    return "".join(letters.get(str(s["model"]), f"[{s['model']}]") for s in schedule or [])


# -- what the record holds ---------------------------------------------------------------------------------------


def _metric(late: LateRecord) -> str:
    """The late curve's distribution metric as it is labelled in plots and tables: ``FID``, ``KID``."""
    return late.metric.upper()


def _measured(late: LateRecord | None) -> bool:
    """Whether the late boundary comes from a measured metric curve (not from the divergence proxy)."""
    return late is not None and late.source != "divergence" and bool(late.x) and bool(late.values)


def _early_metrics(early: EarlyRecord) -> list[tuple[str, Stat]]:
    """(name, curve) of every early-curve metric that was measured, DINO first."""
    names = [k for k in _EARLY_METRICS if k in early.metrics] + [k for k in early.metrics if k not in _EARLY_METRICS]
    return [(k, stat) for k in names if (stat := early.metrics[k]) is not None]


def _generated(late: LateRecord) -> str:
    """The phrase naming how many generated frames the metric used, or nothing when the record does not say."""
    return f" over {late.generated_frames} generated frames" if late.generated_frames else ""


# -- plots -----------------------------------------------------------------------------------------------------


def _matplotlib() -> Any:
    """matplotlib's Figure with the non-interactive Agg backend, or ImportError with the install hint."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"writing a calibration report needs matplotlib: {INSTALL_HINT}") from exc
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def _band(ax: Any, x: np.ndarray, stat: Stat, color: str, label: str, lw: float = 1.8) -> None:
    """Mean line with a shaded mean ± std band."""
    m, s = _arr(stat.mean, len(x)), _arr(stat.std, len(x))
    ax.plot(x, m, color=color, lw=lw, marker="o", ms=3, label=label)
    ok = np.isfinite(m) & np.isfinite(s)
    if ok.any():
        ax.fill_between(x, m - s, m + s, where=ok, color=color, alpha=0.2, lw=0, label=f"{label} ± std")


def _boundary_lines(record: CalibrationRecord, profile: Mapping) -> list[tuple[float, str, str, str]]:
    """(percent, label, color, linestyle) of every boundary to mark on the divergence plot."""
    lines: list[tuple[float, str, str, str]] = []
    for name, f in zip(("early", "late"), record.divergence.proxy_boundaries, strict=True):
        lines.append((100 * f, f"divergence proxy {name} ({_pct(f)})", _COLORS["proxy"], ":"))
    if record.early is not None:
        x = record.early.chosen.x
        lines.append((x, f"early, DINO / Alg. 1 ({x:.1f}%)", _COLORS["early"], "--"))
    if record.late is not None:
        x = record.late.chosen.x
        src = f"{_metric(record.late)} min" if _measured(record.late) else "divergence"
        lines.append((x, f"late, {src} ({x:.1f}%)", _COLORS["late"], "--"))
    drawn = [x for x, *_ in lines]
    for b in profile.get("boundaries") or []:  # emitted boundaries the curves above do not already mark
        x = 100 * float(b["fraction"])
        if not any(abs(x - d) < 1e-6 for d in drawn):
            lines.append((x, f"emitted {b.get('from', '?')}→{b.get('to', '?')} ({x:.1f}%)", _COLORS["emit"], "-"))
            drawn.append(x)
    return lines


def _plot_divergence(figure_cls: Any, record: CalibrationRecord, profile: Mapping, path: Path) -> Path:
    """Velocity divergence between large and small along the large trajectory (sec 5.1, Fig. 6)."""
    div = record.divergence
    x = 100 * _arr(div.fraction)
    fig = figure_cls(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    titles = {"cosine": "cosine distance 1 − cos(v_L, v_S)", "l2": "L2 distance ‖v_L − v_S‖"}
    bounds = _boundary_lines(record, profile)
    for ax, metric in zip(axes, ("cosine", "l2"), strict=True):
        _band(ax, x, getattr(div, metric), color=_COLORS["mean"], label="all calls")
        for i, (label, curves) in enumerate(div.per_call.items()):
            stat = curves.get(metric)  # a call label may carry only some of the metrics
            if stat is not None:
                color = _COLORS.get(str(label), f"C{5 + i}")
                ax.plot(x, _arr(stat.mean, len(x)), color=color, lw=0.8, alpha=0.9, label=f"{label} mean")
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


def _plot_early(figure_cls: Any, early: EarlyRecord, path: Path) -> Path:
    """DINO similarity to large-only vs small-model introduction point (sec 4.2, Fig. 4; App. B Fig. A2)."""
    x = _arr(early.x)
    measured = _early_metrics(early)
    extra = [(k, s) for k, s in measured if k != "dino"]  # small panels beside the DINO curve
    fig = figure_cls(figsize=(10 if extra else 6.5, 4.5), layout="constrained")
    if extra:
        grid = fig.add_gridspec(len(extra), 2, width_ratios=[2.2, 1])
        ax = fig.add_subplot(grid[:, 0])
        small_axes = [fig.add_subplot(grid[i, 1]) for i in range(len(extra))]
    else:
        ax, small_axes = fig.add_subplot(1, 1, 1), []
    dino = early.metrics.get("dino")
    if dino is not None:
        _band(ax, x, dino, color=_COLORS["mean"], label="DINO similarity")
    ax.axhline(early.floor, color="0.4", ls="--", lw=1, label=f"similarity floor {early.floor:g}")
    if early.se is not None and early.noise_se > 0 and dino is not None:
        reach = _arr(dino.mean, len(x)) + early.noise_se * _arr(early.se, len(x))
        label = f"mean + {early.noise_se:g} SE (a point reaches the floor when this does)"
        ax.plot(x, reach, color=_COLORS["mean"], ls=":", lw=1, label=label)
    c = early.chosen
    if early.knee is not None:
        ax.plot(
            [early.knee.x], [early.knee.y], marker="o", ms=9, mfc="none", color=_COLORS["early"], ls="none",
            label=f"Algorithm 1 knee {early.knee.x:.1f}% (below the floor)",
        )  # fmt: skip
    ax.plot(
        [c.x], [c.y], marker="*", ms=16, color=_COLORS["early"], ls="none",
        label=f"chosen {c.x:.1f}% (alpha {early.alpha:g})",
    )  # fmt: skip
    ax.set_xlabel("small-model introduction point (%)  [0 = small-only, 100 = large-only]")
    ax.set_ylabel("similarity to large-only (mean ± std)")
    ax.set_title("Early boundary: DINO similarity (paper sec 4.2, Fig. 4)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    for sax, (key, stat) in zip(small_axes, extra, strict=True):
        name = _EARLY_NAMES.get(key, key.upper())
        _band(sax, x, stat, color="C1", label=name, lw=1.2)
        sax.axvline(c.x, color=_COLORS["early"], ls="--", lw=1)
        sax.set_title(name, fontsize=9)
        sax.tick_params(labelsize=7)
        sax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    return path


def _plot_late(figure_cls: Any, late: LateRecord, path: Path) -> Path:
    """The distribution metric vs large-model re-entry point: the V-curve and its minimum (sec 4.3, Fig. 5)."""
    metric = _metric(late)
    x = _arr(late.x)
    values = _arr(late.values, len(x))
    fig = figure_cls(figsize=(6.5, 4.5), layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    c, low = late.chosen, late.minimum
    parity = late.rule == "parity"
    base, name = (0, "large-only") if parity else (low, "the minimum")
    if late.se is not None:
        ax.errorbar(
            x, values, yerr=_arr(late.se, len(x)), color=_COLORS["mean"], marker="o", lw=1.8, capsize=3,
            label=f"{metric} ± 1 SE of its difference to {name} (jackknife over prompts × seeds)",
        )  # fmt: skip
    else:
        ax.plot(x, values, color=_COLORS["mean"], marker="o", lw=1.8, label=metric)
    if late.se is not None or parity:
        what = f"{'large-only' if parity else 'minimum'} {x[base]:.1f}% ({metric} {values[base]:.4g})"
        ax.axhline(values[base], color="0.5", ls=":", lw=1, label=what)
    if c.value is not None:
        ax.plot(
            [c.x], [c.value], marker="*", ms=16, color=_COLORS["late"], ls="none",
            label=f"chosen {c.x:.1f}% ({metric} {c.value:.4g}; rule: {late.rule})",
        )  # fmt: skip
    detail = [f"{late.feature.rstrip('/').rsplit('/', 1)[-1]} features"] if late.feature else []
    detail += [f"{late.generated_frames} generated frames"] if late.generated_frames else []
    ax.set_xlabel("large-model re-entry point (% of the process)  [100 = no re-entry, L-S-S]")
    ax.set_ylabel(metric + (f"\n({', '.join(detail)})" if detail else ""))
    ax.set_title(f"Late boundary: {metric} V-curve (paper sec 4.3, Fig. 5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _plot_front(figure_cls: Any, sweep: SweepRecord, path: Path) -> Path:
    """Quality against FLOPs of every swept schedule with its Pareto front (sec 5.2, Fig. 7)."""
    patterns = list(sweep.patterns)
    k = len(patterns[0])
    flops = _arr(sweep.flops) / 1e9
    use_fid = sweep.fid is not None
    quality = _arr(sweep.fid if use_fid else sweep.dino, len(patterns))
    front = sweep.front_fid if use_fid else sweep.front_dino
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
    chosen = sweep.chosen.get("pattern")
    if chosen:
        marks[f"chosen {chosen}"] = chosen
    for label, pattern in marks.items():
        if pattern in patterns:
            i = patterns.index(pattern)
            is_chosen = label.startswith("chosen")
            ax.annotate(label, (flops[i], quality[i]), textcoords="offset points", xytext=(5, 5), fontsize=8)
            color = _COLORS["late"] if is_chosen else "black"
            ax.plot([flops[i]], [quality[i]], marker="*" if is_chosen else "o", ms=10, color=color, ls="none")
    ax.set_xlabel("GFLOPs per video (cost model)")
    ax.set_ylabel("FID (lower is better)" if use_fid else "DINO similarity to large-only (higher is better)")
    ax.set_title(f"All {len(patterns)} schedules of {k} segments (paper sec 5.2, Fig. 7)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _plot_compare(figure_cls: Any, compare: CompareRecord, path: Path) -> Path:
    """Similarity to large-only and the late metric of every compared row, labelled with its FLOPs ratio."""
    rows = sorted(compare.rows, key=lambda r: r.flops_ratio)  # cheapest first
    labels = [f"{r.name}\n{r.pattern}, {100 * r.flops_ratio:.1f}% FLOPs, NFE {r.nfe}" for r in rows]
    x = np.arange(len(rows))
    colors = [{"large-only": "0.5", "calibrated": _COLORS["late"]}.get(r.kind, _COLORS["mean"]) for r in rows]
    panels = [("similarity", "similarity to large-only (mean ± std)", "higher is better")]
    if compare.metric is not None:
        panels.append(("late", compare.metric.upper(), "lower is better"))
    fig = figure_cls(figsize=(4 + 1.6 * len(rows) * len(panels), 4.5), layout="constrained")
    for i, (key, name, better) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        values = _arr([getattr(r, key) for r in rows])
        spread = _arr([r.similarity_std if key == "similarity" else r.late_std for r in rows])
        spread = np.where(np.isfinite(spread), spread, 0)
        bars = ax.bar(x, values, yerr=spread, color=colors, capsize=3)
        ax.bar_label(bars, fmt="%.4g", fontsize=7, padding=2)
        if key == "similarity":  # similarities crowd below 1: show the range they span
            low = float(np.nanmin(values - spread))
            margin = max(1.0 - low, 1e-4)
            ax.set_ylim(max(0.0, low - 0.5 * margin), 1.0 + 0.2 * margin)
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylabel(name)
        ax.set_title(f"{name} ({better})", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        f"Compared schedules vs FLOPs ratio ({compare.units} prompt-seed units, {compare.num_steps} base steps)"
    )
    fig.savefig(path, dpi=110)
    return path


def _write_schedule_table(record: CalibrationRecord, out: Path) -> None:
    """Every evaluated schedule with its FLOPs, FID and DINO similarity (CSV and JSON)."""
    if record.sweep is not None:
        s = record.sweep
        n = len(s.patterns)
        columns = zip(s.patterns, s.flops, s.fid or [None] * n, s.dino, strict=True)
    else:  # the beam search scores candidates with one number and keeps no FID/DINO pair per schedule
        candidates = record.search.candidates
        columns = ((c["pattern"], c.get("flops"), None, None) for c in candidates)
    rows = [{"pattern": p, "flops": f, "fid": q, "dino": d} for p, f, q, d in columns]
    atomic_write_text(out / "schedules.json", json.dumps(rows, indent=1))
    lines = ["pattern,flops,fid,dino"] + [
        f"{r['pattern']},{r['flops']},{'' if r['fid'] is None else r['fid']},{'' if r['dino'] is None else r['dino']}"
        for r in rows
    ]
    atomic_write_text(out / "schedules.csv", "\n".join(lines) + "\n")


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


def side_by_side(
    videos: Sequence[np.ndarray], *, min_height: int = MIN_SAMPLE_HEIGHT, gap: int = SAMPLE_GAP
) -> np.ndarray:
    """(F, H', W', 3) uint8 of uint8 videos left to right, upscaled (nearest) until the tallest is ``min_height``."""
    # Shorter videos hold their last frame, lower ones are padded at the bottom; the gap columns are white.
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


def _text_image(text: str, width: int, height: int, *, x: int = 4) -> np.ndarray:
    """(height, width, 3) uint8: black ``text`` in PIL's default font on white, vertically centred, clipped."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), "white")
    if width > 0 and height > 0 and text:
        draw = ImageDraw.Draw(image)
        font = ImageFont.load_default()
        top, bottom = draw.textbbox((0, 0), text, font=font)[1::2]
        draw.text((x, (height - (bottom + top)) // 2), text, fill="black", font=font)
    return np.asarray(image, dtype=np.uint8)


def _contact_scale(heights: Sequence[int], min_cell: int) -> int:
    """The integer enlargement that makes the tallest of ``heights`` at least ``min_cell`` px (1 at least)."""
    return max(1, math.ceil(min_cell / max(heights)))


def contact_sheet(
    rows: Mapping[str, np.ndarray],
    *,
    scale: int | None = None,
    min_cell: int = CONTACT_MIN_CELL,
    gap: int = SAMPLE_GAP,
    label_width: int = CONTACT_LABEL_WIDTH,
) -> np.ndarray:
    """(H, W, 3) uint8 grid: one labelled row per video, one column per frame, enlarged by nearest neighbour."""
    # Layout: [label_width][gap][cell][gap][cell]... across, rows of one cell height with a gap between them.
    # Every cell is the largest frame times ``scale`` (default: the smallest factor that makes the tallest frame
    # at least ``min_cell`` px); smaller frames sit at the cell's top left and rows with fewer frames end early,
    # both on white.
    if not rows:
        raise ValueError("contact_sheet needs at least one row: pass {label: (F, H, W, 3) video}")
    videos = {label: _uint8_video(frames, label) for label, frames in rows.items()}
    if scale is None:
        scale = _contact_scale([v.shape[1] for v in videos.values()], min_cell)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    cell_h = scale * max(v.shape[1] for v in videos.values())
    cell_w = scale * max(v.shape[2] for v in videos.values())
    cols = max(v.shape[0] for v in videos.values())
    width = label_width + cols * (gap + cell_w)
    height = len(videos) * cell_h + (len(videos) - 1) * gap
    out = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, (label, video) in enumerate(videos.items()):
        top = r * (cell_h + gap)
        out[top : top + cell_h, :label_width] = _text_image(str(label), label_width, cell_h)
        big = video.repeat(scale, axis=1).repeat(scale, axis=2)
        for f, frame in enumerate(big):
            left = label_width + gap + f * (cell_w + gap)
            out[top : top + frame.shape[0], left : left + frame.shape[1]] = frame
    return out


def write_contact_sheet(
    samples: Mapping[str, Mapping[str, np.ndarray]],
    path: str | os.PathLike[str],
    *,
    scale: int | None = None,
    min_cell: int = CONTACT_MIN_CELL,
) -> Path:
    """Write one PNG with a titled ``contact_sheet`` block per prompt (one enlargement for all); return its path."""
    # Each block is a CONTACT_TITLE_HEIGHT line with the prompt, then its rows; blocks are CONTACT_BLOCK_GAP apart
    # and padded on the right with white to the widest block.
    from PIL import Image

    prompts = {prompt: videos for prompt, videos in samples.items() if videos}
    if not prompts:
        raise ValueError("write_contact_sheet needs at least one prompt with videos: pass {prompt: {label: video}}")
    _check_samples(prompts)
    if scale is None:
        scale = _contact_scale([np.shape(v)[1] for videos in prompts.values() for v in videos.values()], min_cell)
    grids = {prompt: contact_sheet(videos, scale=scale) for prompt, videos in prompts.items()}
    width = max(g.shape[1] for g in grids.values())
    height = sum(CONTACT_TITLE_HEIGHT + g.shape[0] for g in grids.values()) + CONTACT_BLOCK_GAP * (len(grids) - 1)
    sheet = np.full((height, width, 3), 255, dtype=np.uint8)
    top = 0
    for prompt, grid in grids.items():
        sheet[top : top + CONTACT_TITLE_HEIGHT] = _text_image(str(prompt), width, CONTACT_TITLE_HEIGHT)
        top += CONTACT_TITLE_HEIGHT
        sheet[top : top + grid.shape[0], : grid.shape[1]] = grid
        top += grid.shape[0] + CONTACT_BLOCK_GAP
    image = Image.fromarray(sheet)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def _write_gif(video: np.ndarray, path: Path, fps: int) -> Path:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in video]
    duration = max(1, round(1000 / fps))
    return atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
        ),
    )


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

_METHODS = {
    "full": "DINO early sweep, {metric} late sweep",
    "divergence": "velocity divergence only, no sweeps",
    "sweep": "every segment pattern scored, cheapest within tolerance",
    "search": "beam search over segment patterns, cheapest within tolerance",
}


def _summary(record: CalibrationRecord, profile: Mapping) -> list[str]:
    lines = ["## Summary", ""]
    schedule = profile.get("schedule")
    if schedule:
        lines.append(f"- **Schedule {_pattern(schedule)}**: {_segments(schedule)}")
    cost = profile.get("cost") or {}
    if cost:
        ratio = cost.get("flops_ratio")
        share = f" ({100 * ratio:.1f}% of large-only FLOPs)" if isinstance(ratio, int | float) else ""
        lines.append(f"- **Predicted speed-up**: {_fmt(cost.get('predicted_speedup'), '.2f')}x{share}")
    for b in profile.get("boundaries") or []:
        lines.append(
            f"- Boundary at {_pct(b.get('fraction'))} (step {_fmt(b.get('step'), 'd')}, "
            f"sigma {_fmt(b.get('sigma'))}): {b.get('from', '?')} → {b.get('to', '?')}"
        )
    early, late = record.early, record.late
    metric = _metric(late) if late is not None else "FID"
    how = _METHODS.get(record.method)
    lines.append(f"- Method: `{record.method}`" + (f" ({how.format(metric=metric)})" if how else ""))
    if early is not None:
        lines.append(f"- Early boundary (Algorithm 1, alpha {_fmt(early.alpha, 'g')}): {early.choice_text()}")
        stable = early.stability_text(record.num_prompts * len(record.seeds))
        if stable is not None:
            lines.append(f"- Early boundary stability: {stable}")
    if late is not None:
        lines.append(f"- Late boundary {late.choice_text()}")
    proxy = record.divergence.proxy_boundaries
    lines.append(f"- Divergence proxy boundaries (sec 5.1): {' / '.join(_pct(p) for p in proxy)}")
    gaps = []
    if early is not None:
        gaps.append(f"early {100 * proxy[0] - early.chosen.x:+.1f} points")
    if _measured(late):
        gaps.append(f"late {100 * proxy[1] - late.chosen.x:+.1f} points")
    if gaps:
        lines.append(f"- Proxy minus DINO/{metric} boundary: {', '.join(gaps)}")
    features = f", features `{record.feature_model}`" if record.feature_model else ""
    lines.append(
        f"- Data: {record.num_prompts} prompts x seeds {_value(record.seeds)}, {record.num_steps} steps{features}"
    )
    premise = record.premise
    if not premise.tested:
        lines.append(f"- Premise: not tested (method `{record.method}` chooses by tolerance, not by stage structure)")
    elif premise.holds:
        lines.append("- Premise: **holds** (the paper's early / middle / late stage structure was found for this pair)")
    else:
        lines.append("- Premise: **does not hold** for this pair (see below)")
    return [*lines, ""]


def _premise_warning(record: CalibrationRecord, profile: Mapping) -> list[str]:
    premise = record.premise
    if premise.holds or not premise.tested:
        return []
    lines = [
        "## ⚠ The paper's stage structure does not hold for this pair",
        "",
        "The paper's finding (large model early for structure, small model in the middle, large model late for "
        "detail) is empirical. For this pair the calibrator's checks failed:",
        "",
        *_bullets(premise.failed or ["(no reason recorded)"]),
        "",
    ]
    schedule = profile.get("schedule")
    if schedule:
        if len(schedule) == 1:
            what = f"a single-model schedule ({_segments(schedule)})"
        else:
            what = f"schedule {_pattern(schedule)}: {_segments(schedule)}"
        speed = _fmt((profile.get("cost") or {}).get("predicted_speedup"), ".2f")
        lines.append(
            f"**Emitted instead**: {what}, predicted speed-up {speed}x. This is the honest result of the "
            "measurements, not a default L-S-L pretending to be calibrated."
        )
    else:
        lines.append("**Emitted instead**: see the profile's schedule; no calibrated L-S-L is claimed.")
    return [*lines, ""]


def _calls(record: CalibrationRecord) -> list[str]:
    computed, naive = record.calls.computed, record.calls.naive
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


def _divergence_section(record: CalibrationRecord, plotted: bool) -> list[str]:
    div = record.divergence
    lines = ["## Velocity divergence (paper sec 5.1)", ""]
    if plotted:
        lines += ["![velocity divergence U-curve](divergence.png)", ""]
    lines += [f"Proxy boundaries from the divergence curve: {' / '.join(_pct(p) for p in div.proxy_boundaries)}.", ""]
    if div.premise:
        lines += ["Divergence checks that failed:", "", *_bullets(div.premise), ""]
    cos, l2 = div.cosine, div.l2
    rows = [
        [str(i), _fmt(f, ".3f"), _fmt(_at(div.sigma, i)), _fmt(_at(cos.mean, i), ".4g"),
         _fmt(_at(cos.std, i), ".4g"), _fmt(_at(l2.mean, i), ".4g"), _fmt(_at(l2.std, i), ".4g")]
        for i, f in enumerate(div.fraction)
    ]  # fmt: skip
    lines += _table(["step", "fraction", "sigma", "cos mean", "cos std", "l2 mean", "l2 std"], rows)
    header, cols = ["step"], []
    for label, curves in div.per_call.items():
        for metric, short in (("cosine", "cos"), ("l2", "l2")):
            stat = curves.get(metric)
            if stat is not None:
                header.append(f"{_cell(str(label))} {short} mean")
                cols.append(stat.mean)
    if cols:
        rows = [[str(i), *[_fmt(_at(c, i), ".4g") for c in cols]] for i in range(len(div.fraction))]
        lines += ["", "Per call (mean over prompts):", "", *_table(header, rows)]
    return [*lines, ""]


def _early_section(early: EarlyRecord | None, plotted: bool) -> list[str]:
    if early is None:
        return []
    lines = ["## Early boundary: similarity sweep (paper sec 4.2, App. B Algorithm 1)", ""]
    if plotted:
        lines += ["![DINO similarity vs small-model introduction point](early.png)", ""]
    c = early.chosen
    lines += [
        f"Algorithm 1 with alpha {_fmt(early.alpha, 'g')}: {early.choice_text()}. "
        "x is the small-model introduction point: 0 = small-only, 100 = large-only.",
        "",
    ]
    if early.premise:
        lines += ["Early-curve checks that failed:", "", *_bullets(early.premise), ""]
    metrics = _early_metrics(early)
    header = ["x (%)", *[f"{k.upper()} {part}" for k, _ in metrics for part in ("mean", "std")]]
    header += ["DINO mean SE"] if early.se is not None else []
    header += ["chosen in resamples"] if early.stability is not None else []
    header += ["chosen"]
    rows = []
    for i, x in enumerate(early.x):
        row = [_fmt(x, ".1f")]
        for _, stat in metrics:
            row += [_fmt(_at(stat.mean, i)), _fmt(_at(stat.std, i))]
        if early.se is not None:
            row.append(_fmt(_at(early.se, i)))
        if early.stability is not None:
            share = early.stability[i]
            row.append("<1%" if 0 < share < 0.01 else f"{share:.0%}")  # a rare choice is not "0%"
        row.append("★" if c.index == i else "")
        rows.append(row)
    return [*lines, *_table(header, rows), ""]


def _late_section(late: LateRecord | None, plotted: bool) -> list[str]:
    if late is None:
        return []
    metric = _metric(late)
    lines = [f"## Late boundary: {metric} sweep (paper sec 4.3)", ""]
    c = late.chosen
    if not _measured(late):
        return [
            *lines,
            f"No {metric} sweep (no reference set): the late boundary comes from the divergence curve, "
            f"{_fmt(c.x, '.1f')}%.",
            "",
        ]
    if plotted:
        lines += [f"![{metric} vs large-model re-entry point](late.png)", ""]
    lines += [
        f"{metric} on `{late.feature or 'n/a'}` features{_generated(late)} against {late.reference_frames} reference "
        f"frames; chosen {late.choice_text()}. x is where the large model takes over "
        "again: 80 means the last 20% of the process runs on the large model; 100 means L-S-S; x at the early "
        "boundary means no small-model steps (large-only).",
        "",
    ]
    if late.premise:
        lines += ["Late-curve checks that failed:", "", *_bullets(late.premise), ""]
    header = ["x (%)", "step", metric]
    against = "large-only" if late.rule == "parity" else "the minimum"
    header += [f"SE of the difference to {against} (allowed: {late.noise_se:g} SE)"] if late.se is not None else []
    rows = []
    for i, x in enumerate(late.x):
        row = [_fmt(x, ".1f"), _fmt(_at(late.steps, i), "d"), _fmt(_at(late.values, i))]
        row += [_fmt(_at(late.se, i))] if late.se is not None else []
        rows.append([*row, "★" if c.index == i else ""])
    return [*lines, *_table([*header, "chosen"], rows), ""]


def _search_section(record: CalibrationRecord, plotted: bool) -> list[str]:
    if record.sweep is not None:
        name, pattern, rule, cost = "sweep", record.sweep.chosen["pattern"], record.sweep.rule, record.sweep.cost
    elif record.search is not None:
        s = record.search
        name, pattern, rule, cost = "search", s.chosen["pattern"], f"beam search, {s.score}", s.cost
    else:
        return []
    lines = [f"## Schedule {name}: every segment pattern (paper sec 5.2)", ""]
    if plotted:
        lines += ["![front](front.png)", ""]
    lines.append(f"- Chosen: `{pattern}` ({rule})")
    lines += [f"- {line}" for line in cost.get("summary", [])]
    lines += ["- All schedules: [schedules.csv](schedules.csv), [schedules.json](schedules.json)", ""]
    return lines


def _per_role(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{_cell(str(role))} {n}" for role, n in counts.items()) or "none"


def _compare_section(compare: CompareRecord | None, plotted: bool) -> list[str]:
    if compare is None or not compare.rows:
        return []
    metric = compare.metric.upper() if compare.metric else None
    alt = f"similarity and {metric}" if metric else "similarity"
    lines = ["## Comparing given schedules", ""]
    if plotted:
        lines += [f"![{alt} of every compared schedule against its FLOPs ratio](compare.png)", ""]
    against = (
        f"; {metric} on `{compare.late_feature}` features over {compare.generated_frames} generated frames per "
        f"schedule against {compare.reference_frames} reference frames"
        + (f" (subsets of {compare.subset_size})" if compare.subset_size else "")
        if metric
        else "; no --reference, so no late metric"
    )
    lines += [
        f"Every schedule on the same {compare.units} prompt-seed units at the calibration setting ({compare.num_steps} "
        "base steps), generated through the runtime's router; similarity to large-only on "
        f"`{compare.feature}` features{against}. An evaluation only: the calibrated schedule is the method's "
        "decision, made without these rows. NFE, steps and calls are one video's (LTX makes one batched "
        "[uncond, cond] call per step; a role at guidance 1 runs on the cond half).",
        "",
    ]
    header = ["schedule", "kind", "pattern", "NFE", "FLOPs ratio", "similarity mean", "similarity std"]
    header += [metric, f"{metric} std"] if metric == "KID" else [metric] if metric else []
    header += ["steps per role", "calls per role"]
    rows = []
    for r in compare.rows:
        row = [_cell(r.name), r.kind + (" (reused)" if r.reused else ""), _cell(r.pattern), str(r.nfe)]
        row += [_fmt(r.flops_ratio), _fmt(r.similarity), _fmt(r.similarity_std)]
        row += (
            [_fmt(r.late, ".4g"), _fmt(r.late_std, ".4g")]
            if metric == "KID"
            else [_fmt(r.late, ".4g")]
            if metric
            else []
        )
        rows.append([*row, _per_role(r.steps), _per_role(r.calls)])
    sources = [f"`{_cell(r.name)}`: {_cell(r.source)}" for r in compare.rows if r.source]
    lines += _table(header, rows)
    if sources:
        lines += ["", "Compared profiles:", "", *[f"- {s}" for s in sources]]
    calls = _per_role(compare.calls)
    return [*lines, "", f"Transformer calls the comparison computed: {calls}.", ""]


def _samples_section(rows: list[tuple], fps: int, sheet: bool) -> list[str]:
    if not rows:
        return []
    lines = ["## Samples", ""]
    if sheet:
        lines += [
            "Contact sheet: every frame of every schedule, one row per schedule and one block per prompt "
            "(enlarged with nearest neighbour).",
            "",
            f"![contact sheet of every schedule's frames]({CONTACT_SHEET})",
            "",
        ]
    lines += [f"Animated, side by side, left to right, at {fps} fps (upscaled with nearest neighbour).", ""]
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
    record: CalibrationRecord, profile: Mapping, plotted: Mapping[str, bool], samples: list[tuple], fps: int
) -> str:
    name = profile.get("name") or "unnamed profile"
    lines = [f"# FlowBlending calibration report: {_cell(str(name))}", ""]
    if profile.get("description"):
        lines += [_cell(str(profile["description"])), ""]
    lines += _summary(record, profile)
    lines += _premise_warning(record, profile)
    lines += _calls(record)
    lines += _divergence_section(record, plotted.get("divergence", False))
    lines += _early_section(record.early, plotted.get("early", False))
    lines += _late_section(record.late, plotted.get("late", False))
    lines += _search_section(record, plotted.get("front", False))
    lines += _compare_section(record.compare, plotted.get("compare", False))
    lines += _samples_section(samples, fps, plotted.get("contact", False))
    if record.notes:
        lines += ["## Notes", "", *_bullets(record.notes), ""]
    lines += _key_values("Setting", profile.get("setting"))
    prov = _key_values("Provenance", profile.get("provenance"))
    if prov or profile.get("models"):
        lines += prov or ["## Provenance", ""]
        lines += _models(profile)
    return "\n".join(lines).rstrip() + "\n"


# -- entry point -----------------------------------------------------------------------------------------------


def write_report(
    calibration: CalibrationRecord | Mapping[str, Any],
    report_dir: str | os.PathLike[str],
    *,
    profile: Mapping[str, Any] | None = None,
    samples: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    fps: int = 8,
) -> Path:
    """Write the plots, contact sheet, sample GIFs and ``report.md`` into ``report_dir``; return report.md's path."""
    # ``calibration``: the record, or the profile's calibration block as a dict (read with from_dict); parts the
    # method did not produce (``divergence`` has no early/late) are left out. ``profile``: the profile as a dict
    # (name, schedule, boundaries, cost, setting, provenance, models). ``samples``: prompt -> {schedule label ->
    # frames (F, H, W, 3) float in [0, 1] or uint8}: one contact sheet for all, one side-by-side GIF per prompt.
    if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
        raise ValueError(f"fps must be a positive integer, got {fps!r}: pass e.g. fps=8")
    record = calibration if isinstance(calibration, CalibrationRecord) else CalibrationRecord.from_dict(calibration)
    figure_cls = _matplotlib()
    _check_samples(samples)  # bad sample shapes fail before anything is written
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile = profile or {}
    plotted: dict[str, bool] = {"divergence": True}
    _plot_divergence(figure_cls, record, profile, out / "divergence.png")
    if record.early is not None and record.early.x:
        _plot_early(figure_cls, record.early, out / "early.png")
        plotted["early"] = True
    if _measured(record.late):
        _plot_late(figure_cls, record.late, out / "late.png")
        plotted["late"] = True
    if record.sweep is not None or record.search is not None:
        _write_schedule_table(record, out)
        if record.sweep is not None:
            _plot_front(figure_cls, record.sweep, out / "front.png")
            plotted["front"] = True
    if record.compare is not None and record.compare.rows:
        _plot_compare(figure_cls, record.compare, out / "compare.png")
        plotted["compare"] = True
    if samples and any(samples.values()):
        write_contact_sheet(samples, out / CONTACT_SHEET)
        plotted["contact"] = True
    images = {"divergence": "divergence.png", "early": "early.png", "late": "late.png", "front": "front.png"}
    images["compare"] = "compare.png"
    images["contact"] = CONTACT_SHEET
    for key, name in images.items():
        if key not in plotted:  # left by an earlier report in this folder
            (out / name).unlink(missing_ok=True)
    sample_rows = _write_samples(samples, out, fps)
    return atomic_write_text(out / "report.md", _markdown(record, profile, plotted, sample_rows, fps))
