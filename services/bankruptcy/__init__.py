"""bankruptcy: bankruptcy cases: administrator nodes, creditor claims, meetings and votes."""
