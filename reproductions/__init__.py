"""Reproductions of the README's three problems on real corpora (20 Newsgroups, Penn Treebank).

Each module runs from one command (``python -m reproductions.<name>``) and writes a markdown
table, a plot and the per-run logs under ``reproductions/results/<name>/``.
"""
