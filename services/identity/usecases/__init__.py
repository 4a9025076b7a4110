"""identity's use cases: each opens the unit of work, applies the rules, emits, commits.

* ``accounts`` registering individuals, reading accounts
* ``sessions`` password sign-in, refresh-token rotation, sign-out
* ``throttle`` password-attempt throttling (per account and per client address), and refused
               registrations per client address
* ``staff``    court staff: created by their court's administrator, listed, found, disabled
"""

from services.identity.usecases.accounts import account_of, contact_of, register_individual

__all__ = ["account_of", "contact_of", "register_individual"]
