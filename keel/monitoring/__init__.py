"""Monitoring: is the data a model sees today still the data it was trained on?

- :mod:`keel.monitoring.stats`: the drift statistics, pure vectorised functions
  over sorted values or aligned counts, and the table that registers them
  (:mod:`keel.monitoring.kolmogorov`: KS p-values for large samples).
- :mod:`keel.monitoring.columns`: one side of a comparison summarised once per
  column (sorted values, category counts, missing counts), so a reference is
  computed once and reused for every window.
- :mod:`keel.monitoring.drift`: column typing, the test chosen per column by a
  preset, Benjamini-Hochberg across columns, dataset drift, data quality, and
  the result (:mod:`keel.monitoring.result`, JSON schema ``keel.drift/1``);
  :mod:`keel.monitoring.quality`: missing, out-of-range and unseen values.
- :mod:`keel.monitoring.report`: the self-contained HTML report.
"""
