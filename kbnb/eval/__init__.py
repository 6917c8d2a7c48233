"""Evaluation: answer-level metrics (``metrics``), intervals (``stats``), paired
comparisons (``comparisons``), their verdict sentences (``verdicts``), the headline records
of metrics.json (``metrics_file``), TOFU's unlearning suite (``tofu``: the formulas,
``tofu_scoring``: a model scored, ``tofu_sets``: the sets, ``tofu_organism``: against the retain
organism, cached) and the organism's knowledge probes
(``boundary``)."""
