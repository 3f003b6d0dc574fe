"""Notebook 06's figures and ``outputs/<run>/report.md``: the results table, the ablation laid out like the paper's
table (arms in the order and colours of ``helpers.arms``), the targets' verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import arms as registry
from . import uncertainty
from .runs import run_dir, save_figure, stage_warnings
from .scoring import CHANCE_MARGIN

STAGE = "06_evaluation"


def sweep_points(results: dict, shares: dict[str, float]) -> list[tuple[str, float, dict]]:
    """``(arm, general_share, result)`` for the arms that form the ratio sweep, in order of share."""
    return sorted(((a, s, results["arms"][a]) for a, s in shares.items() if a in results["arms"]), key=lambda t: t[1])


def model_rows(results: dict) -> list[tuple[str, dict]]:
    return [("base", results["base"]), *results["arms"].items()]


def label(name: str, m: dict) -> str:
    """A model's name as tables and figures show it: ``(earlier)`` marks an arm carried over from an earlier
    evaluation of the run (``evaluation.merge_earlier``), trained with other settings than the run's last."""
    return f"{name} (earlier)" if m.get("from_earlier_evaluation") else name


def plot_bars(results: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    models = model_rows(results)
    x = np.arange(len(models))
    fig, ax = plt.subplots(figsize=(1.2 * len(models) + 2, 3.8))
    for k, key in enumerate(("general", "domain")):
        vals = [m[f"{key}_accuracy"] for _, m in models]
        errs = [m.get(f"{key}_std", 0.0) for _, m in models]
        ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, yerr=errs, capsize=3, label=key, color=f"C{k}")
    ax.set_xticks(x, [label(name, m) for name, m in models], rotation=20)
    match = results.get("answer_match", "exact")
    ax.set(ylim=(0, 1.05), ylabel=f"accuracy ({match} match)", title="General and domain accuracy (held-out, greedy)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # outside: never over a bar
    return save_figure(fig, path)


def plot_heatmap(results: dict, path: Path) -> Path:
    import matplotlib.pyplot as plt

    models = model_rows(results)
    families = list(results["base"]["per_family"])
    grid = np.array([[m["per_family"][f] for f in families] for _, m in models])
    fig, ax = plt.subplots(figsize=(0.7 * len(families) + 2.5, 0.45 * len(models) + 1.5))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(families)), families, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), [label(name, m) for name, m in models])
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="exact match")
    ax.set_title("Accuracy per task family")
    return save_figure(fig, path)


def plot_tradeoff(results: dict, path: Path, shares: dict[str, float] | None = None) -> Path:
    """General against domain accuracy per model; the ratio-sweep arms, if any, joined by a line in order of share."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    points = sweep_points(results, shares or {})
    if len(points) > 1:
        ax.plot([p[2]["domain_accuracy"] for p in points], [p[2]["general_accuracy"] for p in points],
                color="0.7", zorder=0, label="general share sweep")
        for arm, share, r in points:
            ax.annotate(f"{share:.0%}", (r["domain_accuracy"], r["general_accuracy"]), textcoords="offset points",
                        xytext=(5, -10), fontsize=8, color="0.4")
    models = model_rows(results)
    for i, (name, m) in enumerate(models):  # a shape per model, earlier ones larger: coinciding points stay visible
        ax.errorbar(m["domain_accuracy"], m["general_accuracy"], xerr=m.get("domain_std") or None,
                    yerr=m.get("general_std") or None, fmt="osD^vPX*h"[i % 9], color=f"C{i}", label=label(name, m),
                    capsize=3,
                    markersize=11 - 6 * i / max(1, len(models) - 1), alpha=0.85)
    ax.set(xlabel="domain accuracy", ylabel="general accuracy", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05),
           title="Trade-off: up and to the right is better")
    ax.legend(fontsize=8, loc="lower left")
    return save_figure(fig, path)


# The paper's ablation (its Table: general average over its benchmarks) beside the lab's arms that repeat each row
ABLATION_ROWS = [("base", "the base model, not fine-tuned", registry.BASE_PAPER_GENERAL),
                 *[(a.name, a.what, a.paper_general) for a in registry.ARMS.values()]]


def ablation_table(results: dict) -> list[dict]:
    """The ablation laid out like the paper's table, for the arms this run has; empty without ablation arms."""
    arms = results["arms"]
    if not registry.optional(arms):
        return []
    out = []
    for name, what, paper in ABLATION_ROWS:
        m = results["base"] if name == "base" else arms.get(name)
        if m is None:
            continue
        row = {"arm": name, "label": label(name, m), "what": what, "general": m["general_accuracy"],
               "general_std": m.get("general_std"),
               "domain": m["domain_accuracy"], "domain_std": m.get("domain_std"),
               "forgetting_points": None if name == "base" else round(100 * m["forgetting"], 1),
               "seeds": m.get("n_seeds", 1), "paper_general_average": paper}
        out.append(row)
    return out


