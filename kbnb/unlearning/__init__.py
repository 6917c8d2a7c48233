"""Unlearning: the methods behind one registry (``methods``: one class per method on the
base of ``base``), their losses (``losses``), the one training loop (``loop``), the NPO
toy's tracking of answers during unlearning (``tracking``), and LUNAR (``lunar``)."""
