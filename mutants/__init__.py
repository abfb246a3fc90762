"""Mutation check of the test suite: curated semantic mutants as patch files.

Each ``*.patch`` here puts one small, realistic bug into nnspec; ``manifest.toml`` names the tests
that must catch it. ``python -m mutants.run`` (``make mutate``) applies each patch to a scratch
copy of the working tree and runs those tests there. See the README's "Mutation check".
"""
