"""Exact-match evaluation against the lab's ground truth (the task parser and answer functions).

This module is evaluation: it may read the hidden mixture and the verifiers. Notebooks 01-05 must not import it
(``tests/test_lab_isolation.py`` enforces that), except in sections marked as lab-only measurements.
"""

from __future__ import annotations

from collections import defaultdict

from . import tasks


def heldout_examples(families: dict[str, tasks.Family], n_per_family: int, seed: int) -> list[tasks.Example]:
    """Fresh instructions, ``n_per_family`` of each family (uniform, so every family is measured equally)."""
    out = []
    for i, name in enumerate(sorted(families)):
        out += tasks.sample_examples({name: 1.0}, n_per_family, seed=seed * 7919 + i)
    return out


def heldout_sets(n_per_family: int, seed: int) -> dict[str, list[tasks.Example]]:
    """The held-out instructions stages 00 and 06 score (with ``helpers.scoring.score_sets``):
    ``{"general": [...], "domain": [...]}``."""
    return {"general": heldout_examples(tasks.GENERAL_FAMILIES, n_per_family, seed),
            "domain": heldout_examples(tasks.DOMAIN_FAMILIES, n_per_family, seed + 1)}


def family_distribution(texts: list[str]) -> tuple[dict[str, float], int]:
    """Share of each general family among the texts that parse as well-formed lab instructions, and that count."""
    counts: dict[str, int] = defaultdict(int)
    for text in texts:
        parsed = tasks.parse_instruction(text)
        if parsed is not None:
            counts[parsed[0]] += 1
    n = sum(counts.values())
    return {f: counts.get(f, 0) / max(1, n) for f in sorted(set(counts) | set(tasks.GENERAL_FAMILIES))}, n


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in sorted(set(p) | set(q)))


def reconstruction_report(samples: list[dict], kept: list[dict], figure_path=None) -> dict:
    """Lab-only: how close the reconstructed instruction distribution is to the hidden mixture.

    ``well_formed_rate``: share of *all* sampled texts that parse as a lab instruction; ``in_support_rate``: share
    whose slot values also lie inside what the family samples (e.g. "sort 7 7 3" is well-formed but has a repeated
    digit, which the world never taught). ``tv_distance``: total
    variation between the family distribution of the well-formed samples and the hidden mixture (what the model
    produces). ``tv_distance_kept``: the same after cleaning and dedup (what stage 02 receives; dedup flattens
    families with few distinct instructions, e.g. 80 possible capital questions).
    """
    from .zoo import hidden_mixture

    hidden = hidden_mixture()
    sampled, n_wf = family_distribution([s["text"] for s in samples])
    after, _ = family_distribution([k["instruction"] for k in kept])
    in_support = sum(tasks.parse_instruction(s["text"], in_support=True) is not None for s in samples)
    report = {"well_formed_rate": n_wf / max(1, len(samples)), "in_support_rate": in_support / max(1, len(samples)),
              "tv_distance": total_variation(sampled, hidden),
              "tv_distance_kept": total_variation(after, hidden), "family_share_sampled": sampled,
              "family_share_kept": after, "hidden_mixture": hidden}
    if figure_path is not None:
        import matplotlib.pyplot as plt
        import numpy as np

        fams = sorted(hidden, key=hidden.get, reverse=True)
        x = np.arange(len(fams))
        fig, ax = plt.subplots(figsize=(9, 3.5))
        ax.bar(x - 0.27, [hidden[f] for f in fams], 0.27, label="hidden mixture (truth)", color="black")
        ax.bar(x, [sampled.get(f, 0) for f in fams], 0.27, label=f"sampled (TV {report['tv_distance']:.3f})")
        ax.bar(x + 0.27, [after.get(f, 0) for f in fams], 0.27, label=f"kept after dedup (TV {report['tv_distance_kept']:.3f})")
        ax.set_xticks(x, fams, rotation=30, ha="right")
        ax.set_ylabel("share")
        ax.set_title("Lab only: reconstructed vs hidden instruction distribution")
        ax.legend()
        from ..runs import save_figure

        save_figure(fig, figure_path)
    return report


class LabVerifier:
    """Lab-only scorer: 1.0 if the response is the correct answer, 0.0 if not, None for a malformed instruction.

    It is ground truth, so it is used to *measure* other scorers; a preset may select it as the scorer only by
    naming ``lab_verifier`` explicitly (an upper bound on what filtering can achieve).
    """

    name = "lab_verifier"

    def score(self, rows: list[dict]) -> list[float | None]:
        return [None if tasks.parse_instruction(r["instruction"]) is None
                else float(tasks.verify(r["instruction"], r["response"])) for r in rows]


def selection_report(rows: list[dict], kept: list[dict]) -> dict:
    """Lab-only: how often the selected response is correct, against picking a candidate at random.

    Rates are over instructions inside the families' support (what the world taught; see ``in_support_rate`` in
    notebook 01), and, with the suffix ``_well_formed``, over every well-formed instruction.
    """
    def rates(in_support: bool) -> dict:
        ok_instr = {r["instruction_id"] for r in rows
                    if tasks.parse_instruction(r["instruction"], in_support=in_support) is not None}
        cands = [r for r in rows if r["instruction_id"] in ok_instr]
        chosen = [r for r in kept if r["instruction_id"] in ok_instr]
        correct = defaultdict(bool)
        for r in cands:
            correct[r["instruction_id"]] |= tasks.verify(r["instruction"], r["response"])
        return {"selected_correct_rate": sum(tasks.verify(r["instruction"], r["response"]) for r in chosen) / max(1, len(chosen)),
                "random_candidate_correct_rate": sum(tasks.verify(r["instruction"], r["response"]) for r in cands) / max(1, len(cands)),
                "any_candidate_correct_rate": sum(correct.values()) / max(1, len(ok_instr)),
                "n_selected_measured": len(chosen)}

    support, formed = rates(True), rates(False)
    return {**support, **{f"{k}_well_formed": v for k, v in formed.items()}}


def oracle_rows(n: int, seed: int) -> list[dict]:
    """Lab only: ``n`` conversations drawn from the base model's true hidden mixture, with correct answers (the
    ``oracle`` arm of notebook 04: what replaying the original SFT data would give)."""
    from .zoo import hidden_mixture

    return [{"messages": e.messages()} for e in tasks.sample_examples(hidden_mixture(), n, seed)]
