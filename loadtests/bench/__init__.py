"""``make bench``: five ways of switching versions, side by side in one run (``python -m loadtests.bench``)."""
