"""Building the book: ``python -m kbnb.book`` executes the chapters (``runner``)."""
