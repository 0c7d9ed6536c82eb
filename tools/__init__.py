"""Maintainer tools (run from the repository root as ``python -m tools.<name>``).

``catalogue`` is the one home of the list of notebooks; ``make_student`` writes the student
copies from the solutions; ``run_notebooks`` executes notebooks with full settings.
"""
