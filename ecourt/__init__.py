"""ecourt: composes the suite — the registry of services, the embedded runner and the CLI.

It sits above ``servicekit``, ``services`` and ``gateway`` and is the only package that
imports all of them.
"""
