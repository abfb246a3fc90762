"""Names a spec may not use for inputs, tables or layers.

The language asks only for valid identifiers that are not Python keywords and do not start with
``__`` (checked in :mod:`nnspec.spec.models`), and refuses :data:`RESERVED_NAMES`: every Python
backend calls its model with one keyword argument per input, of a method, so nothing can be
named ``self``.

Names that would collide with a framework, a Python builtin or the generated code are the
backend's business: each renames them in the code it generates (see ``assign_names`` in
:mod:`nnspec.backends.torch.naming` and :mod:`nnspec.backends.keras.naming`), so a new backend
never changes the language.
"""

RESERVED_NAMES: frozenset[str] = frozenset({"self"})
