"""Registries: the one mechanism behind variants, criteria, rewinding modes and analyses.

A :class:`Registry` is a dict from name to entry that refuses a name twice. Modules that
own a registry expose ``register`` (a decorator), ``get`` and ``names`` from it.
Pure Python: recipe parsing reads registries without TensorFlow.
"""


class Registry(dict):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def add(self, name, entry):
        if not name:
            raise ValueError(f"a {self.kind} needs a name")
        if name in self:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self[name] = entry
        return entry

    def register_class(self, cls):
        """Class decorator: register an instance of ``cls`` under ``cls.name``."""
        self.add(cls.name, cls())
        return cls

    def register_function(self, name):
        """Function decorator: register the function under ``name``."""
        return lambda function: self.add(name, function)

    def names(self):
        return tuple(self)
