"""Old spellings of renamed parameters and attributes, accepted with a DeprecationWarning.

The one mechanism for DESIGN.md's "old spellings accepted where users' scripts rely on
them": ``@renamed(N="samples_per_image")`` on a function lets a caller still pass ``N=``;
on a class (a dataclass), it does the same for the constructor and adds a read-only
property under the old name. Either way the old name warns, naming the new one. Passing
both spellings at once is a TypeError, as Python says of a keyword given twice.

Never prints; imports nothing but the standard library.
"""

from __future__ import annotations

import functools
import warnings

__all__: list[str] = []


def _moved(owner: str, old: str, new: str) -> str:
    return f"{owner}: {old!r} is now called {new!r}; the old name will be removed"


def _rename_keywords(where: str, kwargs: dict, old_to_new: dict) -> None:
    for old, new in old_to_new.items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"{where}() got {old!r} and {new!r}, two names of one "
                                "argument")
            warnings.warn(_moved(f"{where}()", old, new), DeprecationWarning, stacklevel=3)
            kwargs[new] = kwargs.pop(old)


def _old_property(cls_name: str, old: str, new: str) -> property:
    def get(self):
        warnings.warn(_moved(cls_name, old, new), DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated name of :attr:`{new}`.")


def renamed(**old_to_new: str):
    """Decorator: accept the old keyword names ``old=`` of a function or class, warning.

    Parameters
    ----------
    **old_to_new : str
        Old name -> new name.

    Examples
    --------
    >>> import warnings
    >>> @renamed(N="samples_per_image")
    ... def rows(samples_per_image):
    ...     return samples_per_image
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     rows(N=5)
    5
    >>> str(caught[0].message)
    "rows(): 'N' is now called 'samples_per_image'; the old name will be removed"
    """

    def wrap(obj):
        if isinstance(obj, type):
            init = obj.__init__

            @functools.wraps(init)
            def __init__(self, *args, **kwargs):
                _rename_keywords(obj.__name__, kwargs, old_to_new)
                init(self, *args, **kwargs)

            obj.__init__ = __init__
            for old, new in old_to_new.items():
                setattr(obj, old, _old_property(obj.__name__, old, new))
            return obj

        @functools.wraps(obj)
        def call(*args, **kwargs):
            _rename_keywords(obj.__name__, kwargs, old_to_new)
            return obj(*args, **kwargs)

        return call

    return wrap
