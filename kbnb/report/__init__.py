"""What every chapter shares: the ``Chapter`` helper (run folder, seeds, headlines, checks,
glue, figures), typed chapter parameters and declarations, run folders, and the results
page's forest plot of every claim (``forest``)."""
