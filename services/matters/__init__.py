"""matters:
the case space: parties, lawyers, applications during a case, deadlines and escalation."""
