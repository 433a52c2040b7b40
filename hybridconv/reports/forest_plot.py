"""The forest plot of a study report: each arm's paired difference to the reference per size.

The report's main figure, drawn to read exactly as ``FINDINGS.md`` words it: a row is
coloured only where the difference survives Holm's adjustment, so the eye and the
generated sentences never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.lines import Line2D

from hybridconv.reports import study_figures
from hybridconv.reports.study_figures import plt

Row = tuple[float, float, float, float]  # mean, ci_low, ci_high (points), Holm-adjusted p
_LEADS, _TRAILS, _UNADJUSTED, _SPANS = "tab:blue", "tab:red", "0.3", "0.72"


def forest_colour(mean: float, low: float, high: float, p_holm: float, alpha: float) -> str:
  """A row's colour: blue or red only where the difference survives Holm's adjustment.

  ``FINDINGS.md`` calls a difference detected only when ``p_holm < alpha``; a raw
  interval that excludes 0 without surviving the adjustment is dark grey, one that
  spans 0 light grey (NaN ``p_holm``, too few seeds, never counts).
  """
  if p_holm < alpha:
    return _LEADS if mean > 0 else _TRAILS
  return _SPANS if low <= 0 <= high else _UNADJUSTED


def _forest_legend(readings: Sequence[str], alpha: float) -> list[Line2D]:
  """Neutral handles: the marker tells the reading, the colour what the difference survives."""
  handles = [
    Line2D(
      [],
      [],
      linestyle="none",
      marker="o" if index == 0 else "D",
      markersize=5 if index == 0 else 4,
      color="black",
      markerfacecolor="black" if index == 0 else "white",
      label=reading,
    )
    for index, reading in enumerate(readings)
  ]
  for colour, label in (
    (_LEADS, f"arm ahead, Holm p < {alpha:g}"),
    (_TRAILS, f"arm behind, Holm p < {alpha:g}"),
    (_UNADJUSTED, "CI excludes 0, not after Holm"),
    (_SPANS, "CI spans 0"),
  ):
    handles.append(Line2D([], [], color=colour, linewidth=2, label=label))
  return handles


def forest(
  panels: Mapping[str, Mapping[str, Mapping[str, Row]]],
  *,
  reference: str,
  path: str,
  alpha: float,
) -> str:
  """Paired differences to the reference: one panel per size, one row per arm, 95% CI bars.

  ``panels``: title -> reading -> arm -> (mean, low, high, Holm-adjusted p), the interval
  in points. The first reading is drawn filled, the others hollow and slightly offset,
  so "learns faster" and "ends better" sit side by side on one row per arm; the colour
  follows :func:`forest_colour`.
  """
  arms = sorted({arm for readings in panels.values() for rows in readings.values() for arm in rows})
  count = len(panels)
  fig, axes = plt.subplots(
    1,
    count,
    figsize=(max(7.0, 3.6 * count + 1.6), 0.32 * len(arms) + 1.9),
    sharey=True,
    squeeze=False,
  )
  y = {arm: i for i, arm in enumerate(reversed(arms))}
  reading_names: list[str] = []
  for ax, (title, by_reading) in zip(axes[0], panels.items(), strict=True):
    for index, (reading, rows) in enumerate(by_reading.items()):
      if reading not in reading_names:
        reading_names.append(reading)
      offset = -0.18 * index
      for arm, (mean, low, high, p_holm) in rows.items():
        color = forest_colour(mean, low, high, p_holm, alpha)
        ax.plot([low, high], [y[arm] + offset] * 2, color=color, linewidth=1.6)
        ax.plot(
          mean,
          y[arm] + offset,
          marker="o" if index == 0 else "D",
          markersize=5 if index == 0 else 4,
          color=color,
          markerfacecolor=color if index == 0 else "white",
        )
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(f"difference to {reference} (points)")
    ax.grid(axis="x", alpha=0.3)
  axes[0][0].set_yticks(list(y.values()), list(y.keys()), fontsize=8)
  handles = _forest_legend(reading_names, alpha)
  fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
  fig.suptitle(
    "Paired difference to the reference (mean, 95% CI; coloured where it survives Holm's "
    "adjustment)"
  )
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  return study_figures.save(fig, path, whole_labels=True)
