"""documents:
court documents: rendering, anti-counterfeit codes, seals, hashes and public verification."""
