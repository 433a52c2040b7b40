"""Every report a person reads, written from the records and statistics the lower floors produce.

The top floor of the library: it may import ``studies``, ``robustness``, ``tracking`` and
``analysis``; nothing below imports it, so a report can change without touching what runs.

* :mod:`~hybridconv.reports.run_report` -- a run's ``REPORT.md`` (``hybridconv analyze``), with
  its figures in :mod:`~hybridconv.reports.run_figures` and the robustness section in
  :mod:`~hybridconv.reports.robustness`;
* :mod:`~hybridconv.reports.compare_report` -- ``hybridconv compare``: every file of a study
  report (CSVs, ``FINDINGS.md`` and the README block, ``STUDY.md``), from the study table of
  :mod:`hybridconv.studies.compare`;
* :mod:`~hybridconv.reports.study_csv` -- ``results.csv``, ``summary.csv`` and ``paired.csv``;
* :mod:`~hybridconv.reports.findings` -- ``FINDINGS.md``, one sentence per comparison;
* :mod:`~hybridconv.reports.study_report` -- ``STUDY.md``: its frame and the order of its
  sections, drawn from :mod:`~hybridconv.reports.study_tables` (result tables),
  :mod:`~hybridconv.reports.review_tables` (arms, budgets, per-seed values),
  :mod:`~hybridconv.reports.study_curves` (figures over runs) and
  :mod:`~hybridconv.reports.study_filters` (what the first layer became), with the shared
  naming of arms in :mod:`~hybridconv.reports.study_arms` and the matplotlib drawing in
  :mod:`~hybridconv.reports.study_figures`;
* :mod:`~hybridconv.reports.wandb_report` -- W&B comparison reports (``hybridconv wandb-report``).
"""
