"""Studies: grids of runs over factors and seeds, and their comparison with confidence intervals.

* :mod:`~hybridconv.studies.grid` -- factors, products and point names (no flags, no JAX:
  config files import it for ``study()``);
* :mod:`~hybridconv.studies.plan` -- a study loaded once: its points, their names and each
  point's resolved, checked config;
* :mod:`~hybridconv.studies.runner` -- runs points as processes into one study root;
* :mod:`~hybridconv.studies.records` -- what a run directory holds, read without JAX;
* :mod:`~hybridconv.studies.stats` -- per-group intervals and paired differences;
* :mod:`~hybridconv.studies.compare` -- ``hybridconv compare``'s study table (its files are
  written by :mod:`hybridconv.reports.compare_report`).
"""
