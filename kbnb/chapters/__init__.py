"""One module per notebook, with the notebook's name: its parameters, declaration, records,
tables, figures and sentences."""
