"""Evaluation: answer-level metrics (``metrics``), intervals and paired comparisons
(``stats``), TOFU's unlearning suite (``tofu``) and the organism's knowledge probes
(``boundary``)."""
