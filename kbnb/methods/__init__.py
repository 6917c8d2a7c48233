"""The other methods the book reproduces, algorithms only: R-Tuning (``rtuning``), RAIT and
CRaFT (``rait``), and the attacks on a LUNAR edit (``attacks``)."""
