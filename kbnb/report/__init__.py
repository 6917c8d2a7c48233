"""What every chapter shares: the ``Chapter`` helper (run folder, seeds, headlines, checks,
glue, figures), typed chapter parameters and declarations, and run folders."""
