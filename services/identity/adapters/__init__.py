"""identity's adapters to systems outside the suite: the face check provider and the Ministry
of Justice's lawyer registry. Each has a development stand-in and an HTTP adapter."""
