"""What a reviewer checks first in a study report: each arm's definition, each size's training
budget, and the per-seed values behind every mean.

Pure functions of the runs' records that return Markdown lines for ``STUDY.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hybridconv.studies import compare, grid, records

SIZE_KEY = "data.train_size"
# The budget a run trained with: (column, config key) -- the same for every arm of a size.
BUDGET_KEYS = (
  ("length", "train_for"),
  ("batch", "batch_size"),
  ("optimiser", "optim.name"),
  ("peak lr", "optim.learning_rate"),
  ("schedule", "optim.schedule"),
  ("warm-up", "optim.warmup"),
  ("weight decay", "optim.weight_decay"),
)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return lines


def _parsed_json(value: Any) -> Any:
  if isinstance(value, str) and value.startswith("{"):
    try:
      return json.loads(value)
    except ValueError:
      return value
  return value


def _spec_text(value: Any) -> str:
  """A kernel source as one line of code (JSON objects compacted)."""
  if isinstance(value, str) and value.startswith("{"):
    try:
      value = json.dumps(json.loads(value), separators=(",", ":"))
    except ValueError:
      pass
  return f"`{value}`"


def resolved_source(spec: Any) -> str:
  """A kernel source with every default spelt out: each bank's options, a Gabor layer's fields.

  ``fixed:gabor`` names a bank; what a reviewer needs is which filters that is
  (orientations, scales, frequencies, phases), so a bank's defaults are filled in.
  """
  from hybridconv.kernels import banks  # noqa: PLC0415 (imports JAX: only when reporting)
  from hybridconv.nn import sources  # noqa: PLC0415

  def text(source) -> str:
    if isinstance(source, (sources.Fixed, sources.Free)) and isinstance(
      getattr(source, "bank", getattr(source, "init", None)), str
    ):
      name = source.bank if isinstance(source, sources.Fixed) else source.init
      options = {**banks.bank_options(name), **dict(source.options)}
      shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
      kind = "fixed" if isinstance(source, sources.Fixed) else "free, init"
      return f"{kind} {name}({shown}), normalize={source.normalize}"
    if isinstance(source, sources.Hybrid):
      return "hybrid[" + "; ".join(f"{size}: {text(g)}" for g, size in source.groups) + "]"
    if isinstance(source, sources.BankMix):
      fields = f"norm={source.norm}, activation={source.activation}"
      if not isinstance(source.bank, sources.Fixed):  # a fixed bank uses all of its filters
        fields = f"num_filters={source.num_filters}, {fields}"
      return f"bankmix[bank: {text(source.bank)}; {fields}]"
    return repr(source)

  try:
    return text(sources.parse(spec))
  except ValueError as error:
    return f"(cannot be parsed: {error})"


def arms_section(runs: Sequence[records.RunRecord], arm_factors: Sequence[str]) -> list[str]:
  """Each arm's first layer and other kernel settings exactly as its runs were configured."""
  arms: dict[str, dict[str, str]] = {}
  for run in runs:
    name = ", ".join(grid.label(run.flat.get(k)) for k in arm_factors) or "all runs"
    arms.setdefault(
      name,
      {
        "first layer": _spec_text(run.flat.get("model.first_layer")),
        "resolved": resolved_source(_parsed_json(run.flat.get("model.first_layer"))),
        "other layers": _spec_text(run.flat.get("model.kernels") or "{}"),
      },
    )
  if not arms:
    return []
  rows = [
    [f"`{name}`", spec["first layer"], spec["resolved"], spec["other layers"]]
    for name, spec in arms.items()
  ]
  return [
    "## Arms",
    "",
    "Each arm's kernel sources as its runs' `config.json` holds them (`model.first_layer`; "
    "`model.kernels` for the other convs), and the first layer with every default spelt out "
    "(each bank's options, a Gabor layer's fields).",
    "",
    *_table(["arm", "model.first_layer", "in full", "model.kernels"], sorted(rows)),
    "",
  ]


def budget_section(runs: Sequence[records.RunRecord]) -> list[str]:
  """The training budget per training size (and a warning where arms of a size differ)."""
  by_size: dict[Any, set[tuple]] = {}
  steps: dict[Any, set[int]] = {}
  for run in runs:
    size = run.flat.get(SIZE_KEY)
    by_size.setdefault(size, set()).add(tuple(run.flat.get(key) for _, key in BUDGET_KEYS))
    total = (run.summary or {}).get("total_steps")
    if total is not None:
      steps.setdefault(size, set()).add(int(total))
  rows = []
  for size in sorted(by_size, key=lambda v: (not v, v or 0)):
    for budget in sorted(by_size[size], key=repr):
      label = f"{int(size):,}" if size else "all"
      rows.append([label, *budget, ", ".join(str(s) for s in sorted(steps.get(size, ())))])
  uneven = [size for size, budgets in by_size.items() if len(budgets) > 1]
  lines = [
    "## Training budget per size",
    "",
    "What every run of a training size trained with (from the runs' configs; steps from their "
    "summaries).",
  ]
  if uneven:
    lines.append(f"**Not every arm had the same budget** at sizes {uneven}: one row per budget.")
  lines += ["", *_table(["training images", *(c for c, _ in BUDGET_KEYS), "steps"], rows), ""]
  return lines


def per_seed_section(groups: Sequence[compare.Group], factors: Sequence[str]) -> list[str]:
  """Every group's final test accuracy seed by seed (the values behind each mean)."""
  rows = []
  for group in groups:
    values = {run.flat.get("seed"): run.final() for run in group.runs}
    cells = [grid.cell(k, v) for k, v in zip(factors, group.levels, strict=True)]
    text = ", ".join(f"{seed}: {100 * v:.2f}" for seed, v in sorted(values.items(), key=_seed_key))
    rows.append([*cells, len(values), text])
  if not rows:
    return []
  return [
    "## Per-seed final test accuracy",
    "",
    "Seed: accuracy (%), for every group (also in `results.csv`, one row per run).",
    "",
    *_table([*(k.split(".")[-1] for k in factors), "n", "per seed"], rows),
    "",
  ]


def _seed_key(item: tuple[Any, float]) -> tuple:
  seed = item[0]
  return (0, seed, "") if isinstance(seed, int) else (1, 0, str(seed))
