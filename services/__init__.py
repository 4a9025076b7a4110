"""The suite's services, one package each; each owns its database and its migrations."""