def plot_ablation(results: dict, path: Path) -> Path:
    """General and domain accuracy of each ablation row (mean and seed std), the base as a dashed line: which part of
    the method keeps what the base knew, and what each costs the domain."""
    import matplotlib.pyplot as plt

    rows = [r for r in ablation_table(results) if r["arm"] != "base"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.8), sharey=True)
    y = np.arange(len(rows))[::-1]
    for ax, key in zip(axes, ("general", "domain")):
        ax.barh(y, [r[key] for r in rows], xerr=[r[f"{key}_std"] or 0 for r in rows], capsize=3,
                color=[registry.get(r["arm"]).colour for r in rows])
        ax.axvline(results["base"][f"{key}_accuracy"], color="k", ls="--", lw=1, label="base model")
        ax.set(xlim=(0, 1.05), xlabel=f"{key} accuracy")
    axes[0].set_yticks(y, [f"{r['label']}: {r['what']}" for r in rows], fontsize=8)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("The ablation: what keeps the base model's general skill, and what it costs the domain "
                 "(held-out sets, mean ± std over seeds)", fontsize=10)
    return save_figure(fig, path)


def _pm(m: dict, key: str, fmt: str = "{:.3f}") -> str:
    """``0.812 ± 0.021`` (mean ± standard deviation over seeds; the value alone for one seed), ``-`` if absent."""
    if key not in m:
        return "-"
    std = m.get(uncertainty.spread_key(key, "std"))
    return fmt.format(m[key]) + (f" ± {fmt.format(std)}" if m.get("n_seeds", 1) > 1 and std else "")


def _points(m: dict, key: str) -> str:
    return f"{100 * m[key]:+.1f}" if key in m else "-"


def _setup_lines(results: dict, training: dict) -> list[str]:
    """The report's first paragraph: model, training settings (with notebook 04's ``general_passes``), sets."""
    setup, hp = training["setup"], training["hp"]
    rows = " (only the domain tokens' rows)" if hp.get("embedding_rows") == "domain" else ""  # check_hp: with embeddings
    budget = (f"{hp['max_steps']} steps of batch {hp['train_batch_size']} for every arm"
              if hp.get("budget", "steps") == "steps" else
              f"batches of {hp['train_batch_size']} until each arm has seen each of its domain rows "
              f"{hp['domain_epochs']} times (equal domain exposure; each arm's steps below)")
    if results.get("general_passes", 1) > 1:
        budget += f", in {results['general_passes']} passes of new general rows each (notebook 04's general_passes)"
    return [f"Base model `{training['model']}`; {setup['quantization']} base, {setup['compute_dtype']} compute on "
            f"{setup['device']}; LoRA rank {hp['lora_rank']}, {budget}, learning rate {hp['learning_rate']}, "
            "embeddings trained: "
            f"{hp['train_embeddings']}{rows}; seeds {training['seeds']}. Held-out sets: {results['n_general']} general, "
            f"{results['n_domain']} domain instructions; greedy decoding, {results.get('answer_match', 'exact')} "
            f"match{_weights(results)}.", ""]


def _weights(results: dict) -> str:
    """How a GPU evaluation held the base for scoring (notebook 06's ``eval_weights``) when not in 4-bit layers."""
    weights = results.get("eval_weights", "4bit")
    device = results.get("setup", {}).get("device", "cpu")
    return "" if device == "cpu" or weights == "4bit" else f"; the base's weights {weights} for scoring (eval_weights)"


def _dose(training: dict, arm: str) -> str:
    """``steps | domain exposures | general exposures | tokens`` of an arm's training (its first seed's; seeds train
    alike), as notebook 05 recorded them; ``-`` for the base, for an arm without general rows, or for runs from
    before they were recorded."""
    trained = (training.get("arms", {}).get(arm) or [{}])[0]
    cells = [trained.get("steps"), trained.get("domain_exposures"), trained.get("general_exposures") or None,
             trained.get("tokens_seen")]
    return " | ".join("-" if c is None else f"{c:,}" if isinstance(c, int) else f"{c:g}" for c in cells)


