"""Platform-free core: models, validation, providers, quotas, the job engine and ports.

Nothing in here may import discord, slack_bolt, aiosqlite, `storage` or `cogs`
(tests/test_boundaries.py enforces it).
"""
