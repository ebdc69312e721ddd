"""``--method search``: a beam search over the K-segment schedule trie for K too large to sweep (sec 5.2).

Rank 0 scores prefixes on all units (:func:`calibrate.trie.beam_search`); its first evaluation, large-only, runs
the small model as shadow, which gives the divergence curve (the tie-break) and the first small step of every
``L^d S`` candidate. Calls per unit: large ``c * (N + sum over scored candidates of their large tail)``, small
``c * (N + sum over scored candidates of their small segment - #candidates that follow a large-only prefix)``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flowblending.schedule import segments_from_pattern

from ..record import PremiseRecord, SearchRecord
from ..sampling import opened
from ..trie import beam_search, segment_steps
from .base import Context, Decision, Method, divergence_record, new_record, trajectory_data
from .sweep import cost_block, starts_small_note

__all__ = ["SearchMethod", "search_calls"]


def search_calls(num_steps: int, calls_per_step: int, segments: int, candidates: list[dict[str, Any]]) -> dict:
    """Transformer calls per role per unit of a beam search that scored ``candidates`` (module docstring)."""
    spans = segment_steps(num_steps, segments)
    large = small = num_steps
    for cand in candidates:
        d = cand["depth"]
        if cand["pattern"] == "L" * segments:
            continue
        small += len(spans[d]) - (1 if cand["pattern"][:d] == "L" * d else 0)
        large += num_steps - spans[d].stop
    return {"large": large * calls_per_step, "small": small * calls_per_step}


class SearchMethod(Method):
    def compute(self, ctx: Context) -> None:
        config, work, k = ctx.config, ctx.work, ctx.config.segments
        ctx.prepare_reference()
        path = work.search(k, config.beam_width)
        if ctx.is_main and not path.exists():
            sampler = ctx.sampler
            units = [opened(u) for u in ctx.units]
            ctx.log(f"beam search over {k} segments, beam width {config.beam_width}, on all {len(units)} units")
            result = self._search(ctx, units)
            for unit, (transformer, calls) in zip(ctx.units, result.pop("_first"), strict=True):
                work.write_json(work.trajectory(unit), trajectory_data(sampler, transformer, calls))
            work.write_json(path, result)
        ctx.wait()

    def _search(self, ctx: Context, units: list) -> dict[str, Any]:
        from ..metrics import feature_similarity, fid_against_reference, frames_of

        config, sampler = ctx.config, ctx.sampler
        extractor = ctx.extractor("dino")
        fid = ctx.extractor("fid") if config.reference else None
        ref = ctx.reference_state()["state"] if config.reference else None
        large_feats: list = []
        first: list = []

        def score(pattern: str, frames_per_unit: list) -> float:
            feats = [extractor(frames_of(f)) for f in frames_per_unit]
            if not large_feats:  # beam_search scores large-only first
                large_feats.extend(feats)
            if fid is None:
                sims = [feature_similarity(f, r) for f, r in zip(feats, large_feats, strict=True)]
                return 1.0 - sum(sims) / len(sims)
            fid_feats = [
                f if fid is extractor else fid(frames_of(v)) for f, v in zip(feats, frames_per_unit, strict=True)
            ]
            return fid_against_reference(fid, ref, fid_feats)

        def on_first(_index: int, transformer: Any) -> None:
            first.append((transformer, dict(transformer.counters.calls)))

        def flops(transformer: Any) -> dict[str, float]:
            from flowblending.cost import step_flops

            return {r: step_flops(sampler.models[r], transformer.first_step_inputs) for r in ("large", "small")}

        result = beam_search(
            sampler,
            units,
            config.segments,
            score,
            config.beam_width,
            tolerance=config.tolerance,
            flops_per_step=flops,
            shadow="small",
            on_first=on_first,
        )
        stats = result.stats
        return {
            "segments": config.segments,
            "beam_width": config.beam_width,
            "tolerance": config.tolerance,
            "score": "FID" if fid is not None else "1 - DINO similarity to large-only",
            "candidates": [asdict(c) for c in result.candidates],
            "beams": result.beams,
            "chosen": asdict(result.chosen),
            "reference_score": result.reference_score,
            "cost": cost_block([stats]) | {"patterns_in_space": 2**config.segments},
            "_first": first,
        }

    def decide(self, ctx: Context) -> Decision:
        config, work, n, k = ctx.config, ctx.work, ctx.num_steps, ctx.config.segments
        trajectories = ctx.trajectories()
        data = work.read_json(work.require(work.search(k, config.beam_width), None, "the beam search result"))
        search = SearchRecord.from_dict(data)
        c = trajectories[0]["calls_per_step"]
        pattern = search.chosen["pattern"]
        scratch = search.cost["from_scratch_calls"]
        record = new_record(
            ctx,
            divergence=divergence_record(trajectories, n),
            search=search,
            premise=PremiseRecord(holds=True, tested=False),
            computed=search.cost["calls"],
            formula=search_calls(n, c, k, list(search.candidates)),
            naive={r: scratch.get(r, 0) + n * c * len(ctx.units) for r in ("large", "small")},
            calls_per_step=c,
            notes=starts_small_note(pattern),
        )
        return Decision(segments_from_pattern(pattern), record)