def _main_table(results: dict, training: dict) -> list[str]:
    lines = ["| model | general | domain | forgetting (points) | general questions seen in training | "
             "forgetting on the unseen ones (points) | seeds | steps | times each domain row was seen | "
             "times each general row was seen | tokens seen |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in model_rows(results):
        seen = f"{m['general_seen_in_training']:.0%}" if "general_seen_in_training" in m else "-"
        lines.append(f"| {label(name, m)} | {_pm(m, 'general_accuracy')} | {_pm(m, 'domain_accuracy')} | "
                     f"{_points(m, 'forgetting')} | {seen} | {_points(m, 'forgetting_unseen')} | {m.get('n_seeds', 1)} "
                     f"| {_dose(training, name)} |")
    return lines


def _mc_kl_table(results: dict) -> list[str]:
    """Multiple choice (items with choices) and KL drift (needs no labels): whichever of them this run measured."""
    rows = model_rows(results)
    if not any("mc_general_accuracy" in m or "kl_drift" in m for _, m in rows):
        return []
    lines = ["", "Multiple choice (log-likelihood of each option, length-normalised; only for sets whose items have "
             "choices) and drift from the base (mean per-token KL(base || arm) on the base's own answers to the "
             "general questions; 0 = unchanged; needs no reference answers):", "",
             "| model | general MC | domain MC | forgetting MC (points) | KL drift |", "|---|---|---|---|---|"]
    lines += [f"| {label(name, m)} | {_pm(m, 'mc_general_accuracy')} | {_pm(m, 'mc_domain_accuracy')} | "
              f"{_points(m, 'forgetting_mc')} | {_pm(m, 'kl_drift', '{:.4f}')} |" for name, m in rows]
    return lines


SET_NAMES = {"general": "general (answers)", "domain": "domain (answers)", "mc_general": "general (multiple choice)",
             "mc_domain": "domain (multiple choice)"}


def _sets_table(results: dict) -> list[str]:
    """How many questions each headline measure rests on, and how wide that alone makes a 95% interval."""
    counts = results.get("n_questions")
    if not counts:
        return []
    lines = ["## How sure these numbers are", "",
             "Each headline accuracy is a mean over the families below. A set of n questions alone makes an accuracy "
             "uncertain by about ± the last column (95%, at 50% accuracy); seeds add their spread "
             f"({len(results['seeds'])} seed(s) here{'' if len(results['seeds']) > 1 else ': not measured'}). "
             "The verdicts below use both.", "",
             "| measure | families | questions | one question (points) | ± 95% at 50% (points) |", "|---|---|---|---|---|"]
    for measure, per in counts.items():
        fams = [f for f, n in per.items() if n > 0]
        if not fams:  # no family informative for this measure: nothing rests on it
            continue
        se = uncertainty.questions_se({f: 0.5 for f in fams}, {f: per[f] for f in fams})
        lines.append(f"| {SET_NAMES[measure]} | {len(fams)} | {sum(per.values())} | "
                     f"{uncertainty.one_question_points(per):.1f} | {100 * uncertainty.Z95 * se:.1f} |")
    return lines + [""]


def _notes(results: dict) -> list[str]:
    lines = []
    if results.get("informative"):
        measure_name = {"match": "answers", "mc": "multiple-choice"}
        general = sorted({f for f in results["base"]["per_family"] if f in results.get("general_families", [])})
        for measure, fams in results["informative"].items():
            left_out = [f for f in general if f not in fams]
            if left_out:
                lines += ["", f"Left out of the {measure_name[measure]} headline (the base is within "
                          f"{100 * CHANCE_MARGIN:.0f} points of chance there, so nothing can be forgotten): "
                          f"{', '.join(left_out)}."]
    earlier = [name for name, m in results["arms"].items() if m.get("from_earlier_evaluation")]
    if earlier:
        lines += ["", f"(earlier): {', '.join(earlier)} come from an earlier evaluation of this run, with the same "
                  "held-out sets; notebook 05's last run did not list them, so they were trained with other "
                  "settings than the line above (their adapters are kept under 05_training)."]
    return lines + ["", "Forgetting = base general accuracy - arm general accuracy (positive: the arm forgot). The "
                    "unseen column compares the arm and the base on the held-out general questions that do not occur "
                    "verbatim in the arm's training data.", ""]


def _ablation_lines(results: dict) -> list[str]:
    table = ablation_table(results)
    if not table:
        return []

    def pm(v, sd):
        return f"{v:.3f}" + (f" ± {sd:.3f}" if sd else "")

    lines = ["## The ablation", "", "| arm | what | general | domain | forgetting (points) | the paper's general "
             "average |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['what']} | {pm(r['general'], r['general_std'])} | {pm(r['domain'], r['domain_std'])} "
              f"| {'-' if r['forgetting_points'] is None else format(r['forgetting_points'], '+.1f')} | "
              f"{r['paper_general_average'] or '-'} |" for r in table]
    return lines + [""]


def _warning_lines(run_name: str, own: list[str]) -> list[str]:
    """Every notebook's ``WARNING:`` lines: the earlier stages' from their metrics, this notebook's as given (its
    metrics on disk are from its previous run)."""
    warnings = {s: w for s, w in stage_warnings(run_name).items() if s != STAGE} | ({STAGE: own} if own else {})
    if not warnings:
        return []
    lines = ["## Warnings from the notebooks", "", "Each was printed by its notebook as a `WARNING:` line; the results "
             "above stand, but read them with these in mind.", ""]
    return lines + [f"- {stage[:2]}: {message}" for stage, messages in warnings.items() for message in messages] + [""]


def _target_lines(results: dict) -> list[str]:
    checks = results.get("checks")
    if not checks:
        return []
    lines = ["## The reproduction's targets, as measured", "",
             "Each verdict comes from a 95% interval (set sizes and seeds, above): met, NOT met, or not "
             "distinguishable when the interval straddles the target.", ""]
    for c in checks:
        verdict = c.get("verdict") or {True: "met", False: "not met", None: "not measurable"}[c["met"]]
        earlier = [a for a, m in results["arms"].items() if m.get("from_earlier_evaluation") and a in c["target"]]
        flag = f" [uses {', '.join(earlier)} from an earlier evaluation]" if earlier else ""
        lines.append(f"- {verdict.replace('not met', 'NOT met')}: {c['target']} (measured: {c['measured']}){flag}")
    if not any(c.get("met") is not None for c in checks):
        lines += ["", "**No target can be decided by this run**: every interval straddles its target or the numbers "
                  "cannot show it. Read the numbers above as a check that the pipeline runs, not as evidence for or "
                  "against the method; more questions per family and more seeds narrow the intervals."]
    return lines + [""]


BENCHMARK_METRICS = ("acc_norm", "acc", "lenient", "prompt_level_strict_acc")  # the column, in order; else the first


def _benchmark_lines(results: dict) -> list[str]:
    """Notebook 06's ``benchmarks`` (lm-evaluation-harness): one column per task, its first metric in
    ``BENCHMARK_METRICS`` (else its first), mean over seeds; lm-eval's own output beside results.json."""
    bench = results.get("benchmarks") or {}
    if not bench:
        return []
    first = next(iter(bench.values()))
    columns = []
    for task, metrics in first.items():
        metric = next((m for m in BENCHMARK_METRICS if m in metrics), next(iter(metrics)))
        columns.append((task, metric))
    lines = ["## lm-evaluation-harness", "",
             "lm-eval's tasks (notebook 06's `benchmarks`), scored by lm-eval on the base and each adapter; lm-eval "
             "averages over questions. Each model's full output: `06_evaluation/lm_eval/<model>/results.json`.", "",
             "| model | " + " | ".join(f"{t} ({m})" for t, m in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for model, tasks in bench.items():
        lines.append(f"| {model} | " + " | ".join(f"{tasks.get(t, {}).get(m, float('nan')):.3f}" for t, m in columns)
                     + " |")
    return lines + [""]


def in_notebook(text: str) -> str:
    """``report.md``'s text for display in notebook 06: without its "Figures" section, whose links are relative to
    the report's folder and show as broken images in the notebook (the notebook shows each figure above)."""
    head, _, _ = text.partition("## Figures")
    return head.rstrip() + "\n\n(The figures are shown above; in `report.md` they follow here.)\n"


def report(run_name: str, results: dict, training: dict, figures: list[str], warnings: list[str] = ()) -> Path:
    """``outputs/<run>/report.md``: what was trained, the results tables, how sure they are, the warnings of every
    notebook (``warnings``: notebook 06's own) and the targets' verdicts."""
    lines = [f"# Run `{run_name}`: forgetting and its mitigation", "", *_setup_lines(results, training),
             *_main_table(results, training), *_mc_kl_table(results), *_notes(results), *_benchmark_lines(results), *_sets_table(results),
             *_ablation_lines(results), *_warning_lines(run_name, list(warnings)), *_target_lines(results),
             "## Figures", "", *[f"![{f}]({STAGE}/{f})" for f in figures]]
    path = run_dir(run_name) / "report.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
