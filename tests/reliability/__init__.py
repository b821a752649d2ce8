"""Helpers for the reliability and security tests (crash, faults, bad input, abuse,
secrets, network safety): an in-process world built like production, and audits of
what users saw and what they paid."""
